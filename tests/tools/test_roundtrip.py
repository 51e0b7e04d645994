"""The whole loop on a real broker: `simulate` → a real worker started with `leadpulse worker` →
`explain` (score checked against the core's own recomputation) → `backtest` from the topics (checked
against the backtest of the same simulation written to a file)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter, defaultdict

import fastavro
import pytest

from scoring import BehaviourEvent, ContactProfile, ScoringModel
from tests.tools.conftest import one_error_line
from tools.runtime import ROOT, Worker, topic_env

pytestmark = pytest.mark.kafka
HOUR = 3_600_000


class CliWorker(Worker):
    """A worker started the way an operator starts one: `leadpulse worker` (which execs Faust's)."""

    def start(self) -> "CliWorker":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "worker"], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self


def expected_state(path, contact_id):
    """The contact's state from the core alone, its records in file (delivery) order."""
    model = ScoringModel()
    st = None
    with open(path, "rb") as fh:
        for r in fastavro.reader(fh):
            rec = r[r["kind"]]
            if rec["contact_id"] != contact_id:
                continue
            if r["kind"] == "behaviour":
                st, _ = model.apply_event(st, BehaviourEvent(**rec))
            elif r["kind"] == "profile":
                st, _ = model.apply_profile(st, ContactProfile(**rec))
    return model, st


def comparable(res):
    return [{k: v for k, v in r.items() if k not in ("rules_source",)} for r in res["rules"]]


def test_simulate_worker_explain_backtest(cli, kafka_bootstrap, unique, tmp_path, monkeypatch):
    names = topic_env(unique)
    for k, v in names.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    end = int(time.time() * 1000) // HOUR * HOUR  # pinned: the file and the topics get the same records
    sim = ["simulate", "--contacts", "60", "--days", "30", "--seed", "11", "--end", end]
    rc, _, err = cli(*sim, "--out", tmp_path / "sim.avro")
    assert rc == 0, err

    worker = CliWorker(kafka_bootstrap, unique, tmp_path).start()
    monkeypatch.setenv("LEADPULSE_API_TOKEN", worker.api_token)  # `explain` asks the lookup API, behind tokens
    try:
        worker.wait_ready()
        rc, out, err = cli(*sim, "--json")
        assert rc == 0, err
        stats = json.loads(out)
        assert stats["kafka"]["topics"][names["LEADPULSE_EVENTS_TOPIC"]] == stats["behaviour_deliveries"]

        # a person (has a profile) with the most events and no sales update
        with open(tmp_path / "sim.avro", "rb") as fh:
            recs = list(fastavro.reader(fh))
        kinds = defaultdict(Counter)
        for r in recs:
            kinds[r[r["kind"]]["contact_id"]][r["kind"]] += 1
        contact = max((c for c, k in kinds.items() if k["profile"] and not k["qualification"]),
                      key=lambda c: (kinds[c]["behaviour"], c))
        model, state = expected_state(tmp_path / "sim.avro", contact)

        # wait until the worker has scored every record of the contact
        deadline = time.monotonic() + 60
        while True:
            rc, out, err = cli("explain", contact, "--url", worker.url, "--json")
            if rc == 0:
                got = json.loads(out)
                want = model.snapshot(state, max(got["at"], state.as_of))  # cooling may have advanced it
                if got["at"] >= state.as_of and abs(got["score"] - want.score) < 1e-6:
                    break
            assert time.monotonic() < deadline, f"worker never caught up: {out or err}\n{worker.log_text()[-3000:]}"
            time.sleep(0.5)
        assert got["fit"] == want.fit and got["grade"] == want.grade
        assert got["engagement"] == pytest.approx(want.engagement, abs=1e-6)
        assert sum(got["explanation"].values()) == pytest.approx(got["score"], abs=1e-6)
        assert got["explanation"].keys() == want.explanation.keys()

        rc, out, err = cli("explain", contact, "--url", worker.url)
        assert rc == 0 and err == ""
        assert f"score {got['score']:.1f}" in out and got["temperature"] in out and got["stage"] in out
        biggest = max(got["explanation"], key=lambda k: abs(got["explanation"][k]))
        lines = out.splitlines()
        rule_rows = lines[next(i for i, ln in enumerate(lines) if ln.startswith("─")) + 1:]
        assert rule_rows[0].split()[0] == biggest  # largest contribution first

        rc, _, err = cli("explain", "nobody-" + unique, "--url", worker.url)
        assert rc == 1 and "unknown contact" in one_error_line(err)
    finally:
        worker.stop()

    # the history in the topics replays like the file (in event-time order per contact)
    rc, out, err = cli("backtest", "--topic", names["LEADPULSE_EVENTS_TOPIC"], "--to", end, "--json")
    assert rc == 0, err
    from_kafka = json.loads(out)
    rc, out, err = cli("backtest", "--events", tmp_path / "sim.avro", "--order", "time", "--to", end, "--json")
    assert rc == 0, err
    from_file = json.loads(out)
    assert from_kafka["input"]["records"] == from_file["input"]["records"] == len(recs)
    assert comparable(from_kafka) == comparable(from_file)
