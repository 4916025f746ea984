"""A Scope input source over the same ring: frames only, for the Workflow Builder's Source node.

Scope's source manager runs `receive_frame(timeout_ms=100)` in a loop on its own thread and
queues whatever comes back, so this class waits (in short sleeps) for the next unseen frame and
returns one (H, W, 3) uint8 array per call, oldest first, buffering the rest of a batch. It
forwards no parameters (input sources have no parameter path; use the pipeline, or
`ca-server ctl`, to steer the daemon). `connect` accepts any valid ring name even when no daemon
is running yet, so the source attaches by itself when one appears; meanwhile it yields the
placeholder card at a low rate so the graph shows why it is empty. `get_source_resolution`
answers Scope's resolution probe with the ring's size, or, before the daemon is up, the size it
will serve (the size of the placeholder meanwhile), so the probe never times out.
"""

from __future__ import annotations

import collections
import logging
import time
import weakref

import numpy as np
from scope.core.inputs.interface import InputSource, InputSourceInfo

from ca_scope_client.frame_source import FrameSource
from ca_scope_client.placeholder import expected_frame_size
from ca_server.wire.errors import WireError
from ca_server.wire.paths import default_ring_name, shm_dir, validate_ring_name
from ca_server.wire.ring import RingReader

logger = logging.getLogger("ca_scope_client")

RING_FILE_PREFIX = "ca-server."
RING_FILE_SUFFIX = ".ring"
POLL_SLEEP_S = 0.002


def list_ring_names() -> list[str]:
    """Names of the rings present in the shared-memory folder, sorted; [] when unreadable."""
    try:
        entries = [p.name for p in shm_dir().iterdir()]
    except OSError:
        return []
    names = []
    for entry in entries:
        if entry.startswith(RING_FILE_PREFIX) and entry.endswith(RING_FILE_SUFFIX):
            names.append(entry[len(RING_FILE_PREFIX) : -len(RING_FILE_SUFFIX)])
    return sorted(names)


class CellularAutomataInputSource(InputSource):
    """Frames of a ca-server ring as a Scope input source (identifier = the ring name)."""

    source_id = "ca-server"
    source_name = "Cellular Automata (ca-server)"
    source_description = "Frames from a ca-server daemon's shared-memory ring"

    def __init__(self) -> None:
        self._source: FrameSource | None = None
        self._queued: collections.deque[np.ndarray] = collections.deque()
        self._finalizer: weakref.finalize | None = None

    def list_sources(self, timeout_ms: int = 5000) -> list[InputSourceInfo]:
        """One entry per ring file present; the default ring when none is."""
        names = list_ring_names() or [default_ring_name(0)]
        return [
            InputSourceInfo(name=f"ca-server ring {name}", identifier=name, metadata=None)
            for name in names
        ]

    def connect(self, identifier: str) -> bool:
        """Read ring `identifier` (empty: the default ring); False only for an invalid name."""
        self.disconnect()
        name = (identifier or "").strip() or default_ring_name(0)
        try:
            validate_ring_name(name)
            self._source = FrameSource(
                name,
                frames_per_call=4,
                forward_control=False,
                placeholder_size=expected_frame_size(),
            )
        except (WireError, ValueError) as exc:
            logger.error("ca-server input source: %s", exc)
            return False
        self._finalizer = weakref.finalize(self, self._source.close)
        return True

    def receive_frame(self, timeout_ms: int = 100) -> np.ndarray | None:
        """The next unseen frame, (H, W, 3) uint8 RGB in [0, 255] on the host, fresh memory;
        None when none arrives within `timeout_ms`."""
        if self._queued:
            return self._queued.popleft()
        source = self._source
        if source is None:
            return None
        deadline = time.monotonic() + max(0, timeout_ms) / 1000.0
        while True:
            try:
                batch = source.poll()
            except Exception as exc:
                logger.debug("ca-server input source poll failed: %s", exc)
                batch = None
            if batch is not None:
                # Reads land in fresh memory; only the cached placeholder must be copied.
                pixels = np.array(batch.pixels) if batch.placeholder else batch.pixels
                frames = list(pixels)
                self._queued.extend(frames[1:])
                return frames[0]
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_SLEEP_S)

    def get_source_resolution(
        self, identifier: str, timeout_ms: int = 5000
    ) -> tuple[int, int] | None:
        """(width, height) of ring `identifier` (empty: the default ring): its header's size
        when the ring exists, else the size the daemon will serve; None for an invalid name.
        Returns at once: reading a header needs no frame."""
        name = (identifier or "").strip() or default_ring_name(0)
        try:
            reader = RingReader(validate_ring_name(name))
        except (WireError, ValueError) as exc:
            logger.error("ca-server input source: %s", exc)
            return None
        try:
            reader.attach()
            header = reader.header() or {}
            width, height = int(header.get("width", 0)), int(header.get("height", 0))
        except Exception:  # no ring yet (or a torn one): the size the daemon will serve
            width = height = 0
        finally:
            reader.close()
        if width > 0 and height > 0:
            return width, height
        height, width = expected_frame_size()
        return width, height

    def disconnect(self) -> None:
        """Release the ring; safe to call twice."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._source = None
        self._queued.clear()
