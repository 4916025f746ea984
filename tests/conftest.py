"""Fixtures shared by every test folder: private runtime and shared-memory folders per test.

It also puts tests/ on sys.path (pytest runs with `--import-mode=importlib` and tests/ has no
packages), so suites can `import daemon_process`, the real-daemon subprocess helper.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private runtime folder (lock files, ipc sockets), set as CA_SERVER_RUNTIME_DIR for this
    process and for the daemons it starts."""
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("CA_SERVER_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def shm_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private folder in /dev/shm for this test's rings, set as CA_SERVER_SHM_DIR; removed with
    whatever is left in it."""
    path = Path(tempfile.mkdtemp(prefix="ca-server-test-", dir="/dev/shm"))
    monkeypatch.setenv("CA_SERVER_SHM_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)
