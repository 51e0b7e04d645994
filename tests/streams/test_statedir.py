"""A worker's data dir remembers whether the last worker on it stopped cleanly."""

from __future__ import annotations

import pytest

from streams import statedir


@pytest.mark.parametrize("drop", [True, False])
def test_a_killed_worker_leaves_its_marker_and_the_next_one_drops_the_stores_only_if_asked(tmp_path, drop):
    tables = tmp_path / "v1" / "tables"
    tables.mkdir(parents=True)
    (tables / "store").write_text("local state")
    assert statedir.claim(tmp_path, tables, drop_if_unclean=drop) is False  # first start: clean
    assert (tables / "store").exists()
    # killed: release() never ran
    assert statedir.claim(tmp_path, tables, drop_if_unclean=drop) is True
    assert (tables / "store").exists() is not drop


def test_a_clean_stop_keeps_the_stores(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    statedir.claim(tmp_path, tables, drop_if_unclean=True)
    statedir.release(tmp_path)
    assert statedir.claim(tmp_path, tables, drop_if_unclean=True) is False and tables.exists()
