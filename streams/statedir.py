"""Whether the last worker on this data directory stopped cleanly, and what to do if it did not.

Under exactly_once, Faust writes a table change to the local RocksDB store at once, while its
changelog record (and the outputs and offsets beside it) only count once the transaction commits. A
worker killed before the commit leaves a local store ahead of what Kafka holds: restarted on it, the
replayed inputs would look already counted and their lifecycle changes would never be published.
So, as Kafka Streams does, a worker that finds its predecessor did not stop cleanly drops the local
table stores and restores them from the changelog (read_committed). Under at_least_once the local
state is never ahead of the published outputs (see agents.writebehind), so it is kept.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger("leadpulse.statedir")
MARKER = "leadpulse.running"


def claim(datadir: Path, tabledir: Path, drop_if_unclean: bool) -> bool:
    """Mark `datadir` in use. Returns True if the previous run did not stop cleanly (its marker is
    still there); with `drop_if_unclean`, `tabledir` is then removed."""
    datadir.mkdir(parents=True, exist_ok=True)
    marker = datadir / MARKER
    unclean = marker.exists()
    if unclean and drop_if_unclean and tabledir.exists():
        log.warning("the last worker on %s did not stop cleanly: dropping its table stores (%s) to restore them "
                    "from the committed changelog", datadir, tabledir)
        shutil.rmtree(tabledir)
    marker.write_text("a leadpulse worker is running on this directory, or one was killed\n")
    return unclean


def release(datadir: Path) -> None:
    """The worker stopped cleanly: its local stores match what it committed."""
    (datadir / MARKER).unlink(missing_ok=True)
