"""A local browser preview of a ring: an MJPEG stream and a small page, served on loopback.

`ca-server view` is one more ring reader, like the Scope plugin: it never talks to the daemon's
loop and cannot slow it. Each browser connection gets the newest frame at up to `max_fps`,
JPEG-encoded with Pillow; when the ring is absent the page keeps retrying, so starting the viewer
before the daemon is fine.
"""

from __future__ import annotations

import io
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from ca_server.wire.ring import RingReader

log = logging.getLogger("ca_server.preview")

BOUNDARY = "ca-server-frame"
PAGE = """<!doctype html><html><head><title>ca-server: {name}</title>
<style>body{{margin:0;background:#000;display:flex;height:100vh;align-items:center;
justify-content:center}}img{{max-width:100vw;max-height:100vh}}</style></head>
<body><img src="/stream.mjpg" alt="ring {name}"></body></html>"""


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


def serve_preview(ring_name: str, host: str, port: int, max_fps: float = 30.0) -> None:
    """Serve the preview of ring `ring_name` on http://host:port/ until interrupted."""
    latest = LatestFrame(ring_name, max_fps)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/":
                body = PAGE.format(name=ring_name).encode()
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif self.path == "/stream.mjpg":
                self._stream()
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def _stream(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.end_headers()
            seen = -1
            try:
                while True:
                    seen, jpeg = latest.wait_newer(seen, timeout_s=1.0)
                    if jpeg is None:
                        continue
                    self.wfile.write(
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                        + jpeg
                        + b"\r\n"
                    )
            except (BrokenPipeError, ConnectionResetError):
                return

        def log_message(self, format: str, *args: object) -> None:
            log.debug(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    log.info("preview of ring %s at http://%s:%d/", ring_name, host, server.server_port)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        latest.stopped.set()
        server.server_close()
