"""Fixtures that run the real daemon (`python -m ca_server.cli serve`) as a subprocess.

Each test gets its own ring name, runtime folder and /dev/shm folder, so tests never meet each
other's daemons. The subprocess itself is `daemon_process.DaemonProcess` (tests/).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_process import DaemonProcess


@pytest.fixture(autouse=True)
def private_shm(shm_dir: Path) -> Path:
    """Every daemon test, started daemon or not, keeps its rings in its own /dev/shm folder."""
    return shm_dir


@pytest.fixture
def daemon_factory(runtime_dir: Path) -> Iterator[Callable[[], DaemonProcess]]:
    """Makes unstarted daemons that share one ring name; stops them all afterwards."""
    daemons: list[DaemonProcess] = []
    name = f"t{uuid.uuid4().hex[:10]}"

    def make() -> DaemonProcess:
        daemon = DaemonProcess(name)  # its env carries CA_SERVER_RUNTIME_DIR and _SHM_DIR
        daemons.append(daemon)
        return daemon

    yield make
    for daemon in daemons:
        daemon.stop()


@pytest.fixture
def daemon(daemon_factory: Callable[[], DaemonProcess]) -> DaemonProcess:
    started = daemon_factory()
    started.start()
    return started
