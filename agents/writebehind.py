"""Contact-state writes held back until the batch's outputs are on the broker.

Why: the state remembers which events it has counted (dedup). If it reached the table (local
RocksDB and changelog) before the lifecycle changes those events caused reached their topic, a
crash in between would make the replay skip the events as duplicates and the changes would never
be published: a lost MQL. Written after delivery, a crash replays the events against the old state
and publishes the same changes again, under the same `change_id` (consumers drop the duplicates).

Later batches must see the newer state at once, so reads look here first. Framework-free: the
caller says where a write must land (`focus`, called with the contact's source message before the
real table write) and when a batch's outputs are delivered (`flush`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

_DELETED = object()


class WriteBehind(MutableMapping):
    """A mapping over `table` that buffers writes per batch: `begin()`, writes, then `flush(batch)`,
    batches flushed in the order they began."""

    def __init__(self, table: MutableMapping[bytes, bytes], focus: Callable[[Any], None] = lambda msg: None):
        self.table = table
        self._focus = focus
        self.pending: dict[bytes, tuple[int, Any, Any]] = {}  # key → (batch, value | _DELETED, source msg): the latest
        self.writes_of: dict[int, dict[bytes, tuple[Any, Any]]] = {}  # batch → key → (its own value, source msg)
        self.batch = 0
        self.source: Any = None

    def begin(self) -> int:
        """Start a batch; its writes are held until `flush` of the number returned."""
        self.batch += 1
        self.writes_of[self.batch] = {}
        return self.batch

    def focus(self, msg: Any) -> None:
        """The source message of the contact about to be read and written (see Pipeline.focus)."""
        self.source = msg

    def take(self, batch: int) -> list[tuple[bytes, Any, Any]]:
        """The batch's own writes as (key, value or None for a delete, source message), no longer
        held. Even a state a later batch has replaced is returned as this batch wrote it: this batch's
        inputs are acknowledged once it is persisted, so it must not wait for the later batch. Batches
        must be taken in order, and written to the table before the caller's next await."""
        writes = []
        pending = self.pending
        for key, (value, msg) in self.writes_of.pop(batch, {}).items():
            entry = pending.get(key)
            if entry is not None and entry[0] == batch:
                del pending[key]
            writes.append((key, None if value is _DELETED else value, msg))
        return writes

    def write(self, batch: int) -> list[tuple[bytes, Any, Any]]:
        """Write the batch's states to `table` (see `take`; batches in order) and return them."""
        table, focus = self.table, self._focus
        writes = self.take(batch)
        for key, value, msg in writes:
            focus(msg)
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        return writes

    def flush(self, batch: int) -> int:
        """`write`, returning the number of states written."""
        return len(self.write(batch))

    def discard(self) -> None:
        """Forget every held write (the worker is going down; the inputs will be replayed)."""
        self.pending.clear()
        self.writes_of.clear()

    def _hold(self, key: bytes, value: Any) -> None:
        self.pending[key] = (self.batch, value, self.source)
        self.writes_of[self.batch][key] = (value, self.source)

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
        """The table's keys as they will be once every held write is flushed."""
        for key in self.table:
            entry = self.pending.get(key)
            if entry is None or entry[1] is not _DELETED:
                yield key
        for key, entry in list(self.pending.items()):
            if entry[1] is not _DELETED and key not in self.table:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)
