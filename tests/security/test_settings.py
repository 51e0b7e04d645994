"""The Kafka security settings (no broker): parsing, password from the environment or a file, the
client arguments and Faust credentials they give, and a password that never shows."""

from __future__ import annotations

import ssl

import faust
import pytest
from faust.types.auth import AuthProtocol, SASLMechanism

from streams.localkafka import make_tls_files
from streams.settings import Secret, Settings, SettingsError

PASSWORD = "correct horse battery staple-7f3a"


@pytest.fixture
def env(monkeypatch):
    def set_env(**values: str) -> Settings:
        for k, v in values.items():
            monkeypatch.setenv(k, v)
        return Settings.from_env()

    return set_env


@pytest.fixture
def sasl(env):
    return lambda **more: env(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KAFKA_SASL_USERNAME="leadpulse", **more)


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return str(make_tls_files(tmp_path_factory.mktemp("tls")).ca)


def test_plaintext_by_default(env):
    s = env()
    assert s.security_protocol == "PLAINTEXT" and s.sasl_password is None
    assert s.kafka_client_kwargs() == {}
    assert s.faust_credentials() is None


def test_sasl_with_the_password_from_the_environment(sasl):
    s = sasl(KAFKA_SASL_PASSWORD=PASSWORD)
    assert s.kafka_client_kwargs() == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                       "sasl_plain_username": "leadpulse", "sasl_plain_password": PASSWORD}
    creds = s.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.protocol, creds.mechanism) == (AuthProtocol.SASL_PLAINTEXT, SASLMechanism.SCRAM_SHA_512)
    assert (creds.username, creds.password) == ("leadpulse", PASSWORD)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_other_mechanisms(sasl, mechanism):
    s = sasl(KAFKA_SASL_PASSWORD=PASSWORD, KAFKA_SASL_MECHANISM=mechanism)
    assert s.kafka_client_kwargs()["sasl_mechanism"] == mechanism
    assert s.faust_credentials().mechanism == SASLMechanism(mechanism)


@pytest.mark.parametrize("content", [PASSWORD, PASSWORD + "\n", PASSWORD + "\r\n", PASSWORD + "\n\n"])
def test_password_from_a_file_without_its_trailing_newline(sasl, tmp_path, content):
    path = tmp_path / "pw"
    path.write_bytes(content.encode())
    s = sasl(KAFKA_SASL_PASSWORD_FILE=str(path))
    assert s.sasl_password.reveal() == PASSWORD  # inner spaces kept: they are part of the password


def test_password_in_both_places_is_refused(sasl, tmp_path):
    (tmp_path / "pw").write_text(PASSWORD)
    with pytest.raises(SettingsError, match="KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are both set"):
        sasl(KAFKA_SASL_PASSWORD=PASSWORD, KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "pw"))


@pytest.mark.parametrize("make, reason", [
    (lambda d: d / "missing", "No such file or directory"),
    (lambda d: d, "Is a directory"),
    (lambda d: (d / "bin").write_bytes(b"\xff\xfe" + PASSWORD.encode()) and d / "bin", "not UTF-8 text"),
    (lambda d: (d / "empty").write_text("\n") and d / "empty", "the file is empty"),
])
def test_an_unusable_password_file_names_the_variable_not_the_content(sasl, tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(SettingsError) as err:
        sasl(KAFKA_SASL_PASSWORD_FILE=str(path))
    assert str(err.value).startswith(f"KAFKA_SASL_PASSWORD_FILE={str(path)!r}: ")
    assert reason in str(err.value)
    assert PASSWORD not in str(err.value)


@pytest.mark.parametrize("values, message", [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME and"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u"}, "needs KAFKA_SASL_USERNAME and"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_PASSWORD": PASSWORD}, "needs KAFKA_SASL_USERNAME"),
    ({"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": PASSWORD},
     "KAFKA_SASL_* settings are ignored with KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SASL_MECHANISM": "PLAIN"}, "ignored with KAFKA_SECURITY_PROTOCOL=SSL"),
    ({"KAFKA_SSL_CAFILE": "/etc/ssl/ca.pem"}, "KAFKA_SSL_CAFILE is ignored with KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS': expected one of PLAINTEXT, SASL_PLAINTEXT"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": PASSWORD,
      "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM='GSSAPI': expected one of SCRAM-SHA-512"),
])
def test_inconsistent_settings_are_refused(env, values, message):
    """Credentials a protocol would silently ignore are as wrong as a SASL protocol without them."""
    with pytest.raises(SettingsError) as err:
        env(**values)
    assert message in str(err.value)


