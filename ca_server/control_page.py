"""`ca-server view`: the live picture and the daemon's controls on one page, for playing live.

The page's server is one more client of the daemon, like `ctl` and the Scope plugin: the picture
comes from the ring (`preview.LatestFrame`, an MJPEG stream), and every control goes through the
control protocol on one `ControlClient`, so the page, `ctl` and Scope always agree. A background
thread polls `status` twice a second and keeps a short history (fps, GPU memory) for the plot;
the page polls that snapshot, so any number of browser tabs cost the daemon one poll. Changes
made elsewhere show up on the next poll. Stdlib `http.server`, one static page, no CDN assets.

Access: loopback by default (the Host header must name a loopback address, against DNS
rebinding). With a token (required off loopback) every request must carry it: `?token=` (which
sets a same-site cookie), the cookie, or `Authorization: Bearer`; missing gives 401, wrong 403.
A control POST must be `application/json` from the page's own origin, so another site open in the
same browser cannot drive the daemon.
"""

from __future__ import annotations

import collections
import hmac
import json
import logging
import threading
import time
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ca_server.preset_thumbnails import ThumbnailCache, thumbnail_cache_dir
from ca_server.preview import BOUNDARY, LatestFrame

log = logging.getLogger("ca_server.control_page")

STATUS_PERIOD_S = 0.5
HISTORY_POINTS = 240  # two minutes at STATUS_PERIOD_S
CONTROL_TIMEOUT_S = 1.0  # as `ctl`'s default
MISSED_POLLS_BEFORE_GONE = 3  # one slow answer on a loaded box does not blank the page
PAGE_OPS = frozenset(
    {"preset", "speed", "hue", "brightness", "reseed", "pause", "resume", "tempo", "tap", "beat"}
)
TOKEN_COOKIE = "ca_server_token"
LOOPBACK_HOSTNAMES = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_BODY_BYTES = 4096


def find_control_endpoint(ring_name: str) -> str:
    """The endpoint the live ring advertises, else the default for `ring_name` (as `ctl` does)."""
    from ca_server.wire.paths import default_control_endpoint
    from ca_server.wire.ring import RingReader

    reader = RingReader(ring_name)
    try:
        reader.attach()
        advertised = (reader.header() or {}).get("control_endpoint")
    except Exception:  # no ring yet: the daemon may start later
        advertised = None
    finally:
        reader.close()
    return advertised or default_control_endpoint(ring_name)


class DaemonLink:
    """One ControlClient shared by the page's request threads (ZeroMQ sockets are not
    thread-safe, hence the lock), the status poller, and the snapshot the page reads."""

    def __init__(self, ring_name: str, control: str | None) -> None:
        self.ring_name, self.control = ring_name, control
        self._lock = threading.Lock()
        self._client: Any = None
        self.status: dict[str, Any] | None = None
        self.status_at_s = 0.0  # time.monotonic() of the newest status
        self.error: str | None = "connecting"
        self.missed_polls = 0
        self.presets: list[dict[str, Any]] = []
        self.history: collections.deque[tuple[float, float, float]] = collections.deque(
            maxlen=HISTORY_POINTS
        )
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="status-poll", daemon=True)
        self._thread.start()

    def call(self, op: str, **args: Any) -> Any:
        """`op` on the daemon; raises the wire's ControlError / DaemonUnavailableError / WireError.
        A failed call drops the client, so the next finds the daemon afresh (it may restart on
        another endpoint)."""
        from ca_server.wire.control import ControlClient
        from ca_server.wire.errors import DaemonUnavailableError, WireError

        with self._lock:
            try:
                if self._client is None:
                    endpoint = self.control or find_control_endpoint(self.ring_name)
                    self._client = ControlClient(endpoint, timeout_s=CONTROL_TIMEOUT_S, retries=0)
                return self._client.call(op, **args)
            except (DaemonUnavailableError, WireError):
                if self._client is not None:
                    self._client.close()
                self._client = None
                raise

    def refresh(self) -> None:
        """Read `status` (and the preset list once per connection) into the snapshot."""
        from ca_server.wire.errors import ControlError, WireError

        try:
            status = self.call("status")
            if not self.presets:
                self.presets = list(self.call("presets"))
        except (ControlError, WireError) as exc:
            self.error, self.missed_polls = str(exc), self.missed_polls + 1
            if self.missed_polls >= MISSED_POLLS_BEFORE_GONE:
                self.status, self.presets = None, []
            return
        self.status, self.error, self.status_at_s = status, None, time.monotonic()
        self.missed_polls = 0
        vram_mib = float(status.get("vram_bytes") or 0) / 2**20
        self.history.append((time.time(), float(status.get("measured_fps") or 0), vram_mib))

    def snapshot(self) -> dict[str, Any]:
        history = list(self.history)
        return {
            "connected": self.status is not None,
            "error": self.error,
            "status": self.status,
            "status_age_s": round(time.monotonic() - self.status_at_s, 3),
            "history": {
                "t": [round(t, 2) for t, _, _ in history],
                "fps": [fps for _, fps, _ in history],
                "vram_mib": [round(mib, 2) for _, _, mib in history],
            },
        }

    def _poll(self) -> None:
        while not self.stopped.is_set():
            self.refresh()
            self.stopped.wait(STATUS_PERIOD_S)

    def close(self) -> None:
        self.stopped.set()
        self._thread.join(timeout=2 * CONTROL_TIMEOUT_S + STATUS_PERIOD_S)
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def page_html() -> bytes:
    return files("ca_server").joinpath("control_page.html").read_bytes()


