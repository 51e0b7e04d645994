"""Contender (d) of `bench/compare.py`: the same per-event scoring written with Quix Streams.

    <quix venv>/bin/python bench/quix_app.py BOOTSTRAP INPUT SCORES GROUP STATE_DIR

Quix Streams is not a leadpulse dependency (it brings confluent-kafka and the `avro` package, which
must never sit beside avro-python3 in the project's venv): `bench/compare.py --setup-quix` installs it
into its own venv under `.leadpulse/bench-quix/`, and this script runs with that interpreter.

The app is the documented StreamingDataFrame shape: `apply(..., stateful=True)` per message, state in
Quix's RocksDB store (changelog topic, at-least-once, 1 s commit interval like the others), the result
sent with `to_topic`. Decoding uses the project's fastavro codec (`streams.codec`, pure fastavro), the
scoring is the same core as leadpulse; one state read, one state write and one output per event."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quixstreams import Application  # noqa: E402

from scoring import ScoringError, ScoringModel, default_rules  # noqa: E402
from scoring.events import BehaviourEvent, validate_event  # noqa: E402
from streams.codec import AvroCodec, DecodeError  # noqa: E402

STATE_KEY = "contact"


def main() -> None:
    bootstrap, input_topic, scores_topic, group, state_dir = sys.argv[1:6]
    codec = AvroCodec()
    model = ScoringModel(default_rules())

    def snapshot_record(snap) -> dict:
        return {"contact_id": snap.contact_id, "at": snap.at, "score": float(snap.score),
                "engagement": float(snap.engagement), "fit": float(snap.fit), "grade": snap.grade,
                "temperature": snap.temperature, "stage": snap.stage,
                "explanation": {k: float(v) for k, v in snap.explanation.items()},
                "rules_version": snap.rules_version}

    def score(value: bytes, state) -> bytes | None:
        try:
            rec = codec.decode("BehaviourEvent", value)
            ev = BehaviourEvent(rec["event_id"], rec["contact_id"], rec["event_type"], rec["occurred_at"],
                                rec["properties"], rec["source"], rec["anonymous_id"])
            validate_event(ev, int(time.time() * 1000))
            raw = state.get_bytes(STATE_KEY)
            st, _changes = model.apply_event(model.decode_state(raw) if raw is not None else None, ev)
        except (DecodeError, ScoringError):
            return None
        state.set_bytes(STATE_KEY, model.encode_state(st))
        return codec.encode("ScoreSnapshot", snapshot_record(model.snapshot(st)))

    app = Application(
        broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
        commit_interval=1.0, state_dir=state_dir, processing_guarantee="at-least-once", loglevel="INFO",
    )
    inp = app.topic(input_topic, key_deserializer="bytes", value_deserializer="bytes")
    out = app.topic(scores_topic, key_serializer="bytes", value_serializer="bytes")
    sdf = app.dataframe(inp)
    sdf = sdf.apply(score, stateful=True).filter(lambda v: v is not None)
    sdf.to_topic(out)
    app.run()


if __name__ == "__main__":
    main()