def test_tls_settings(env, ca, tmp_path):
    s = env(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD=PASSWORD,
            KAFKA_SSL_CAFILE=ca)
    ctx = s.kafka_client_kwargs()["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert s.faust_credentials().protocol == AuthProtocol.SASL_SSL
    only_tls = env(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SASL_USERNAME="", KAFKA_SASL_PASSWORD="")
    assert set(only_tls.kafka_client_kwargs()) == {"security_protocol", "ssl_context"}
    assert isinstance(only_tls.faust_credentials(), faust.SSLCredentials)
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(SettingsError, match="^KAFKA_SSL_CAFILE='.*junk.pem': not a readable PEM CA file"):
        env(KAFKA_SSL_CAFILE=str(tmp_path / "junk.pem"))


def test_the_password_never_shows(sasl, tmp_path, monkeypatch, capsys):
    s = sasl(KAFKA_SASL_PASSWORD=PASSWORD)
    assert s.describe()["sasl_password"] == "***" and s.describe()["sasl_username"] == "leadpulse"
    for shown in (repr(s), str(s), str(s.describe()), repr(s.faust_credentials()), s.kafka_identity(),
                  f"{s.sasl_password}", f"{s.sasl_password!r}"):
        assert PASSWORD not in shown
    assert "sasl_password=***" in repr(s)
    # `leadpulse worker --help` prints the settings in effect
    from tools.cli import main

    assert main(["worker", "--help"]) == 0
    out = capsys.readouterr().out
    assert "sasl_password" in out and PASSWORD not in out


def test_secret_compares_by_value():
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b") and Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("b"))  # hashable, and the hash says nothing about the value


# -- Schema Registry settings (issue 12) --------------------------------------------------------


@pytest.fixture
def registry_env(env, monkeypatch):
    for var in ("SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "SCHEMA_REGISTRY_SUBJECT_STRATEGY",
                "SCHEMA_REGISTRY_RETRY_S"):
        monkeypatch.delenv(var, raising=False)
    return env


def test_schema_registry_defaults(registry_env):
    s = registry_env()
    assert (s.schema_registry_url, s.schema_registry_subject_strategy, s.schema_registry_user_info,
            s.schema_registry_retry_s) == (None, "topic", None, 10.0)


@pytest.mark.parametrize("strategy", ["topic", "record", "topic_record"])
def test_subject_strategies(registry_env, strategy):
    assert registry_env(SCHEMA_REGISTRY_SUBJECT_STRATEGY=strategy).schema_registry_subject_strategy == strategy


@pytest.mark.parametrize("values,message", [
    ({"SCHEMA_REGISTRY_SUBJECT_STRATEGY": "TopicNameStrategy"}, "SCHEMA_REGISTRY_SUBJECT_STRATEGY='TopicNameStrategy'"),
    ({"SCHEMA_REGISTRY_URL": "registry:8081"}, "SCHEMA_REGISTRY_URL: expected http://"),
    ({"SCHEMA_REGISTRY_URL": "ftp://registry"}, "SCHEMA_REGISTRY_URL: expected http://"),
    ({"SCHEMA_REGISTRY_URL": "http://registry", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "no-colon"},
     "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO: expected USER:PASSWORD"),
    ({"SCHEMA_REGISTRY_URL": "http://u:p@registry", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "u:p"}, "set only one"),
    ({"SCHEMA_REGISTRY_RETRY_S": "-1"}, "SCHEMA_REGISTRY_RETRY_S=-1: must be >= 0"),
])
def test_unusable_registry_settings_name_the_variable(registry_env, values, message):
    with pytest.raises(SettingsError) as exc:
        registry_env(**values)
    assert message in str(exc.value) and PASSWORD not in str(exc.value)


@pytest.mark.parametrize("how", ["variable", "url"])
def test_registry_credentials_never_show(registry_env, how):
    if how == "variable":
        s = registry_env(SCHEMA_REGISTRY_URL="https://registry.example:8081/",
                         SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=f"leadpulse:{PASSWORD}")
    else:
        s = registry_env(SCHEMA_REGISTRY_URL=f"https://leadpulse:{PASSWORD}@registry.example:8081/")
    assert s.schema_registry_url == "https://registry.example:8081"  # the URL keeps no credentials
    assert s.schema_registry_user_info == Secret(f"leadpulse:{PASSWORD}")
    assert PASSWORD not in repr(s) and PASSWORD not in str(s.describe())