class ControlPage:
    """Everything one `ca-server view` serves: the frame source, the daemon link, thumbnails,
    and the access rule (`token` None means loopback-only, no token)."""

    def __init__(
        self,
        ring_name: str,
        *,
        control: str | None = None,
        token: str | None = None,
        presets_dir: Path | None = None,
        max_fps: float = 30.0,
    ) -> None:
        self.ring_name, self.token = ring_name, token
        self.frames = LatestFrame(ring_name, max_fps)
        self.daemon = DaemonLink(ring_name, control)
        self.thumbnails = ThumbnailCache(thumbnail_cache_dir(), presets_dir)

    def gallery(self) -> list[dict[str, Any]]:
        presets = self.daemon.presets
        self.thumbnails.request([p["name"] for p in presets])
        return [
            {
                "name": p["name"],
                "title": p.get("title") or p["name"],
                "engine": p.get("engine", ""),
                "description": p.get("description", ""),
                "thumbnail": self.thumbnails.get(p["name"]) is not None,
                "no_thumbnail": self.thumbnails.failed(p["name"]),
            }
            for p in presets
        ]

    def control(self, body: Any) -> tuple[HTTPStatus, dict[str, Any]]:
        """Apply one `{"op": ..., "args": {...}}` from the page; the reply and its HTTP status."""
        from ca_server.wire.errors import ControlError, DaemonUnavailableError, WireError

        if not isinstance(body, dict) or body.get("op") not in PAGE_OPS:
            ops = ", ".join(sorted(PAGE_OPS))
            return HTTPStatus.BAD_REQUEST, _error("bad_args", f"send {{op, args}} with op in {ops}")
        args = body.get("args") or {}
        if not isinstance(args, dict):
            return HTTPStatus.BAD_REQUEST, _error("bad_args", "args must be an object")
        if body["op"] == "tap":  # stamped on arrival: the browser's clock is not the daemon's
            args = {"t_ns": time.monotonic_ns()}
        try:
            result = self.daemon.call(body["op"], **args)
        except DaemonUnavailableError as exc:
            return HTTPStatus.SERVICE_UNAVAILABLE, _error(exc.code, exc.message)
        except ControlError as exc:
            return HTTPStatus.BAD_REQUEST, _error(exc.code, exc.message)
        except WireError as exc:
            return HTTPStatus.SERVICE_UNAVAILABLE, _error("unavailable", str(exc))
        self.daemon.refresh()  # the page sees its own change on the very next poll
        return HTTPStatus.OK, {"ok": True, "result": result}

    def close(self) -> None:
        self.frames.stopped.set()
        self.thumbnails.close()
        self.daemon.close()


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


