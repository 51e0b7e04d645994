"""`LocalKafka.with_scram` without starting a broker: the listener it configures, the credentials it
formats, and a password that stays out of the launcher's log."""

from __future__ import annotations

import pytest

from streams.localkafka import LocalKafka, LocalKafkaError, TlsFiles, _redacted


def test_scram_listener_is_the_only_advertised_one(tmp_path):
    kafka = LocalKafka.with_scram("leadpulse", "pw-123", state_dir=tmp_path)
    props = kafka.server_properties(20000, 20001)
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:20000,CONTROLLER://127.0.0.1:20001"
    assert props["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:20000"
    assert props["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="leadpulse" password="pw-123";')
    assert kafka.format_args == ["--add-scram", "SCRAM-SHA-512=[name=leadpulse,password=pw-123]"]
    assert kafka._listener_protocol(props, 20000) == "SASL_PLAINTEXT"


def test_tls_makes_it_sasl_ssl(tmp_path):
    tls = TlsFiles(ca=tmp_path / "ca.pem", keystore=tmp_path / "broker.pem")
    props = LocalKafka.with_scram("u", "p", state_dir=tmp_path, tls=tls).server_properties(20000, 20001)
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:20000"
    assert "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config" in props
    assert (props["ssl.keystore.type"], props["ssl.keystore.location"]) == ("PEM", str(tls.keystore))
    assert (props["ssl.truststore.type"], props["ssl.truststore.location"]) == ("PEM", str(tls.ca))


@pytest.mark.parametrize("user, password", [("", "p"), ("u", ""), ("u", "a,b"), ("u", 'a"b'), ("a b", "p"),
                                            ("u", "x]y")])
def test_credentials_that_would_break_the_format_or_jaas_syntax(tmp_path, user, password):
    with pytest.raises(LocalKafkaError, match="^SCRAM (user name|password): must be non-empty"):
        LocalKafka.with_scram(user, password, state_dir=tmp_path)


def test_the_logged_format_command_masks_the_password():
    cmd = ["java", "kafka.tools.StorageTool", "format", "--add-scram", "SCRAM-SHA-512=[name=u,password=s3cr3t-x]"]
    assert _redacted(cmd).endswith("'SCRAM-SHA-512=[name=u,password=***]'")
    assert "s3cr3t" not in _redacted(cmd)
