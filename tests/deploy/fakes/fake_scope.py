"""A stand-in for Scope's HTTP API with just the endpoints the deploy probes use.

Mocked because the real Scope server needs its ~8 GB image; the response shapes follow Scope
0.2.4 (`src/scope/server/app.py`, `mcp_router.py`). Behaviour is chosen by environment:
FAKE_SCOPE_PLUGIN = ok | failed | missing, FAKE_SCOPE_PIPELINE (our pipeline id),
FAKE_KREA_WEIGHTS = 1 when Krea's weights count as downloaded, FAKE_SCOPE_FROZEN = 1 for a
session that repeats one frame, FAKE_SCOPE_SESSION_ERROR = 1 for a Scope that refuses every
session start (HTTP 500, as when the pipeline is not loaded under the node id it looks up).
Every request is appended to $FAKE_SCOPE_LOG (method, path, body) when that is set.

Behaviour copied from Scope 68b0f95: a single-pipeline session (`pipeline_id`) looks its pipeline
up by node id, and that node id is the pipeline id (mcp_router.py start_stream → FrameProcessor's
linear graph; HTTP 500 "Pipeline X not loaded" otherwise); a plugin install through the API
(POST /api/v1/plugins) runs a bare `uv` found through PATH. Fake-only: /health also reports the
serving process's `pid`, so tests can tell which process holds the port.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

JPEG = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"


class ScopeState:
    def __init__(self) -> None:
        self.plugin = os.environ.get("FAKE_SCOPE_PLUGIN", "ok")
        self.pipeline = os.environ.get("FAKE_SCOPE_PIPELINE", "ca-source")
        self.krea_weights = os.environ.get("FAKE_KREA_WEIGHTS") == "1"
        self.frozen = os.environ.get("FAKE_SCOPE_FROZEN") == "1"
        self.session_error = os.environ.get("FAKE_SCOPE_SESSION_ERROR") == "1"
        self.started = time.time()
        self.loaded_nodes: dict[str, str] = {}  # node id -> pipeline id
        self.session: dict | None = None

    def frame(self) -> bytes:
        """A JPEG-shaped body that changes ten times a second, unless frozen."""
        tick = 0 if self.frozen else int(time.monotonic() * 10)
        return JPEG[:4] + f"frame-{tick}".encode() + JPEG[4:]

    def get(self, path: str) -> tuple[int, object]:
        route = path.split("?")[0]
        if route == "/health":
            return 200, {
                "status": "healthy",
                "version": "0.2.4",
                "server_start_time": self.started,
                "pid": os.getpid(),
            }
        if route == "/api/v1/plugins":
            plugins = (
                [] if self.plugin == "missing" else [{"name": "ca-server", "version": "0.1.0"}]
            )
            failed = []
            if self.plugin == "failed":
                failed = [
                    {
                        "package_name": "ca-server",
                        "entry_point_name": "ca_scope_client",
                        "error_type": "ImportError",
                        "error_message": "no module named zmq",
                    }
                ]
            return 200, {"plugins": plugins, "total": len(plugins), "failed_plugins": failed}
        if route == "/api/v1/pipelines/schemas":
            pipelines = {
                "passthrough": {"plugin_name": None},
                "krea-realtime-video": {"plugin_name": None},
            }
            if self.plugin == "ok":
                pipelines[self.pipeline] = {"plugin_name": "ca-server"}
            return 200, {"pipelines": pipelines}
        if route == "/api/v1/pipeline/status":
            return 200, {"status": "loaded" if self.loaded_nodes else "not_loaded"}
        if route == "/api/v1/models/status":
            return 200, {"downloaded": self.krea_weights, "progress": None}
        if route == "/api/v1/session/frame":
            return (200, self.frame()) if self.session else (404, {"detail": "No frame available"})
        if route == "/api/v1/session/metrics":
            sessions = {"h": {"frames_out": 90, "fps_out": 30.0, "pipeline_fps": 29.5}}
            return 200, {
                "sessions": sessions if self.session else {},
                "gpu": {"vram_allocated_mb": 1000.0},
            }
        return 404, {"detail": "Not Found"}

    def post(self, path: str, body: dict) -> tuple[int, object]:
        if path == "/api/v1/pipeline/load":
            for entry in body.get("pipelines", []):
                self.loaded_nodes[entry["node_id"]] = entry["pipeline_id"]
            for pipeline_id in body.get("pipeline_ids", []):  # legacy form: node id = pipeline id
                self.loaded_nodes[pipeline_id] = pipeline_id
            return 200, {"message": "loading"}
        if path == "/api/v1/session/start":
            if "graph" in body:
                nodes = [n for n in body["graph"]["nodes"] if n.get("pipeline_id")]
                self.loaded_nodes.update({n["id"]: n["pipeline_id"] for n in nodes})
                ids = [n["pipeline_id"] for n in nodes]
            else:
                node_id = body.get("pipeline_id")
                if node_id not in self.loaded_nodes or self.session_error:
                    return 500, {"detail": f"Pipeline {node_id} not loaded"}
                ids = [node_id]
            self.session = {"pipeline_ids": ids}
            return 200, {"status": "ok"}
        if path == "/api/v1/plugins":
            try:
                subprocess.run(["uv", "--version"], check=True, capture_output=True)
            except FileNotFoundError as exc:
                return 500, {"detail": f"FileNotFoundError: {exc}"}
            return 200, {"success": True, "message": f"Installed {body.get('package')}"}
        if path == "/api/v1/session/stop":
            if not self.session:
                return 404, {"detail": "No active headless session"}
            self.session = None
            return 200, {"status": "ok"}
        return 404, {"detail": "Not Found"}


def make_handler(state: ScopeState) -> type[BaseHTTPRequestHandler]:
    log_path = os.environ.get("FAKE_SCOPE_LOG")

    class Handler(BaseHTTPRequestHandler):
        def reply(self, code: int, payload: object) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(code)
            ctype = "image/jpeg" if isinstance(payload, bytes) else "application/json"
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def record(self, body: object) -> None:
            if log_path:
                with open(log_path, "a") as log:
                    log.write(json.dumps([self.command, self.path, body]) + "\n")

        def do_GET(self) -> None:
            self.record(None)
            self.reply(*state.get(self.path))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            self.record(body)
            self.reply(*state.post(self.path, body))

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def serve(port: int) -> ThreadingHTTPServer:
    """A server bound to 127.0.0.1:`port` (0 = any free port); call serve_forever() on it."""
    return ThreadingHTTPServer(("127.0.0.1", port), make_handler(ScopeState()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")  # the fake always binds 127.0.0.1
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-browser", action="store_true")
    serve(parser.parse_args().port).serve_forever()
