"""`leadpulse rules check`: valid files described, invalid ones named by key (exit 1)."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from tests.tools.conftest import one_error_line

DEFAULT = resources.files("scoring").joinpath("default_rules.toml").read_text(encoding="utf-8")


def test_default_rules_are_described(cli):
    rc, out, err = cli("rules", "check", "default")
    assert rc == 0 and err == ""
    for needle in ("valid", "2024.11-default-1", "points halve every 30 days",
                   "warm at ≥ 30, hot at ≥ 60; hysteresis 5: hot cools to warm below 55, warm to cold below 25",
                   "score ≥ 65 and fit grade B or better", "BANT: 4 of 4 criteria", "MEDDICC: 7 of 7",
                   "rules by points", "demo_request", "page_view at most 20 per 1d"):
        assert needle in out, needle


def test_json_description(cli, tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(DEFAULT, encoding="utf-8")
    rc, out, _ = cli("rules", "check", path, "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["valid"] is True and d["source"] == str(path)
    assert d["version"] == "2024.11-default-1"
    assert d["half_life_days"] == 30
    assert d["temperature"] == {"warm": 30, "hot": 60, "hysteresis": 5, "warm_cools_below": 25, "hot_cools_below": 55}
    assert d["mql"] == {"min_score": 65, "min_grade": "B"}
    assert d["sql"]["BANT"] == {"criteria": ["budget", "authority", "need", "timeline"], "min_met": 4}
    points = [abs(e["points"]) for e in d["rules"]]
    assert points == sorted(points, reverse=True)  # strongest first
    assert d["rules"][0]["name"] == "hard-bounce"
    assert {"applies_to": "page_view", "points": 20, "window": "1d"} in d["caps"]
    pricing = next(e for e in d["rules"] if e["name"] == "pricing-page")
    assert pricing["replace"] is True and pricing["match"] == {"url": "(?i)/pricing|/tarifs"}


@pytest.mark.parametrize("change, key", [
    (("\nhot = 60\n", "\nhot = 20\n"), "rules.temperature.hot"),
    (("\nhalf_life_days = 30\n", "\nhalf_life_days = -1\n"), "rules.half_life_days"),
    (("\n[mql]\n", "\n[mql]\nmin_scor = 3\n"), "rules.mql.min_scor"),
    (('version = "2024.11-default-1"', "version = 3"), "rules.version"),
])
def test_invalid_rules_name_the_key(cli, tmp_path, change, key):
    assert change[0] in DEFAULT
    path = tmp_path / "bad.toml"
    path.write_text(DEFAULT.replace(*change), encoding="utf-8")
    rc, out, err = cli("rules", "check", path)
    assert rc == 1
    assert one_error_line(err).startswith(f"leadpulse: error: rules file {path}: {key}: ")
    assert out == ""


def test_invalid_toml(cli, tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("version = \n")
    rc, _, err = cli("rules", "check", path)
    assert rc == 1
    assert "rules: invalid TOML" in one_error_line(err)


def test_invalid_rules_as_json(cli, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(DEFAULT.replace("\nhot = 60\n", "\nhot = 20\n"), encoding="utf-8")
    rc, out, err = cli("rules", "check", path, "--json")
    assert rc == 1
    d = json.loads(out)
    assert d["valid"] is False and d["key"] == "rules.temperature.hot"
    one_error_line(err)


def test_missing_file_is_bad_input(cli, tmp_path):
    rc, _, err = cli("rules", "check", tmp_path / "none.toml")
    assert rc == 2
    assert one_error_line(err).endswith("none.toml: no such file")


def test_rules_needs_an_action(cli):
    rc, _, err = cli("rules")
    assert rc == 2 and "check" in err
