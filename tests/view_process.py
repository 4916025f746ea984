"""`ca-server view` as a test subprocess beside a real daemon, and plain-HTTP helpers for it."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

from daemon_process import STOP_BOUND_S, DaemonProcess, cli_command

VIEW_READY_BOUND_S = 60.0  # a hang bound on a loaded 2-core box, not a speed claim


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ViewProcess:
    """`ca-server view --name <daemon's> --port <free>` with `extra` options, in the daemon's
    environment (so it shares its runtime folder, hence the thumbnail cache)."""

    def __init__(self, daemon: DaemonProcess, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["view", "--name", daemon.name, "--port", str(self.port), *extra]
        self.process = subprocess.Popen(
            cli_command(*args),
            env=daemon.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_serving(self, headers: dict[str, str] | None = None) -> None:
        """Return once the page answers (any HTTP status); raise if the viewer exits."""
        deadline = time.monotonic() + VIEW_READY_BOUND_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"view exited {self.process.returncode}: {self.stderr()}")
            status, _ = http(f"{self.url}/api/state", headers=headers)
            if status:
                return
            time.sleep(0.2)
        raise AssertionError(f"view did not answer within {VIEW_READY_BOUND_S} s")

    def stderr(self) -> str:
        if self.process.poll() is None:
            return ""
        return self.process.stderr.read() if self.process.stderr else ""

    def stop(self) -> str:
        """Stop the viewer and return its stderr."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_BOUND_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.stderr.read() if self.process.stderr else ""


def http(
    url: str,
    *,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    """(status, decoded JSON or raw bytes) of a GET, or a POST when `body` is given; status 0
    when nothing answers."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            status, raw, kind = reply.status, reply.read(), reply.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get_content_type()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None
    return status, json.loads(raw) if kind == "application/json" else raw
