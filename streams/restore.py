"""Bulk restore of the contact table from its changelog, before the worker joins its group.

Why: Faust restores a table one changelog record at a time through its consumer, conductor,
recovery queue and per-record bookkeeping: ≈5.6k contacts/s here, three minutes for a million
contacts before a new worker (or one whose disk was lost) serves anything. Here every changelog
partition is read from what the local store already holds (its persisted offset) to the end with a
plain consumer, a fetch at a time, and written with one RocksDB write batch per fetch; the store
then records the offset it holds, exactly as Faust's own restore does. When Faust assigns the
partitions, its recovery finds the store up to date and only reads what was written since.

Every partition is restored, not only the ones this worker will own (unknown before the group
assigns them): the others are then warm copies, and taking one over later reads only its tail.
Only the RocksDB store keeps what it restored across the hand-over to Faust; with `memory://`
Faust restores everything itself and this is skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from streams import logs
from streams.settings import Settings
from streams.tables import held_offset, write_atomically

log = logging.getLogger("leadpulse.restore")


@dataclass
class Restored:
    records: int
    seconds: float
    partitions: int

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


class _Databases:
    """Raw RocksDB databases by partition (a restore child process), as `restore_partitions` writes them."""

    def __init__(self, dbs: dict[int, Any]):
        self.dbs = dbs

    def held(self, partition: int) -> int | None:
        return held_offset(self.dbs[partition])

    def write(self, partition: int, items: list[tuple[bytes, bytes | None]], held: int | None) -> None:
        write_atomically(self.dbs[partition], items, held)


async def restore_partitions(store: Any, partitions: list[int], changelog: str, consumer_kwargs: dict[str, Any],
                             read_committed: bool) -> dict[int, int | None]:
    """Bring each of `partitions` of `store` (`held(p)`, `write(p, items, held)`: a PartitionStore
    or raw databases) up to the end of `changelog`, a fetch per write. Returns the offset each
    partition's store then holds: the offset before the consumer's position at the end, so that a
    trailing transaction marker counts as read (Faust's recovery would otherwise wait for it)."""
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        fetch_max_bytes=32 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024,
        **consumer_kwargs,
    )
    await consumer.start()
    held = {p: store.held(p) for p in partitions}
    try:
        tps = {TopicPartition(changelog, p): p for p in partitions}
        if not tps:
            return held
        consumer.assign(list(tps))
        ends = await consumer.end_offsets(list(tps))
        remaining: dict[TopicPartition, int] = {}
        for tp, p in tps.items():
            start = 0 if held[p] is None else held[p] + 1
            if start < ends[tp]:
                consumer.seek(tp, start)
                remaining[tp] = ends[tp]
            else:
                consumer.pause(tp)
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, recs in fetched.items():
                if recs:
                    p = tps[tp]
                    store.write(p, [(r.key, r.value) for r in recs], recs[-1].offset)  # with the data, atomically
                    held[p] = recs[-1].offset
                    restore_partitions.records += len(recs)
            for tp in list(remaining):
                position = await consumer.position(tp)
                if position >= remaining[tp]:  # read up to the end (markers included)
                    del remaining[tp]
                    consumer.pause(tp)
                    p = tps[tp]
                    if held[p] is None or position - 1 > held[p]:
                        store.write(p, [], position - 1)
                        held[p] = position - 1
    finally:
        await consumer.stop()
    return held


restore_partitions.records = 0  # records written by this process's restores (logs, tests)


def consumer_kwargs(settings: Settings) -> dict[str, Any]:
    return dict(bootstrap_servers=settings.bootstrap_servers, **settings.kafka_client_kwargs())


async def _changelog_partitions(changelog: str, kwargs: dict[str, Any]) -> list[int]:
    consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **kwargs)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        return sorted(cluster.partitions_for_topic(changelog) or ())  # none: a new app, Faust creates it later
    finally:
        await consumer.stop()


def _die_with_parent() -> None:
    """In the child, before exec: killed when the worker dies (a SIGKILLed worker must not leave a
    child holding its databases' locks for the next worker on the same directory). Linux only."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def restore_before_start(store: Any, changelog: str, settings: Settings, processes: int | None = None) -> Restored | None:
    """Restore before Faust starts, the partitions shared among `processes` (default: one per CPU)
    child processes (`python -m streams.restore`): decoding fetches is CPU-bound, and each partition
    is a database of its own. Children, not forks: nothing of this process's RocksDB or event-loop
    state is carried into them. None for a store without partitions on disk (memory://), which Faust
    restores in full anyway. A share that fails is only logged: the restore at assignment
    (`streams.bootstrap`, before Faust's recovery) then reads it."""
    if not hasattr(store, "_db_for_partition"):
        return None
    # Faust has not set logging up yet: these lines get a handler of their own, in Faust's format.
    handler = logging.StreamHandler(sys.stdout if logs.json_enabled() else sys.stderr)
    handler.setFormatter(logs.JsonFormatter() if logs.json_enabled() else
                         logging.Formatter("[%(asctime)s] [%(process)s] [%(levelname)s] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        started = time.perf_counter()
        partitions = asyncio.run(_changelog_partitions(changelog, consumer_kwargs(settings)))
        if not partitions:
            return Restored(0, 0.0, 0)
        n = max(1, min(processes or os.cpu_count() or 1, len(partitions)))
        log.info("restoring %s (%d partitions) before joining the group, in %d processes", changelog, len(partitions), n)
        children = []
        for i in range(n):
            share = partitions[i::n]
            job = {"changelog": changelog, "read_committed": settings.processing_guarantee == "exactly_once",
                   "paths": {p: str(store.partition_path(p)) for p in share}}
            children.append((share, subprocess.Popen([sys.executable, "-m", "streams.restore", json.dumps(job)],
                                                     stdout=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)))
        records = 0
        for share, child in children:
            out, _ = child.communicate()
            if child.returncode == 0:
                records += json.loads(out.strip().splitlines()[-1])["records"]
            else:
                log.warning("restoring partitions %s of %s failed (exit code %s): Faust's recovery reads them instead",
                            share, changelog, child.returncode)
        done = Restored(records, time.perf_counter() - started, len(partitions))
        log.info("restored %d changelog records in %.2f s (%.0f/s)", done.records, done.seconds, done.per_second)
        return done
    finally:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
        log.propagate = True


def main(argv: list[str]) -> int:
    """A child of `restore_before_start`: its share of the partitions; prints `{"records": n}`. Its
    Kafka settings come from the environment, which it shares with the worker."""
    from faust.stores.rocksdb import RocksDBOptions

    job = json.loads(argv[0])
    options = RocksDBOptions()  # the options Faust opens our table's databases with
    dbs = {int(p): options.open(Path(path)) for p, path in job["paths"].items()}
    try:
        asyncio.run(restore_partitions(_Databases(dbs), sorted(dbs), job["changelog"],
                                       consumer_kwargs(Settings.from_env()), job["read_committed"]))
    finally:
        for db in dbs.values():
            db.close()
    print(json.dumps({"records": restore_partitions.records}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
