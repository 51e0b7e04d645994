"""leadpulse against an authenticated broker (SCRAM-SHA-512; without and with TLS): the clients, the
CLI and a worker work with credentials from the environment or a file, are refused without them with
one clear line, and the password never appears in an output, a log or an error."""

from __future__ import annotations

import json
import time

import pytest

from streams.localkafka import LocalKafka
from tests.security.conftest import USER, run
from tests.support import Worker, consume, decoder, event, produce, topic_env

pytestmark = pytest.mark.kafka
HOUR = 3_600_000


def password_file(tmp_path, password: str) -> str:
    path = tmp_path / "kafka-password"
    path.write_text(password + "\n")  # as `kubectl create secret --from-file` or an editor leaves it
    path.chmod(0o600)
    return str(path)


async def test_clients_with_the_password_from_the_environment(secure_env, broker, unique):
    topic = f"roundtrip-{unique}"
    await produce(broker.bootstrap, topic, [(b"k1", b"v1"), (b"k2", b"v2")])
    got = await consume(broker.bootstrap, topic, lambda ms: len(ms) >= 2, timeout=30)
    assert sorted((m.key, m.value) for m in got) == [(b"k1", b"v1"), (b"k2", b"v2")]


def test_cli_with_the_password_from_a_file(broker, unique, tmp_path):
    """`leadpulse simulate` writes the funnel and `leadpulse backtest --topic` reads it back."""
    env = {**topic_env(unique), **broker.env(KAFKA_SASL_PASSWORD=None,
                                             KAFKA_SASL_PASSWORD_FILE=password_file(tmp_path, broker.password))}
    sim = run(["tools.cli", "simulate", "--contacts", "20", "--days", "5", "--seed", "3", "--json"], env)
    assert sim.rc == 0, sim.err
    sent = json.loads(sim.out)["kafka"]["topics"]
    assert sent[env["LEADPULSE_EVENTS_TOPIC"]] > 0
    back = run(["tools.cli", "backtest", "--rules", "default", "--topic", env["LEADPULSE_EVENTS_TOPIC"], "--json"], env)
    assert back.rc == 0, back.err
    assert broker.password not in sim.text + back.text


def wrong(broker) -> dict[str, dict[str, str | None]]:
    """Ways to be refused, each with the line that must explain it."""
    return {
        "no credentials": ({"KAFKA_SECURITY_PROTOCOL": None, "KAFKA_SASL_USERNAME": None, "KAFKA_SASL_PASSWORD": None,
                            "KAFKA_SSL_CAFILE": None},
                           f"Kafka at {broker.bootstrap} closed the connection on an unauthenticated request"),
        "wrong password": ({"KAFKA_SASL_PASSWORD": "wrong-" + broker.password[::-1]},
                           f"Kafka at {broker.bootstrap} refused the credentials for user '{USER}' (SCRAM-SHA-512)"),
        "unknown user": ({"KAFKA_SASL_USERNAME": "mallory"},
                         f"Kafka at {broker.bootstrap} refused the credentials for user 'mallory' (SCRAM-SHA-512)"),
        "mechanism the broker lacks": ({"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"},
                                       "does not accept SASL mechanism SCRAM-SHA-256 (KAFKA_SASL_MECHANISM)"),
    }


@pytest.mark.parametrize("case", ["no credentials", "wrong password", "unknown user", "mechanism the broker lacks"])
def test_cli_is_refused_with_one_clear_line(broker, unique, case):
    overrides, expected = wrong(broker)[case]
    env = {**topic_env(unique), **broker.env(**overrides)}
    res = run(["tools.cli", "simulate", "--contacts", "3", "--days", "1"], env, timeout=60)
    assert res.rc == 2
    assert expected in res.one_error_line()
    for secret in {broker.password, overrides.get("KAFKA_SASL_PASSWORD")} - {None}:
        assert secret not in res.text


