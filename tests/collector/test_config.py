"""The collector's configuration: the mapping file (strict, errors name the key), write keys
(errors never show a key) and the collector settings."""

from __future__ import annotations

import pytest

from collector.auth import WriteKeyError, WriteKeys
from collector.config import DEFAULT_MAPPING, MappingConfigError, load_mapping, parse_mapping
from collector.main import StartError, load_config
from streams.settings import CollectorSettings, SettingsError

KEY = "wk-0123456789abcdef"


def test_the_shipped_mapping_loads_and_knows_the_usual_events():
    m = load_mapping()
    assert m.version and m.unmapped_track == "ignore" and m.alias_as == "identity_link"
    assert m.event_type_of("Demo Requested") == "demo_request"
    assert m.event_type_of("Webinar Registered") == "webinar_signup"
    assert m.country_code("France") == "FR" and m.country_code("fr") == "FR" and m.country_code("Atlantis") is None
    assert load_mapping(DEFAULT_MAPPING) == m


@pytest.mark.parametrize("doc,names", [
    ({"version": "1", "trak": {}}, "mapping.trak"),
    ({}, "mapping.version"),
    ({"version": "1", "track": {"Demo Requested": "demo"}}, "mapping.track.'Demo Requested'"),
    ({"version": "1", "track": {"Demo Requested": "demo_request", "demo_requested": "demo_request"}},
     "mapping.track.'demo_requested'"),
    ({"version": "1", "unmapped_track": "drop"}, "mapping.unmapped_track"),
    ({"version": "1", "page": {"event_type": "visit"}}, "mapping.page.event_type"),
    ({"version": "1", "identify": {"mail": ["email"]}}, "mapping.identify.mail"),
    ({"version": "1", "identify": {"email": [1]}}, "mapping.identify.email"),
    ({"version": "1", "alias": {"as": "both"}}, "mapping.alias.as"),
    ({"version": "1", "hubspot": {"property_events": [{"property": "x"}]}}, "mapping.hubspot.property_events[0]"),
    ({"version": "1", "hubspot": {"property_events": [{"property": "x", "event_type": "email_open",
                                                       "match": "("}]}}, "mapping.hubspot.property_events[0].match"),
    ({"version": "1", "mautic": {"forms": {"demo": "meeting"}}}, "mapping.mautic.forms.demo"),
    ({"version": "1", "mautic": {"profile_fields": {"phone": "phone"}}}, "mapping.mautic.profile_fields.phone"),
    ({"version": "1", "countries": {"France": "FRA"}}, "mapping.countries.'France'"),
])
def test_mapping_errors_name_the_key(doc, names):
    with pytest.raises(MappingConfigError) as exc:
        parse_mapping(doc)
    assert names in str(exc.value)


def test_a_mapping_file_error_names_the_file(tmp_path):
    bad = tmp_path / "m.toml"
    bad.write_text('version = "1"\n[track]\n"Demo Requested" = "demo"\n')
    with pytest.raises(MappingConfigError, match=r"m\.toml: mapping\.track"):
        load_mapping(bad)
    bad.write_text("version = ")
    with pytest.raises(MappingConfigError, match="not valid TOML"):
        load_mapping(bad)
    with pytest.raises(MappingConfigError, match="cannot read"):
        load_mapping(tmp_path / "missing.toml")


def test_write_keys_from_a_file_and_from_the_environment(tmp_path):
    f = tmp_path / "keys"
    f.write_text(f"# source  key\nwebsite {KEY}\n\nbackend {KEY[::-1]}\n")
    keys = WriteKeys.from_settings(CollectorSettings(write_keys_file=str(f)))
    assert keys.sources() == ["backend", "website"] and keys.source_of(KEY) == "website"
    assert keys.source_of("nope") is None and keys.source_of(None) is None
    assert KEY not in repr(keys)
    from streams.settings import Secret
    env = WriteKeys.from_settings(CollectorSettings(write_keys=Secret(f"website:{KEY}, crm:{KEY}x")))
    assert env.sources() == ["crm", "website"]


