"""Contact-state writes held back until their batch is durable on Kafka.

Why: the state remembers which events it has counted (dedup). If it reached the table before the
lifecycle changes those events caused reached their topic, a crash in between would make the
replay skip the events as duplicates and the changes would never be published: a lost MQL. So a
batch's states reach the table (changelog, then the local store) only after its outputs are
delivered (under exactly_once: committed with them), and until then they are held here.

Later batches and lookups must see the newer state at once, so reads look here first. The
checkpoint (`streams.checkpoint`) takes a batch's writes (`writes`), makes them durable and, once
they are in the local store, `release`s them. Framework-free: the caller says which partition the
contact being read or written lives in (`focus`).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

_DELETED = object()


class WriteBehind(MutableMapping):
    """A mapping over `table` that holds writes per batch: `begin()`, writes, `writes(batch)` to
    make them durable, then `release(batch)` once the table has them; batches released in order."""

    def __init__(self, table: MutableMapping[bytes, bytes]):
        self.table = table
        self.pending: dict[bytes, tuple[int, Any]] = {}  # key → (batch, value | _DELETED): the latest
        self.writes_of: dict[int, dict[bytes, tuple[Any, int]]] = {}  # batch → key → (its own value, partition)
        self.batch = 0
        self.partition = 0

    def begin(self) -> int:
        """Start a batch; its writes are held until `release` of the number returned."""
        self.batch += 1
        self.writes_of[self.batch] = {}
        return self.batch

    def focus(self, partition: int) -> None:
        """The partition of the contact about to be read and written (see Pipeline.focus)."""
        self.partition = partition

    def writes(self, batch: int) -> dict[int, list[tuple[bytes, bytes | None]]]:
        """The batch's own writes per partition, as (key, value or None for a delete), still held.
        Even a state a later batch has replaced is returned as this batch wrote it: this batch's
        inputs are committed once it is durable, so it must not wait for the later batch."""
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for key, (value, partition) in self.writes_of.get(batch, {}).items():
            by_partition.setdefault(partition, []).append((key, None if value is _DELETED else value))
        return by_partition

    def release(self, batch: int) -> None:
        """The batch's writes are in the table: stop holding those no later batch replaced."""
        pending = self.pending
        for key in self.writes_of.pop(batch, {}):
            entry = pending.get(key)
            if entry is not None and entry[0] == batch:
                del pending[key]

    def discard(self) -> None:
        """Forget every held write (the worker is going down; the inputs will be replayed)."""
        self.pending.clear()
        self.writes_of.clear()

    def held_batches(self) -> int:
        return len(self.writes_of)

    def _hold(self, key: bytes, value: Any) -> None:
        self.pending[key] = (self.batch, value)
        self.writes_of[self.batch][key] = (value, self.partition)

    # -- the mapping ------------------------------------------------------------------------------
    def get(self, key, default=None):
        entry = self.pending.get(key)
        if entry is None:
            return self.table.get(key, default)
        return default if entry[1] is _DELETED else entry[1]

    def __getitem__(self, key):
        value = self.get(key, _DELETED)
        if value is _DELETED:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value) -> None:
        self._hold(key, value)

    def __delitem__(self, key) -> None:
        if self.get(key) is None:
            raise KeyError(key)
        self._hold(key, _DELETED)

    def pop(self, key, *default):
        value = self.get(key, _DELETED)
        if value is _DELETED:
            if default:
                return default[0]
            raise KeyError(key)
        self._hold(key, _DELETED)
        return value

    def __contains__(self, key) -> bool:
        return self.get(key, _DELETED) is not _DELETED

    def __iter__(self) -> Iterator[bytes]:
        """The table's keys as they will be once every held write is released."""
        for key in self.table:
            entry = self.pending.get(key)
            if entry is None or entry[1] is not _DELETED:
                yield key
        for key, entry in list(self.pending.items()):
            if entry[1] is not _DELETED and key not in self.table:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)