async def topics_named(bootstrap: str, suffix: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    from tools.runtime import client_kwargs

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs())
    await admin.start()
    try:
        return [t for t in await admin.list_topics() if suffix in t]
    finally:
        await admin.close()


@pytest.mark.parametrize("case", ["no credentials", "wrong password"])
@pytest.mark.parametrize("entry", [["agents", "worker"], ["tools.cli", "worker"]])
async def test_worker_is_refused_before_it_starts(broker, secure_env, unique, tmp_path, case, entry):
    """Exit 2 with one line, nothing retried, nothing created: not the data dir's content, not a topic."""
    overrides, expected = wrong(broker)[case]
    data = tmp_path / "data"
    env = {**topic_env(unique), **broker.env(**overrides), "LEADPULSE_DATA_DIR": str(data)}
    started = time.monotonic()
    res = run(entry, env, timeout=60)
    assert res.rc == 2, res.text
    assert expected in res.one_error_line()
    assert time.monotonic() - started < 30
    assert broker.password not in res.text and (overrides.get("KAFKA_SASL_PASSWORD") or "\0") not in res.text
    assert list(data.iterdir()) == []
    assert await topics_named(broker.bootstrap, unique) == []


def test_an_untrusted_certificate_is_one_clear_line(broker, unique):
    if broker.protocol != "SASL_SSL":
        pytest.skip("a TLS listener only")
    res = run(["tools.cli", "simulate", "--contacts", "3", "--days", "1"],
              {**topic_env(unique), **broker.env(KAFKA_SSL_CAFILE=None)}, timeout=60)
    assert res.rc == 2
    assert (f"Kafka at {broker.bootstrap}: its TLS certificate is not trusted (unable to get local issuer "
            f"certificate): set KAFKA_SSL_CAFILE") in res.one_error_line()


async def test_worker_scores_on_the_authenticated_broker(broker, secure_env, unique, tmp_path):
    """The worker reads its password from a file (a mounted Secret); the test clients from the environment."""
    names = topic_env(unique)
    # KAFKA_SASL_PASSWORD="" is unset: this process's own (secure_env) must not reach the worker.
    worker_env = broker.env(KAFKA_SASL_PASSWORD="", KAFKA_SASL_PASSWORD_FILE=password_file(tmp_path, broker.password))
    worker = Worker(broker.bootstrap, unique, tmp_path, extra_env=worker_env).start()
    try:
        worker.wait_ready(timeout=90)
        now = int(time.time() * 1000)
        journey = [("content_download", 30, {"asset_type": "whitepaper"}), ("webinar_signup", 26, {}),
                   ("webinar_attended", 24, {}), ("pricing_page_view", 6, {"url": "/pricing"}),
                   ("demo_request", 4, {})]
        await produce(broker.bootstrap, names["LEADPULSE_EVENTS_TOPIC"], [
            event("c-1", f"e-{i}", etype, now - hours * HOUR, **props) for i, (etype, hours, props) in enumerate(journey)
        ])

        def hot(changes):
            return any(c["contact_id"] == "c-1" and c["to_value"] == "hot" for c in changes)

        changes = await consume(broker.bootstrap, names["LEADPULSE_LIFECYCLE_TOPIC"], hot, timeout=60,
                                decode=decoder("LifecycleChange"))
        assert hot(changes), f"no hot change in {changes}\n{worker.log_text()[-3000:]}"
        status, body = worker.get_json("/contacts/c-1")
        assert status == 200 and body["temperature"] == "hot"
    finally:
        worker.stop()
    log = worker.log_text()
    assert f"Authenticated as {USER} via SCRAM-SHA-512" in log
    assert broker.password not in log


def test_the_launcher_never_logs_the_password_and_probes_the_sasl_listener(broker):
    kafka = LocalKafka(state_dir=broker.state_dir)
    assert kafka.status()["ready"] is True  # ApiVersions, answered before authentication (and over TLS)
    assert "--add-scram" in kafka.log_path.read_text()
    assert broker.password not in kafka.log_path.read_text()
