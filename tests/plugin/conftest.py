"""Fixtures for the plugin tests; puts the Scope stand-in and the test kit on sys.path.

`runtime_dir` and `shm_dir` (private CA_SERVER_RUNTIME_DIR and /dev/shm folder) come from
tests/conftest.py, which also makes `daemon_process` importable for the test kit.
"""

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
def ring_name(runtime_dir: Path, shm_dir: Path) -> Iterator[str]:
    """A ring name no other test uses, in this test's own folders; its shm file is removed
    afterwards (and the folder with it, by `shm_dir`)."""
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
