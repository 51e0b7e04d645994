from __future__ import annotations

import copy
import tomllib
from importlib import resources

import pytest

from scoring import EVENT_TYPES, RulesError, load_rules, parse_rules
from scoring.rules import rule_key


def base() -> dict:
    text = resources.files("scoring").joinpath("default_rules.toml").read_text(encoding="utf-8")
    return copy.deepcopy(tomllib.loads(text))


def test_default_rules_load(rules):
    assert rules.version
    assert rules.half_life_days == 30 and rules.late_tolerance_days == 7 and rules.total_cap == 150
    assert rules.points["demo_request"] == 30 and rules.points["unsubscribe"] == -25
    assert set(rules.points) <= set(EVENT_TYPES)
    assert (rules.temperature.warm, rules.temperature.hot, rules.temperature.hysteresis) == (30, 60, 5)
    assert rules.mql_min_score == 65 and rules.mql_min_grade == "B"
    assert rules.frameworks["BANT"].min_met == 4 and len(rules.frameworks["MEDDICC"].criteria) == 7
    assert any(r.points < 0 for r in rules.rules) and any(r.replace for r in rules.rules)
    assert any(r.cap for r in rules.rules) and rules.caps["page_view"].window_ms == 86_400_000


def test_load_rules_from_file(tmp_path, rules):
    p = tmp_path / "r.toml"
    p.write_bytes(resources.files("scoring").joinpath("default_rules.toml").read_bytes())
    assert load_rules(p) == rules


def test_unknown_key_in_file_names_path_and_file(tmp_path):
    p = tmp_path / "r.toml"
    text = resources.files("scoring").joinpath("default_rules.toml").read_text(encoding="utf-8")
    p.write_text(text.replace("[temperature]\n", "[temperature]\nwarn = 3\n"), encoding="utf-8")
    with pytest.raises(RulesError) as ei:
        load_rules(p)
    assert ei.value.key_path == "rules.temperature.warn"
    assert "unknown key" in str(ei.value) and str(p) in str(ei.value)


def test_invalid_toml_and_missing_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("version = \n", encoding="utf-8")
    with pytest.raises(RulesError, match="invalid TOML"):
        load_rules(p)
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "absent.toml")


def mutate(path: str, value=..., delete: bool = False) -> dict:
    d = base()
    keys = path.split(".")
    node = d
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if delete:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return d


