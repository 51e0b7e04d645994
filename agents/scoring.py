"""The scoring agent, kept thin: take a batch → the batch step → hand it to the checkpoint.

The batch is whatever Faust's fetcher has delivered meanwhile (streams.bulk), topped up to about
LEADPULSE_BATCH_MAX events: one event when the load is light, thousands when a backlog forms.
Every message taken is processed (scored, forwarded to its contact's partition, or dead-lettered);
the checkpoint (streams.checkpoint) then makes its outputs, states and offsets durable in order.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from faust.types import TP

from agents.pipeline import Outputs, RawMessage
from streams import metrics
from streams.checkpoint import Batch

if TYPE_CHECKING:
    from streams.bootstrap import Runtime

log = logging.getLogger("leadpulse.agents")


def batch_of(rt: "Runtime", number: int, messages: list[RawMessage], out: Outputs) -> Batch:
    """The checkpoint's view of a processed batch: every output by the input partition whose
    transaction it joins, and the next offset to read of every input partition."""
    s = rt.settings
    outputs: dict[int, list] = {}
    for topic, records in ((s.lifecycle_topic, out.lifecycle), (s.scores_topic, out.scores),
                           (s.dlq_topic, out.dead_letters), (s.repartition_topic, out.forwarded),
                           (s.account_shares_topic, out.shares), (s.accounts_topic, out.accounts)):
        for r in records:
            source = r.partition if r.source is None else r.source
            outputs.setdefault(source, []).append((topic, r.partition, r.key, r.value, r.headers))
    offsets: dict[TP, int] = {}
    for m in messages:  # in read order per partition: the last one wins
        offsets[TP(m.topic, m.partition)] = m.offset + 1
    return Batch(number, offsets, outputs)


def log_changes(out: Outputs) -> None:
    """A log line per erasure (an audit trail of what was forgotten); per other change only with
    `-l debug`: at info a busy worker would write thousands a second, and the topic is the record."""
    debug = log.isEnabledFor(logging.DEBUG)
    for change in out.changes:
        if debug or change.kind == "erasure":
            log.log(logging.INFO if change.kind == "erasure" else logging.DEBUG, "lifecycle contact=%s %s %s -> %s",
                    change.contact_id, change.kind, change.from_value, change.to_value,
                    extra={"contact_id": change.contact_id, "kind": change.kind,
                           "from_value": change.from_value, "to_value": change.to_value})


def register(rt: "Runtime") -> None:
    """The agent over every input topic, on `rt.app`."""

    @rt.app.agent(rt.topics.inputs, name="leadpulse.score")
    async def score(stream):
        """Every input of a contact (behaviour, profile, qualification, erasure, forwarded input,
        cooling tick) → new state, lifecycle changes and a score snapshot; a batch at a time."""
        delivery, pipeline, checkpoint, states = rt.delivery, rt.pipeline, rt.checkpoint, rt.states
        schedule, batch_max = rt.schedule, rt.settings.batch_max
        while True:
            messages = await delivery.take(batch_max)
            rt.busy_since = time.monotonic()
            try:
                started = time.perf_counter()
                number = states.begin()
                out = pipeline.process(messages, due=schedule.pop_due)
                metrics.observe_batch(out, time.perf_counter() - started)
                for partition, contact_id, at in out.touched:
                    schedule.schedule(partition, contact_id, at)
                log_changes(out)
                await checkpoint.submit(batch_of(rt, number, messages, out))
            except Exception as exc:
                rt.fatal("scoring a batch failed", exc)
                raise
            finally:
                rt.busy_since = None
