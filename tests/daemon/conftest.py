"""Fixtures that run the real daemon (`python -m ca_server.cli serve`) as a subprocess.

Each test gets its own ring name and runtime folder, so tests never meet each other's daemons.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

STARTUP_BOUND_S = 30.0  # a bound against hangs on a loaded 2-core CI box, not a speed claim
SIZE = 128


class Daemon:
    """A `ca-server serve` subprocess and the means to talk to it through the real CLI."""

    def __init__(self, runtime_dir: Path, name: str) -> None:
        self.name = name
        self.size = SIZE
        self.env = dict(os.environ)  # carries CA_SERVER_RUNTIME_DIR and CA_SERVER_SHM_DIR
        self.process: subprocess.Popen[str] | None = None

    def start(self, *extra: str, wait: bool = True) -> subprocess.Popen[str]:
        args = ["serve", "--backend", "numpy", "--width", str(SIZE), "--height", str(SIZE)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ca_server.cli", *args, "--name", self.name, *extra],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if wait:
            self.wait_ready()
        return self.process

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_BOUND_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}: {self.stderr()}")
            if self.ctl("ping", timeout_s=0.5).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"daemon did not answer ping within {STARTUP_BOUND_S} s")

    def ctl(self, *args: str, timeout_s: float = 2.0) -> subprocess.CompletedProcess[str]:
        return self.cli("ctl", "--name", self.name, "--timeout", str(timeout_s), *args)

    def ctl_json(self, *args: str) -> dict:
        completed = self.ctl("--json", *args)
        assert completed.returncode == 0, completed.stderr
        reply = json.loads(completed.stdout)
        assert reply["ok"] is True
        return reply["result"]

    def status(self) -> dict:
        return self.ctl_json("status")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ca_server.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def stderr(self) -> str:
        if self.process is None or self.process.poll() is None:
            return ""
        return self.process.stderr.read() if self.process.stderr else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private runtime folder, shared by the daemon subprocess and in-process ring readers."""
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("CA_SERVER_RUNTIME_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def shm_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private folder in /dev/shm for this test's rings, removed with whatever is left in it."""
    path = Path(tempfile.mkdtemp(prefix="ca-server-test-", dir="/dev/shm"))
    monkeypatch.setenv("CA_SERVER_SHM_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon_factory(runtime_dir: Path) -> Iterator:
    daemons: list[Daemon] = []
    name = f"t{uuid.uuid4().hex[:10]}"

    def make() -> Daemon:
        daemon = Daemon(runtime_dir, name)
        daemons.append(daemon)
        return daemon

    yield make
    for daemon in daemons:
        daemon.stop()


@pytest.fixture
def daemon(daemon_factory) -> Daemon:
    started = daemon_factory()
    started.start()
    return started
