"""A Faust table's local store, read and written a partition at a time beneath the Table API.

Why: Faust's RocksDB store finds a key's partition through the current event (one context-variable
look-up, a weak reference and an LRU key-index write per access) and falls back to asking every
partition's database when there is none. The batch step already knows each contact's partition, so
it names it (`focus`) and the reads and writes go straight to that partition's database. The
in-memory store (`memory://`) is one dict for all partitions.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any


class PartitionStore(MutableMapping):
    """`store` (a Faust table's `.data`) as a mapping over the focused partition's keys."""

    def __init__(self, store: Any):
        self.store = store
        self._partitioned = hasattr(store, "_db_for_partition")
        self._db: Any = None if self._partitioned else store.data

    def focus(self, partition: int) -> None:
        """Reads and writes go to this partition until the next `focus`."""
        if self._partitioned:
            self._db = self.store._db_for_partition(partition)

    def get(self, key: bytes, default=None):
        value = self._db.get(key)
        return default if value is None else value

    def __getitem__(self, key: bytes) -> bytes:
        value = self._db.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if self._partitioned:
            self._db.put(key, value)
        else:
            self._db[key] = value

    def __delitem__(self, key: bytes) -> None:
        if self._partitioned:
            self._db.delete(key)
        else:
            del self._db[key]

    def __contains__(self, key) -> bool:
        return self._db.get(key) is not None

    def __iter__(self) -> Iterator[bytes]:
        """Every partition's keys (not the hot path)."""
        return iter(self.store.keys())

    def __len__(self) -> int:
        return sum(1 for _ in self.store.keys())
