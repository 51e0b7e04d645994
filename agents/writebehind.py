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
    """A mapping over `table` that buffers writes per batch: `begin()`, writes, then `flush(batch)`."""

    def __init__(self, table: MutableMapping[bytes, bytes], focus: Callable[[Any], None] = lambda msg: None):
        self.table = table
        self._focus = focus
        self.pending: dict[bytes, tuple[int, Any, Any]] = {}  # key → (batch, value | _DELETED, source msg)
        self.keys_of: dict[int, list[bytes]] = {}
        self.batch = 0
        self.source: Any = None

    def begin(self) -> int:
        """Start a batch; its writes are held until `flush` of the number returned."""
        self.batch += 1
        self.keys_of[self.batch] = []
        return self.batch

    def focus(self, msg: Any) -> None:
        """The source message of the contact about to be read and written (see Pipeline.focus)."""
        self.source = msg

    def flush(self, batch: int) -> int:
        """Write the batch's states to the table, except those a later batch has replaced (that batch
        writes them). Returns the number written."""
        written = 0
        table, pending, focus = self.table, self.pending, self._focus
        for key in self.keys_of.pop(batch, ()):
            entry = pending.get(key)
            if entry is None or entry[0] != batch:
                continue
            del pending[key]
            focus(entry[2])
            if entry[1] is _DELETED:
                table.pop(key, None)
            else:
                table[key] = entry[1]
            written += 1
        return written

    def discard(self) -> None:
        """Forget every held write (the worker is going down; the inputs will be replayed)."""
        self.pending.clear()
        self.keys_of.clear()

    def _hold(self, key: bytes, value: Any) -> None:
        self.pending[key] = (self.batch, value, self.source)
        self.keys_of[self.batch].append(key)

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
