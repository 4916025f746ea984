"""Fixtures for the wire tests: the isolated shared-memory and runtime folders with their
environment, and a way to run the ring worker script (`ring_workers.py`) as a real subprocess
that reports JSON lines."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

RING_WORKERS = Path(__file__).with_name("ring_workers.py")


@dataclass
class RingEnv:
    """Where one test's rings and lock files live, and the environment that points there."""

    shm_dir: Path
    runtime_dir: Path
    env: dict[str, str]


@pytest.fixture(autouse=True)
def private_runtime(runtime_dir: Path) -> Path:
    """Every wire test keeps its lock files, sockets and CURVE keys in a folder of its own."""
    return runtime_dir


@pytest.fixture
def ring_env(runtime_dir: Path, shm_dir: Path) -> RingEnv:
    """The private runtime and /dev/shm folders of tests/conftest.py (already set in this
    process's environment) and that environment, to hand to workers."""
    return RingEnv(shm_dir, runtime_dir, dict(os.environ))


class Worker:
    """A `ring_workers.py` subprocess; every stdout line is a JSON event."""

    def __init__(self, args: list[str], env: dict[str, str], prefix: list[str] | None = None):
        command = [*(prefix or []), sys.executable, str(RING_WORKERS), *args]
        self.proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.events: queue.Queue[dict] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except json.JSONDecodeError:
                self.events.put({"event": "garbage", "line": line})

    def wait_event(self, name: str, timeout_s: float = 15.0) -> dict:
        """The next event called `name`; fails the test on timeout or early exit."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.05)
            except queue.Empty:
                if self.proc.poll() is not None and self.events.empty():
                    self._reader.join(1)
                    if self.events.empty():
                        pytest.fail(f"worker exited {self.proc.returncode}: {self.stderr()}")
                continue
            if event.get("event") == name:
                return event
        pytest.fail(f"worker sent no {name!r} event in {timeout_s} s: {self.stderr()}")

    def finish(self, timeout_s: float = 30.0) -> dict:
        """Wait for exit and return the `done` event."""
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"worker did not exit within {timeout_s} s")
        return self.wait_event("done", timeout_s=5)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read()[-2000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def spawn_worker():
    """Start ring workers; any still running at teardown are killed."""
    started: list[Worker] = []

    def spawn(*args: object, env: dict[str, str], prefix: list[str] | None = None) -> Worker:
        worker = Worker([str(a) for a in args], env, prefix)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.kill()


@pytest.fixture
def ipc_endpoint() -> Iterator[str]:
    """An ipc:// endpoint in a short private folder (socket paths are limited to 107 bytes)."""
    folder = tempfile.mkdtemp(prefix="ca-ctl-", dir="/tmp")
    yield f"ipc://{folder}/test.ctl"
    shutil.rmtree(folder, ignore_errors=True)