@pytest.mark.parametrize(
    "path, value, key_path, reason",
    [
        ("half_life_days", -3, "rules.half_life_days", "must be > 0"),
        ("half_life_days", 0, "rules.half_life_days", "must be > 0"),
        ("half_life_days", "30", "rules.half_life_days", "expected a number"),
        ("late_tolerance_days", 0, "rules.late_tolerance_days", "must be > 0"),
        ("late_tolerance_days", 10_000, "rules.late_tolerance_days", "half-lives"),
        ("total_cap", 0, "rules.total_cap", "must be > 0"),
        ("total_cap", float("inf"), "rules.total_cap", "finite"),
        ("version", "", "rules.version", "must not be empty"),
        ("temperature.hot", 20, "rules.temperature.hot", "must be > warm"),
        ("temperature.hot", 30, "rules.temperature.hot", "must be > warm"),
        ("temperature.hysteresis", -1, "rules.temperature.hysteresis", "must be >= 0"),
        ("temperature.warn", 1, "rules.temperature.warn", "unknown key"),
        ("points.page_views", 1, "rules.points.page_views", "unknown key"),
        ("points.page_view", True, "rules.points.page_view", "expected a number"),
        ("caps.page_view.points", 0, "rules.caps.page_view.points", "must be > 0"),
        ("caps.page_view.points", -5, "rules.caps.page_view.points", "must be > 0"),
        ("caps.page_view.window", "1 day", "rules.caps.page_view.window", "duration"),
        ("caps.page_view.windw", "1d", "rules.caps.page_view.windw", "unknown key"),
        ("rules.0.cap.points", 0, "rules.rules[0].cap.points", "must be > 0"),
        ("rules.0.event_type", "page_vue", "rules.rules[0].event_type", "unknown event type"),
        ("rules.0.match.url", "(unclosed", "rules.rules[0].match.url", "invalid regular expression"),
        ("rules.0.replace", "yes", "rules.rules[0].replace", "true or false"),
        ("rules.0.pointz", 3, "rules.rules[0].pointz", "unknown key"),
        ("rules.1.name", "pricing-page", "rules.rules[1].name", "duplicate rule name"),
        ("rules.1.name", "page_view", "rules.rules[1].name", "reserved"),
        ("fit.grades.B", 25, "rules.fit.grades.A", "must be > B"),
        ("fit.grades.C", 10, "rules.fit.grades.B", "must be > C"),
        ("fit.grades.E", 1, "rules.fit.grades.E", "unknown key"),
        ("fit.seniority.0.keywords", [], "rules.fit.seniority[0].keywords", "must not be empty"),
        ("fit.company_size.1.min", 5, "rules.fit.company_size[1].min", "overlap"),
        ("fit.company_size.0.max", 0, "rules.fit.company_size[0].max", "must be >= min"),
        ("fit.country.target", ["France"], "rules.fit.country.target[0]", "alpha-2"),
        ("fit.free_mail_domains", ["gmail.com", "GMAIL.com"], "rules.fit.free_mail_domains[1]", "duplicate"),
        ("mql.min_grade", "E", "rules.mql.min_grade", "must be one of"),
        ("mql.min_scor", 3, "rules.mql.min_scor", "unknown key"),
        ("sql.frameworks.BANT.min_met", 5, "rules.sql.frameworks.BANT.min_met", "<= the number of criteria"),
        ("sql.frameworks.BANT.min_met", 0, "rules.sql.frameworks.BANT.min_met", ">= 1"),
        ("sql.frameworks.BANT.criteria", [], "rules.sql.frameworks.BANT.criteria", "must not be empty"),
        ("sql.frameworkz", {}, "rules.sql.frameworkz", "unknown key"),
        ("extra", 1, "rules.extra", "unknown key"),
    ],
)
def test_invalid_rules_name_the_key(path, value, key_path, reason):
    with pytest.raises(RulesError) as ei:
        parse_rules(mutate(path, value), source="test")
    assert ei.value.key_path == key_path
    assert reason in ei.value.reason
    assert str(ei.value).startswith(f"{key_path}: ")


@pytest.mark.parametrize("path", ["version", "temperature", "temperature.warm", "fit.grades", "mql", "sql", "points",
                                  "rules.0.name", "rules.0.points", "caps.page_view.window"])
def test_missing_required_key(path):
    with pytest.raises(RulesError) as ei:
        parse_rules(mutate(path, delete=True))
    assert ei.value.reason == "missing"
    assert ei.value.key_path.replace("[0]", ".0") == "rules." + path


def test_thresholds_out_of_order_message():
    with pytest.raises(RulesError, match=r"^rules\.temperature\.hot: must be > warm"):
        parse_rules(mutate("temperature.hot", 10))


def test_optional_defaults_and_minimal_file():
    d = base()
    for k in ("half_life_days", "late_tolerance_days", "total_cap", "caps", "rules"):
        d.pop(k)
    r = parse_rules(d)
    assert (r.half_life_days, r.late_tolerance_days, r.total_cap) == (30, 7, 150)
    assert r.rules == () and dict(r.caps) == {}


def test_rule_keys_are_stable_and_distinct(rules):
    keys = [rule_key(n) for n in list(EVENT_TYPES) + [r.name for r in rules.rules]]
    assert len(set(keys)) == len(keys)
    assert rule_key("page_view") == rule_key("page_view")  # no per-process salt


def test_rules_are_immutable(rules):
    with pytest.raises(Exception):
        rules.version = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        rules.points["page_view"] = 99  # type: ignore[index]


def test_a_half_life_too_short_for_exact_decay_is_refused():
    from scoring.rules import MIN_HALF_LIFE_DAYS

    data = tomllib.loads(resources.files("scoring").joinpath("default_rules.toml").read_text())
    data["half_life_days"] = MIN_HALF_LIFE_DAYS / 10
    data["late_tolerance_days"] = MIN_HALF_LIFE_DAYS / 100
    with pytest.raises(RulesError, match="rules.half_life_days"):
        parse_rules(data)
    data["half_life_days"] = MIN_HALF_LIFE_DAYS
    parse_rules(data)
