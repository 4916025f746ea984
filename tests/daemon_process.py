"""The real daemon (`python -m ca_server.cli serve`, numpy backend) as a test subprocess.

`DaemonProcess` starts it, waits until it answers `ctl ping`, talks to it through the real CLI
(`ctl`, `ctl --json`, any other subcommand) and stops it (SIGTERM, then SIGKILL past a bound) or
kills it. The daemon and plugin suites both use it; each gives it an environment that points
CA_SERVER_RUNTIME_DIR and CA_SERVER_SHM_DIR at folders private to one test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

# Bounds against hangs on a loaded 2-core CI box, not speed claims.
STARTUP_BOUND_S = 30.0
STOP_BOUND_S = 10.0
CLI_BOUND_S = 60.0
READY_PING_TIMEOUT_S = 0.5
DEFAULT_SIZE = 128


def cli_command(*args: str) -> list[str]:
    """The argv that runs the ca-server CLI with `args` under this interpreter."""
    return [sys.executable, "-m", "ca_server.cli", *args]


class DaemonProcess:
    """A `ca-server serve` subprocess on the numpy backend at `size`², named `name`."""

    def __init__(
        self,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        size: int = DEFAULT_SIZE,
        serve_options: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.size = size
        self.env = dict(os.environ if env is None else env)
        self.serve_options = serve_options
        self.process: subprocess.Popen[str] | None = None

    def start(self, *extra: str, wait: bool = True) -> subprocess.Popen[str]:
        """Start `serve` (with `extra` options); with `wait`, return once it answers ping."""
        args = ["serve", "--backend", "numpy", "--width", str(self.size)]
        args += ["--height", str(self.size), *self.serve_options, "--name", self.name, *extra]
        self.process = subprocess.Popen(
            cli_command(*args),
            env=self.env,
            stdout=subprocess.DEVNULL,  # the daemon logs to stderr; an undrained pipe could block
            stderr=subprocess.PIPE,
            text=True,
        )
        if wait:
            self.wait_ready()
        return self.process

    def wait_ready(self) -> None:
        """Return once the daemon answers ping; raise if it exits or stays silent too long."""
        assert self.process is not None, "start() the daemon first"
        deadline = time.monotonic() + STARTUP_BOUND_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}: {self.stderr()}")
            if self.ctl("ping", timeout_s=READY_PING_TIMEOUT_S).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"daemon did not answer ping within {STARTUP_BOUND_S} s")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run any ca-server subcommand in this daemon's environment."""
        return subprocess.run(
            cli_command(*args), env=self.env, capture_output=True, text=True, timeout=CLI_BOUND_S
        )

    def ctl(self, *args: str, timeout_s: float = 2.0) -> subprocess.CompletedProcess[str]:
        """`ca-server ctl` addressed to this daemon."""
        return self.cli("ctl", "--name", self.name, "--timeout", str(timeout_s), *args)

    def ctl_json(self, *args: str) -> dict[str, Any]:
        """The `result` of a `ctl --json` op that must succeed."""
        completed = self.ctl("--json", *args)
        assert completed.returncode == 0, completed.stderr
        reply = json.loads(completed.stdout)
        assert reply["ok"] is True, reply
        return reply["result"]

    def status(self) -> dict[str, Any]:
        return self.ctl_json("status")

    def stderr(self) -> str:
        """What an exited daemon wrote to stderr; empty while it runs (reading would block)."""
        if self.process is None or self.process.poll() is None:
            return ""
        return self.process.stderr.read() if self.process.stderr else ""

    def kill(self) -> None:
        """SIGKILL: the daemon gets no chance to clean up, as after a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_BOUND_S)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within the bound."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_BOUND_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
