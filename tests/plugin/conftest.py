"""Fixtures for the plugin tests; puts the Scope stand-in and the test kit on sys.path."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PLUGIN_TESTS_DIR = Path(__file__).parent
for folder in (PLUGIN_TESTS_DIR / "scope_standin", PLUGIN_TESTS_DIR):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from plugin_testkit import FakeDaemon, RealDaemon  # noqa: E402

from ca_server.wire.paths import ring_path  # noqa: E402


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private runtime folder (lock files, ipc sockets) for this test and its daemons."""
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("CA_SERVER_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def ring_name(runtime_dir: Path) -> Iterator[str]:
    """A ring name no other test uses; its shm file is removed afterwards."""
    name = f"p{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(FileNotFoundError):
        ring_path(name).unlink()


@pytest.fixture
def fake_daemon(ring_name: str) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon(ring_name)
    yield daemon
    daemon.close()


@pytest.fixture
def real_daemon(ring_name: str, runtime_dir: Path) -> Iterator[RealDaemon]:
    daemon = RealDaemon(ring_name, runtime_dir)
    yield daemon
    daemon.stop()