@pytest.mark.parametrize("lines,message", [
    ([f"website {KEY} extra"], "line 1: expected"),
    (["website short"], "shorter than 16"),
    ([f"hubspot {KEY}"], "reserved"),
    ([f"a {KEY}", f"b {KEY}"], "line 2: source 'b' has the same write key as 'a'"),
    ([f"bad/name {KEY}"], "source name"),
    (["website CHANGE-ME-0123456789"], "placeholder"),
])
def test_write_key_errors_never_show_a_key(lines, message):
    with pytest.raises(WriteKeyError) as exc:
        WriteKeys.from_lines(lines, "keys")
    assert message in str(exc.value) and KEY not in str(exc.value)


@pytest.mark.parametrize("env,message", [
    ({"LEADPULSE_COLLECTOR_WRITE_KEYS": f"w:{KEY}", "LEADPULSE_COLLECTOR_WRITE_KEYS_FILE": "/x"}, "both"),
    ({"LEADPULSE_COLLECTOR_TLS_CERT": "/c.pem"}, "go together"),
    ({"LEADPULSE_COLLECTOR_PORT": "http"}, "whole number"),
    ({"LEADPULSE_COLLECTOR_PORT": "70000"}, "not a TCP port"),
    ({"LEADPULSE_COLLECTOR_MAX_BODY_BYTES": "100"}, "at least 32768"),
    ({"LEADPULSE_COLLECTOR_RATE": "0"}, "must be > 0"),
    ({"LEADPULSE_HUBSPOT_CLIENT_SECRET": "a", "LEADPULSE_HUBSPOT_CLIENT_SECRET_FILE": "/x"}, "both"),
])
def test_collector_setting_errors_name_the_variable(monkeypatch, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError, match=message):
        CollectorSettings.from_env()


def test_secrets_from_files_and_never_in_describe(monkeypatch, tmp_path):
    secret = tmp_path / "hs"
    secret.write_text("hs-app-secret-123\n")
    monkeypatch.setenv("LEADPULSE_HUBSPOT_CLIENT_SECRET_FILE", str(secret))
    monkeypatch.setenv("LEADPULSE_COLLECTOR_WRITE_KEYS", f"website:{KEY}")
    s = CollectorSettings.from_env()
    assert s.hubspot_secret.reveal() == "hs-app-secret-123"
    shown = repr(s) + str(s.describe())
    assert "hs-app-secret-123" not in shown and KEY not in shown and "***" in shown


def test_load_config_turns_every_problem_into_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("LEADPULSE_COLLECTOR_WRITE_KEYS", "website:short")
    with pytest.raises(StartError, match="shorter than 16"):
        load_config()
    monkeypatch.setenv("LEADPULSE_COLLECTOR_WRITE_KEYS", f"website:{KEY}")
    monkeypatch.setenv("LEADPULSE_COLLECTOR_TLS_CERT", str(tmp_path / "no.pem"))
    monkeypatch.setenv("LEADPULSE_COLLECTOR_TLS_KEY", str(tmp_path / "no.key"))
    with pytest.raises(StartError, match="TLS certificate"):
        load_config()


def test_leadpulse_collector_cli_checks_before_it_starts(monkeypatch, capsys):
    from tools.cli import main

    monkeypatch.setenv("LEADPULSE_COLLECTOR_WRITE_KEYS", "website:short")
    assert main(["collector", "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("leadpulse: error: ") and "shorter than 16" in err[0]
    monkeypatch.setenv("LEADPULSE_COLLECTOR_WRITE_KEYS", f"website:{KEY}")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["collector", "--check"]) == 2
    assert "cannot reach Kafka at 127.0.0.1:1" in capsys.readouterr().err
    assert main(["collector", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Segment HTTP Tracking API" in out and "write_keys" in out and KEY not in out