class ControlPageHandler(BaseHTTPRequestHandler):
    """The page's routes; `server.page` is the ControlPage."""

    server: ControlPageServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if not self._allowed(url.query):
            return
        page = self.server.page
        if url.path == "/":
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", page_html(), self._cookie(url))
        elif url.path == "/api/state":
            state = {**page.daemon.snapshot(), "presets": page.gallery(), "ring": page.ring_name}
            self._send_json(HTTPStatus.OK, state)
        elif url.path.startswith("/thumbnails/") and url.path.endswith(".png"):
            png = page.thumbnails.get(url.path[len("/thumbnails/") : -len(".png")])
            if png is None:
                self._send_json(HTTPStatus.NOT_FOUND, _error("not_ready", "not drawn yet"))
            else:
                self._send(HTTPStatus.OK, "image/png", png, [("Cache-Control", "max-age=3600")])
        elif url.path == "/frame.jpg":
            _, jpeg = page.frames.wait_newer(-2, timeout_s=0)
            if jpeg is None:
                self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, _error("no_frame", "no frame"))
            else:
                self._send(HTTPStatus.OK, "image/jpeg", jpeg, [("Cache-Control", "no-store")])
        elif url.path == "/stream.mjpg":
            self._stream()
        else:
            self._send_json(HTTPStatus.NOT_FOUND, _error("not_found", url.path))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if not self._allowed(url.query):
            return
        if url.path != "/api/control":
            self._send_json(HTTPStatus.NOT_FOUND, _error("not_found", url.path))
            return
        origin = self.headers.get("Origin")
        same_origin = origin is None or urlsplit(origin).netloc == self.headers.get("Host")
        json_body = self.headers.get_content_type() == "application/json"
        if not (same_origin and json_body):
            why = "controls take application/json from this page's own origin"
            self._send_json(HTTPStatus.FORBIDDEN, _error("forbidden", why))
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            self._send_json(HTTPStatus.BAD_REQUEST, _error("bad_args", "body size"))
            return
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            self._send_json(HTTPStatus.BAD_REQUEST, _error("bad_message", "body is not JSON"))
            return
        self._send_json(*self.server.page.control(body))

    def _allowed(self, query: str) -> bool:
        """True if this request may proceed; otherwise the refusal has been sent."""
        token = self.server.page.token
        if token is None:
            hostname = urlsplit(f"//{self.headers.get('Host', '')}").hostname or ""
            if hostname in LOOPBACK_HOSTNAMES:
                return True
            self._send_json(HTTPStatus.FORBIDDEN, _error("forbidden", "use a loopback address"))
            return False
        offered = parse_qs(query).get("token", [None])[0]
        cookie = SimpleCookie(self.headers.get("Cookie", "")).get(TOKEN_COOKIE)
        bearer = self.headers.get("Authorization", "")
        offered = offered or (cookie.value if cookie else None)
        offered = offered or (bearer[7:] if bearer.startswith("Bearer ") else None)
        if offered is None:
            why = "a token is required: open the URL that `ca-server view` printed (?token=...)"
            self._send_json(HTTPStatus.UNAUTHORIZED, _error("unauthorized", why))
            return False
        if not hmac.compare_digest(offered.encode(), token.encode()):
            self._send_json(HTTPStatus.FORBIDDEN, _error("forbidden", "wrong token"))
            return False
        return True

    def _cookie(self, url: Any) -> list[tuple[str, str]]:
        if self.server.page.token is None or "token=" not in url.query:
            return []
        value = f"{TOKEN_COOKIE}={self.server.page.token}; HttpOnly; SameSite=Strict; Path=/"
        return [("Set-Cookie", value)]

    def _send(
        self, status: HTTPStatus, content_type: str, body: bytes, headers: list | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers or []:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self._send(status, "application/json", body, [("Cache-Control", "no-store")])

    def _stream(self) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        seen = -1
        try:
            while not self.server.page.frames.stopped.is_set():
                seen, jpeg = self.server.page.frames.wait_newer(seen, timeout_s=1.0)
                if jpeg is None:
                    continue
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                self.wfile.write(f"{head}\r\n\r\n".encode() + jpeg + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, format: str, *args: object) -> None:
        log.debug(format, *args)


class ControlPageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], page: ControlPage) -> None:
        self.page = page
        super().__init__(address, ControlPageHandler)


def serve_control_page(page: ControlPage, host: str, port: int) -> None:
    """Serve `page` on http://host:port/ until interrupted; prints the URL to open."""
    try:
        server = ControlPageServer((host, port), page)
    except OSError:
        page.close()
        raise
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{server.server_port}/"
    if page.token is not None:
        url += f"?token={page.token}"
    log.info("control page of ring %s at %s", page.ring_name, url)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        page.close()
