"""The suite's per-test timeout fails only the test that is stuck; the run goes on.

pytest-timeout's "thread" method ends the whole process when any test overruns, so on a loaded
CI box one slow test cost every result after it (issue 19, item 14). The project's own pytest
settings run a small suite with a sleeping test and a test blocked on a lock: each fails alone
and the test after them still runs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN_BOUND_S = 120  # a hang bound for the inner run, far above its ~4 s

STUCK_SUITE = """
import threading
import time

import pytest


@pytest.mark.timeout(2)
def test_sleeps_too_long():
    time.sleep(60)


@pytest.mark.timeout(2)
def test_waits_on_a_lock_nobody_releases():
    threading.Event().wait()


def test_after_them_still_runs():
    assert True
"""


def test_a_stuck_test_fails_alone_and_the_run_goes_on(tmp_path: Path) -> None:
    suite = tmp_path / "test_stuck.py"
    suite.write_text(textwrap.dedent(STUCK_SUITE))
    command = [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml")]
    command += ["--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-q", str(suite)]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_BOUND_S)
    output = run.stdout + run.stderr
    assert "2 failed, 1 passed" in output, output
    assert output.count("Timeout") >= 2, output
