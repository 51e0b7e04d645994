"""A data directory the worker cannot use (not creatable, not writable, disk full) is one clear line
at start, before anything is written or any broker is asked."""

from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import pytest

from streams import preflight
from streams.preflight import PreflightError, check_data_dir
from streams.settings import Settings
from tests.security.conftest import run
from tools.runtime import free_port


@pytest.fixture
def settings(tmp_path, monkeypatch):
    def make(data_dir, **env: str) -> Settings:
        monkeypatch.setenv("LEADPULSE_DATA_DIR", str(data_dir))
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        return Settings.from_env()

    return make


def test_a_usable_data_dir_is_created_and_left_empty(settings, tmp_path):
    data = tmp_path / "a" / "b" / "data"
    check_data_dir(settings(data))
    assert data.is_dir() and list(data.iterdir()) == []


def test_a_data_dir_under_a_regular_file(settings, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(PreflightError, match=r"^data directory .*/file.txt/sub \(LEADPULSE_DATA_DIR\) cannot be "
                                             r"created: Not a directory$"):
        check_data_dir(settings(tmp_path / "file.txt" / "sub"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a mode 500 directory anyway; the next test "
                                               "covers an unwritable directory for root too")
def test_a_read_only_data_dir(settings, tmp_path):
    data = tmp_path / "ro"
    data.mkdir(mode=0o500)
    with pytest.raises(PreflightError, match=r"\(LEADPULSE_DATA_DIR\) is not writable: Permission denied$"):
        check_data_dir(settings(data))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_data_dir_that_refuses_writes(settings, tmp_path, monkeypatch, code):
    """The scratch write is synced: a full disk or a read-only mount fails here, as it would for RocksDB."""
    def refuse(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(preflight.os, "fsync", refuse)
    with pytest.raises(PreflightError) as err:
        check_data_dir(settings(tmp_path / "data"))
    assert str(err.value) == f"data directory {tmp_path / 'data'} (LEADPULSE_DATA_DIR) is not writable: {os.strerror(code)}"
    monkeypatch.undo()
    assert list((tmp_path / "data").iterdir()) == []  # the scratch file went with the failure


@pytest.mark.parametrize("free_mib, minimum, ok", [(10, 64, False), (63, 64, False), (64, 64, True), (500, 1000, False)])
def test_too_little_free_space(settings, tmp_path, monkeypatch, free_mib, minimum, ok):
    monkeypatch.setattr(preflight.os, "statvfs", lambda path: SimpleNamespace(f_bavail=free_mib * 256, f_frsize=4096))
    s = settings(tmp_path / "data", LEADPULSE_DATA_DIR_MIN_FREE_MB=str(minimum))
    if ok:
        check_data_dir(s)
        return
    with pytest.raises(PreflightError) as err:
        check_data_dir(s)
    assert str(err.value) == (f"data directory {tmp_path / 'data'} (LEADPULSE_DATA_DIR) has {free_mib} MiB free; a "
                              f"worker needs at least {minimum} MiB (LEADPULSE_DATA_DIR_MIN_FREE_MB): free some space "
                              f"or use another volume")


@pytest.mark.parametrize("case", ["under a file", "disk full"])
def test_the_worker_stops_at_start_with_one_line(tmp_path, case):
    """The real worker process: exit 2, one line naming the directory, no traceback, nothing written.
    The broker address leads nowhere: the data dir is checked before any broker is asked."""
    (tmp_path / "file.txt").write_text("x")
    data = tmp_path / "file.txt" / "sub" if case == "under a file" else tmp_path / "data"
    env = {"LEADPULSE_DATA_DIR": str(data), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    if case == "disk full":  # more than any disk has: the real statvfs says no
        env["LEADPULSE_DATA_DIR_MIN_FREE_MB"] = str(2**40)
    res = run(["agents", "worker"], env, timeout=60)
    assert res.rc == 2
    line = res.one_error_line()
    assert f"data directory {data} (LEADPULSE_DATA_DIR)" in line
    assert ("cannot be created: Not a directory" if case == "under a file" else "MiB free; a worker needs") in line
    if case == "disk full":
        assert list(data.iterdir()) == []
