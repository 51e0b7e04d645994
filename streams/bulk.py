"""Bulk delivery: an agent receives each fetch of a partition as one list, not a message at a time.

Why: Faust hands a consumed message to its agent through an async generator, the conductor, a
channel queue and `wait_first` (two tasks and an `asyncio.wait`), one message per event-loop turn:
about 70 µs a message before any work, a ceiling near 13k events/s (see ../shared/notes). Here the
fetcher's loop (`Consumer._drain_messages`) keeps everything Faust does per fetch — flow control,
the generation check, read offsets, gaps, commits, end offsets — but for the topics an agent
registered it builds the partition's messages in one pass and puts them on the agent's queue as one
item. Other topics (table changelogs during recovery, any other agent) take Faust's own path.

The queue is one of Faust's flow-controlled queues: a rebalance suspends it and empties it, as it
does the agents' channels, and the partitions are then read again from their committed offsets.
Messages are tracked as unacknowledged (so a rebalance waits for them) when the agent takes them
(`BulkDelivery.take`), and acknowledged by the agent with `Consumer.ack`, in order.

Faust's per-message sensors (`on_message_in` / `on_message_out`) are not called for these topics:
the worker's own metrics count what it consumed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ConsumerMessage

_drain_messages = faust_consumer.Consumer._drain_messages
_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
FETCH_MIN_BYTES = 1024 * 1024  # a backlog fills this at once; a trickle waits out the fetch wait


class BulkDelivery:
    """Lists of consumed messages of `topics`, a partition's fetch per item, for one agent."""

    def __init__(self, app, topics: Iterable[str], fetch_wait_ms: int = 0, maxsize: int = 16):
        self.app = app
        self.topics = frozenset(topics)
        # How long the broker may hold a fetch for more records (Faust asks for any at all): a
        # batch's fixed costs (sends, acknowledgements, the changelog offsets) are then shared by
        # many events at a moderate rate too, not only in a backlog, for at most this much latency.
        self.fetch_wait_ms = fetch_wait_ms
        self.queue = app.FlowControlQueue(maxsize=maxsize, clear_on_resume=True)
        app.__dict__["_leadpulse_bulk"] = self

    async def take(self, max_size: int) -> list:
        """The messages waiting (at least one fetch, at most about `max_size` messages), tracked as
        unacknowledged at once: from here the agent owns them until it acknowledges them."""
        queue = self.queue
        batch = list(await queue.get())
        while len(batch) < max_size and not queue.empty():
            batch += queue.get_nowait()
        consumer = self.app.consumer
        unacked = consumer.unacked
        for m in batch:
            m.tracked = True
            unacked.add(m)
        return batch

    @staticmethod
    def ack(consumer, messages: Iterable) -> None:
        """Acknowledge processed messages (their offsets become committable, in order)."""
        ack = consumer.ack
        for m in messages:
            ack(m)


async def _drain_in_bulk(self, fetcher) -> None:
    """Faust's `_drain_messages` (faust-streaming 0.15.3), with a partition's fetch of a bulk
    topic delivered as one list. Per fetch the same steps as Faust's loop; per message only what
    must be: the read-offset check, the gap record and the message object."""
    bulk: BulkDelivery | None = self.app.__dict__.get("_leadpulse_bulk")
    if bulk is None:
        return await _drain_messages(self, fetcher)
    app = self.app
    callback = self.callback
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    read_offsets = self._read_offset
    acks_enabled_for = app.topics.acks_enabled_for
    bulk_topics = bulk.topics
    put = bulk.queue.put
    track_end = app.monitor.track_tp_end_offset
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            records, active = await self._wait_next_records(1.0)
            await self.sleep(0)
            if records is None or self.should_stop:
                continue
            if not self.flow_active:
                try:
                    await self.perform_seek()  # as Faust does: read again from the committed offsets
                except Exception as exc:
                    self.log.warning(f"exception performing seek when flow not active {exc}")
                continue
            generation = app.consumer_generation_id
            for tp, recs in records.items():
                if not self.flow_active or app.consumer_generation_id != generation:
                    break
                if active is not None and tp not in active and tp not in self._buffered_partitions:
                    continue
                track_end(tp, self.highwater(tp))
                commit_every = self._commit_every
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                if tp.topic in bulk_topics:
                    r_offset = read_offsets.get(tp)
                    messages = []
                    for rec in recs:
                        offset = rec.offset
                        if r_offset is not None and offset < r_offset:
                            continue  # read before (Faust drops these too)
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(tp.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        ts = rec.timestamp
                        messages.append(ConsumerMessage(
                            rec.topic, rec.partition, offset, None if ts is None else ts / 1000.0,
                            rec.timestamp_type, rec.headers, rec.key, rec.value, rec.checksum,
                            rec.serialized_key_size, rec.serialized_value_size, tp, generation_id=generation,
                        ))
                        r_offset = offset
                    if messages:
                        await self.wait_first(put(messages), self.suspend_flow.wait())
                        if not self.flow_active:
                            break  # suspended meanwhile: the queue is emptied, the partition read again
                        read_offsets[tp] = r_offset
                    continue
                for rec in recs:  # Faust's own path, a message at a time
                    message = self._to_message(tp, rec)
                    offset = message.offset
                    r_offset = read_offsets.get(tp)
                    if r_offset is None or offset >= r_offset:
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                        read_offsets[tp] = offset
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise


def _create_consumer_with_fetch_wait(self, transport):
    """Faust's worker consumer, with the bulk delivery's fetch wait (Faust sets no minimum size)."""
    consumer = _create_worker_consumer(self, transport)
    bulk: BulkDelivery | None = self.app.__dict__.get("_leadpulse_bulk")
    if bulk is not None and bulk.fetch_wait_ms > 0:
        consumer._fetch_min_bytes = FETCH_MIN_BYTES
        consumer._fetch_max_wait_ms = bulk.fetch_wait_ms
    return consumer


def apply() -> None:
    faust_consumer.Consumer._drain_messages = _drain_in_bulk
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_consumer_with_fetch_wait
