"""A Faust table's local store, read and written a partition at a time beneath the Table API.

Why: Faust's RocksDB store finds a key's partition through the current event (one context-variable
look-up, a weak reference and an LRU key-index write per access) and falls back to asking every
partition's database when there is none. The batch step already knows each contact's partition, so
it names it (`focus`) and reads go straight to that partition's database. A batch's states of one
partition are written in one RocksDB write batch together with the changelog offset they reach
(`write`): the local store holds a batch's states of a partition entirely or not at all, and always
says how far into the changelog it is. The in-memory store (`memory://`) is one dict for all
partitions; it keeps the offsets it reached beside it.

Only the partitions Faust has open (those assigned to this worker) are read or written here: a
partition revoked meanwhile reads as empty, and a write to it is skipped — its states are on the
changelog, and its store catches up from there when the partition comes back.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from streams import compat

OFFSET_KEY = b"__faust\0offset__"  # where Faust's RocksDB store keeps the changelog offset it holds


def write_atomically(db: Any, items: list[tuple[bytes, bytes | None]], held: int | None) -> None:
    """`items` (None deletes) and the changelog offset they reach into one RocksDB database, in one
    write batch."""
    from rocksdict import WriteBatch

    batch = WriteBatch(raw_mode=True)  # as Faust writes the store
    for key, value in items:
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    if held is not None:
        batch.put(OFFSET_KEY, str(held).encode())
    db.write(batch)


def held_offset(db: Any) -> int | None:
    raw = db.get(OFFSET_KEY)
    return None if raw is None else int(raw)


class _NotOpen:
    """Reads of a partition that is not open here: nothing (a lookup during a rebalance: 404)."""

    def get(self, key, default=None):
        return default

    def put(self, key, value):
        raise LookupError("the partition is not open on this worker")

    delete = put


_NOT_OPEN = _NotOpen()


class PartitionStore(MutableMapping):
    """`store` (a Faust table's `.data`) as a mapping over the focused partition's keys."""

    def __init__(self, store: Any):
        self.store = store
        self.partitioned = compat.has_partition_dbs(store)
        self._db: Any = None if self.partitioned else compat.memory_data(store)
        self._held: dict[int, int] = {}  # memory store: changelog offset reached, per partition
        self._focused: int | None = None

    def db(self, partition: int) -> Any:
        """The partition's database if Faust has it open, else None (memory: the one dict)."""
        return compat.changelog_db(self.store, partition) if self.partitioned else self._db

    def focus(self, partition: int) -> None:
        """Reads go to this partition until the next `focus`."""
        if self.partitioned and partition != self._focused:
            db = self.db(partition)
            self._db = _NOT_OPEN if db is None else db
            self._focused = None if db is None else partition

    def forget(self) -> None:
        """Drop the focused database handle (at every rebalance): Faust lets a revoked partition's
        database close by garbage collection and opens it again when the partition comes back; a
        handle kept here would hold its lock and make that open fail."""
        self._focused = None
        if self.partitioned:
            self._db = None

    # -- durable writes ---------------------------------------------------------------------------
    def write(self, partition: int, items: list[tuple[bytes, bytes | None]], held: int | None) -> bool:
        """`items` (None deletes) and the changelog offset they reach, atomically; False (nothing
        written) for a partition that is not open here any more."""
        if self.partitioned:
            db = self.db(partition)
            if db is None:
                return False
            write_atomically(db, items, held)
            return True
        data = self._db
        for key, value in items:
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        if held is not None:
            self._held[partition] = held
        return True

    def held(self, partition: int) -> int | None:
        """The changelog offset this partition's store holds (None: nothing yet)."""
        if self.partitioned:
            return held_offset(self._open(partition))
        return self._held.get(partition)

    def items_of(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, state) of one partition (memory: of every partition; the caller filters)."""
        if not self.partitioned:
            yield from list(self._db.items())
            return
        for key, value in self._open(partition).items():
            if key != OFFSET_KEY:
                yield key, value

    def _open(self, partition: int) -> Any:
        db = self.db(partition)
        if db is None:
            raise LookupError(f"partition {partition} of the contacts table is not open on this worker")
        return db

    # -- the mapping (reads of the focused partition) -------------------------------------------
    def get(self, key: bytes, default=None):
        value = self._db.get(key)
        return default if value is None else value

    def __getitem__(self, key: bytes) -> bytes:
        value = self._db.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if self.partitioned:
            self._db.put(key, value)
        else:
            self._db[key] = value

    def __delitem__(self, key: bytes) -> None:
        if self.partitioned:
            self._db.delete(key)
        else:
            del self._db[key]

    def __contains__(self, key) -> bool:
        return self._db.get(key) is not None

    def __iter__(self) -> Iterator[bytes]:
        """Every open partition's keys (not the hot path)."""
        return iter(self.store.keys())

    def __len__(self) -> int:
        return sum(1 for _ in self.store.keys())
