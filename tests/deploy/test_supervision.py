"""pod-start.sh for real: bootstrap, then the real supervisord (from PyPI) in the foreground
supervising the fake daemon and the fake Scope server. Shows restart on crash, logs under the
fake /workspace/logs, a healthy pod end to end, clean shutdown on SIGTERM, and that a failed
bootstrap still leaves a running, debuggable pod."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import FakePod

pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.skipif(
        not (Path(sys.executable).parent / "supervisord").exists(),
        reason="supervisord missing from this venv: pip install supervisor (test extra)",
    ),
]


def wait_until(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


class PodStart:
    """pod-start.sh running in its own process group, as PID 1 would on the pod."""

    def __init__(self, pod: FakePod, tree: Path, **env: str) -> None:
        self.pod = pod
        self.console = pod.root / "console.log"
        with open(self.console, "w") as console:
            self.process = subprocess.Popen(
                ["bash", str(tree / "deploy/pod-start.sh")],
                env={**pod.env, **env},
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def supervisorctl(self, *args: str) -> str:
        if not (self.pod.run_dir / "supervisor.sock").exists():
            return ""  # bootstrap still running
        done = subprocess.run(
            [
                str(self.pod.workspace / "ca/tools/bin/supervisorctl"),
                "-c",
                str(self.pod.run_dir / "supervisord.conf"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        return done.stdout

    def running(self, program: str) -> bool:
        return "RUNNING" in self.supervisorctl("status", program)

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout=10)


@pytest.fixture
def pod_start(fake_pod: FakePod):
    started: list[PodStart] = []

    def start(tree: Path, **env: str) -> PodStart:
        started.append(PodStart(fake_pod, tree, **env))
        return started[-1]

    yield start
    for each in started:
        each.stop()


def starts(pod: FakePod) -> int:
    path = pod.run_dir / "ca-server/fake-gpu0.starts"
    return int(path.read_text()) if path.exists() else 0


def test_crashing_daemon_is_restarted_and_logged(fake_pod: FakePod, pod_start) -> None:
    pod = pod_start(fake_pod.snapshot("c1"), FAKE_CRASH_AFTER_S="0.3")
    wait_until(lambda: starts(fake_pod) >= 3)
    log_text = (fake_pod.workspace / "logs/ca-server.log").read_text()
    assert log_text.count("fake ca-server serving gpu0") >= 3
    assert "fake crash" in log_text
    assert (fake_pod.workspace / "logs/supervisord.log").exists()
    wait_until(lambda: pod.running("scope"))
    assert pod.stop() == 0


def test_supervised_pod_is_healthy_and_stops_cleanly(fake_pod: FakePod, pod_start) -> None:
    tree = fake_pod.snapshot("c1")
    pod = pod_start(tree)
    wait_until(lambda: pod.running("ca-server") and pod.running("scope"))
    health = fake_pod.run(
        tree / "deploy/healthcheck.sh",
        "--wait",
        "20",
        CA_HEALTH_RETRY_S="0.3",
        CA_HEALTH_SAMPLE_S="0.3",
    )
    assert health.returncode == 0, health.stdout + health.stderr
    assert "ca-server" in health.stderr and "RUNNING" in health.stderr  # supervisorctl status
    assert pod.stop() == 0
    assert not (fake_pod.run_dir / "ca-server/fake-gpu0.alive").exists()  # daemon got SIGTERM
    console = pod.console.read_text()
    assert "handing over to supervisord" in console
    pod_start_logs = list((fake_pod.workspace / "logs/deploy").glob("pod-start-*.log"))
    assert pod_start_logs and "handing over to supervisord" in pod_start_logs[0].read_text()


def test_failed_plugin_step_still_supervises_both(fake_pod: FakePod, pod_start) -> None:
    pod = pod_start(fake_pod.snapshot("c1"), FAKE_PLUGIN_BROKEN="1")
    wait_until(lambda: pod.running("ca-server") and pod.running("scope"))
    assert "BOOTSTRAP FAILED" in pod.console.read_text()


def test_without_supervisor_scope_runs_alone_and_pod_stays_up(fake_pod: FakePod, pod_start) -> None:
    import urllib.request

    pod = pod_start(fake_pod.snapshot("c1"), FAKE_FAIL="supervisor==")
    url = f"http://127.0.0.1:{fake_pod.env['CA_SCOPE_PORT']}/health"

    def scope_answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            return False

    wait_until(scope_answers)
    console = pod.console.read_text()
    assert "BOOTSTRAP FAILED" in console and "running Scope alone" in console
    assert pod.process.poll() is None
