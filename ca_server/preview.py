"""The picture of `ca-server view`: the newest frame of a ring as JPEG, for an MJPEG stream.

The viewer is one more ring reader, like the Scope plugin: it never talks to the daemon's loop and
cannot slow it. One background thread JPEG-encodes the newest frame at up to `max_fps` with
Pillow, whatever the number of browser connections; when the ring is absent it keeps retrying,
so starting the viewer before the daemon is fine. The page itself: `ca_server.control_page`.
"""

from __future__ import annotations

import io
import logging
import threading

from PIL import Image

from ca_server.wire.ring import RingReader

log = logging.getLogger("ca_server.preview")

BOUNDARY = "ca-server-frame"


class LatestFrame:
    """The newest frame of a ring as JPEG bytes, refreshed by one background reader thread."""

    def __init__(self, ring_name: str, max_fps: float) -> None:
        self.ring_name = ring_name
        self.period_s = 1.0 / max_fps
        self.jpeg: bytes | None = None
        self.frame_id = -1
        self.changed = threading.Condition()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ring-preview", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        reader = RingReader(self.ring_name)
        try:
            while not self.stopped.is_set():
                result = reader.read_new(1)
                if len(result.meta):
                    buffer = io.BytesIO()
                    Image.fromarray(result.pixels[-1]).save(buffer, format="JPEG", quality=85)
                    with self.changed:
                        self.jpeg = buffer.getvalue()
                        self.frame_id += 1
                        self.changed.notify_all()
                self.stopped.wait(self.period_s)
        finally:
            reader.close()

    def wait_newer(self, seen_id: int, timeout_s: float) -> tuple[int, bytes | None]:
        with self.changed:
            self.changed.wait_for(lambda: self.frame_id != seen_id, timeout=timeout_s)
            return self.frame_id, self.jpeg
