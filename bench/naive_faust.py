"""Contender (b) of `bench/compare.py`: a Faust agent written the way Faust's documentation shows.

    NAIVE_APP_ID=… NAIVE_INPUT=… NAIVE_SCORES=… NAIVE_LIFECYCLE=… NAIVE_DLQ=… KAFKA_BOOTSTRAP_SERVERS=… \
    NAIVE_DATA_DIR=… python bench/naive_faust.py worker -l info

One event at a time: the Confluent-framed Avro value is decoded with the reference implementation
(avro-python3's `DatumReader`, after skipping the 5-byte header), the contact's state is read from a
Table (RocksDB store, changelog-backed, at-least-once), the same scoring core as leadpulse computes
the new state and score, the state is written back (`table[key] = …`: one changelog record per
event) and a ScoreSnapshot (Avro, reference implementation) is sent with `await topic.send(...)`
per event, plus one send per lifecycle change and per rejected event. No batching anywhere.

Settings shared with leadpulse for fairness: raw key/value serialisers, a 1 s commit interval and
the fast group-join timings its tests and benchmarks use. Everything else is Faust's default."""

from __future__ import annotations

import io
import os
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import avro.io  # noqa: E402  (avro-python3, the reference implementation)
import avro.schema  # noqa: E402
import faust  # noqa: E402

from scoring import ScoringError, ScoringModel, default_rules  # noqa: E402
from scoring.events import BehaviourEvent, validate_event  # noqa: E402

SCHEMAS = ROOT / "schemas"
HEADER = struct.Struct(">bI")
SNAPSHOT_ID, CHANGE_ID = 50, 40  # schemas/catalogue.toml


def _schema(name: str):
    return avro.schema.Parse((SCHEMAS / name).read_text())


event_reader = avro.io.DatumReader(_schema("behaviour_event.v2.avsc"))
snapshot_writer = avro.io.DatumWriter(_schema("score_snapshot.v1.avsc"))
change_writer = avro.io.DatumWriter(_schema("lifecycle_change.v1.avsc"))


def encode(writer, schema_id: int, record: dict) -> bytes:
    buf = io.BytesIO()
    buf.write(HEADER.pack(0, schema_id))
    writer.write(record, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"{name} is not set")
    return value


app = faust.App(
    env("NAIVE_APP_ID"),
    broker="kafka://" + env("KAFKA_BOOTSTRAP_SERVERS"),
    store="rocksdb://",
    datadir=env("NAIVE_DATA_DIR"),
    processing_guarantee="at_least_once",
    topic_partitions=int(env("NAIVE_PARTITIONS", "4")),
    key_serializer="raw",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=1.0,
    web_enabled=False,
    broker_session_timeout=6.0,
    broker_heartbeat_interval=0.5,
    broker_rebalance_timeout=10.0,
    stream_recovery_delay=0.0,
)
events = app.topic(env("NAIVE_INPUT"), key_type=bytes, value_type=bytes)
scores = app.topic(env("NAIVE_SCORES"), key_type=bytes, value_type=bytes)
lifecycle = app.topic(env("NAIVE_LIFECYCLE"), key_type=bytes, value_type=bytes)
dlq = app.topic(env("NAIVE_DLQ"), key_type=bytes, value_type=bytes)
table = app.Table("contact-scores", key_type=bytes, value_type=bytes)
model = ScoringModel(default_rules())


def snapshot_record(snap) -> dict:
    return {"contact_id": snap.contact_id, "at": snap.at, "score": float(snap.score),
            "engagement": float(snap.engagement), "fit": float(snap.fit), "grade": snap.grade,
            "temperature": snap.temperature, "stage": snap.stage,
            "explanation": {k: float(v) for k, v in snap.explanation.items()}, "rules_version": snap.rules_version}


def change_record(c) -> dict:
    return {"change_id": c.change_id, "contact_id": c.contact_id, "kind": c.kind, "from_value": c.from_value,
            "to_value": c.to_value, "at": c.at, "cause_event_id": c.cause_event_id, "score": float(c.score),
            "engagement": float(c.engagement), "fit": float(c.fit), "grade": c.grade,
            "explanation": {k: float(v) for k, v in c.explanation.items()}, "rules_version": c.rules_version}


@app.agent(events)
async def score(stream):
    async for key, value in stream.items():
        rec = event_reader.read(avro.io.BinaryDecoder(io.BytesIO(value[HEADER.size:])))
        ev = BehaviourEvent(rec["event_id"], rec["contact_id"], rec["event_type"], rec["occurred_at"],
                            rec["properties"], rec["source"], rec["anonymous_id"])
        raw = table.get(key)
        try:
            validate_event(ev, int(time.time() * 1000))
            state, changes = model.apply_event(model.decode_state(raw) if raw is not None else None, ev)
        except ScoringError:
            await dlq.send(key=key, value=value)
            continue
        table[key] = model.encode_state(state)
        await scores.send(key=key, value=encode(snapshot_writer, SNAPSHOT_ID, snapshot_record(model.snapshot(state))))
        for change in changes:
            await lifecycle.send(key=key, value=encode(change_writer, CHANGE_ID, change_record(change)))


if __name__ == "__main__":
    app.main()
