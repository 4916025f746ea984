"""The shared-memory frame ring: one wait-free writer (the daemon), any number of lock-free readers.

The ring is a file in the shared-memory folder (`paths.ring_path`) laid out as `layout` describes:
a header, one seqlock meta line per slot, and N pixel slots of (H, W, 3) uint8. The writer marks a
slot's `seq` odd (2f+1), fills the pixels, marks it even (2f+2) and bumps `published`; it never
looks at readers. A reader maps the file read-only, copies the newest unseen slots oldest first
and re-checks each slot's `seq` after the copy, retrying a bounded number of times; it never
blocks, never locks and never writes. Liveness comes from an flock the writer holds on
`paths.lock_path` for its whole life (the kernel drops it even on SIGKILL) plus a heartbeat; a
restarted writer makes a new file (new inode, new random epoch) that readers re-attach to. The
store/load ordering relies on x86-64's TSO plus `_fence` (an uncontended lock round trip: a
locked instruction on x86-64, acquire/release on arm64). A reader object is not thread-safe:
give each thread its own. This module is the public surface; the writer lives in `ring_writer`,
the reader and its result types in `ring_reader`, and the word indices and `_fence` both use in
`ring_memory`.
"""

from __future__ import annotations

from ca_server.wire.ring_reader import FrameMeta, ReadResult, RingReader, RingStatus
from ca_server.wire.ring_writer import RingWriter

__all__ = ["FrameMeta", "ReadResult", "RingReader", "RingStatus", "RingWriter"]
