"""pod-start.sh for real: bootstrap, then the real supervisord (from PyPI) in the foreground
supervising the fake daemon and the fake Scope server. Shows restart on crash, logs under the
fake /workspace/logs, a healthy pod end to end, clean shutdown on SIGTERM, and that a failed
bootstrap still leaves a running, debuggable pod. supervisord holds Scope's server process
itself, so killing the PID it shows frees the port and the restart serves again."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
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
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        code = self.process.wait(timeout=10)
        # What pod-start ran in its own process group outlives it (Scope run alone, without
        # supervisord); on a pod it ends with the container, here it is stopped with the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        return code


@pytest.fixture
def pod_start(fake_pod: FakePod):
    started: list[PodStart] = []

    def start(tree: Path, **env: str) -> PodStart:
        started.append(PodStart(fake_pod, tree, **env))
        return started[-1]

    yield start
    for each in started:
        each.stop()


def scope_health(pod: FakePod) -> dict | None:
    try:
        url = f"http://127.0.0.1:{pod.env['CA_SCOPE_PORT']}/health"
        with urllib.request.urlopen(url, timeout=1) as response:
            return json.loads(response.read())
    except OSError:
        return None


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
    pod = pod_start(fake_pod.snapshot("c1"), FAKE_FAIL="supervisor==")
    wait_until(lambda: scope_health(fake_pod) is not None)
    console = pod.console.read_text()
    assert "BOOTSTRAP FAILED" in console and "running Scope alone" in console
    assert pod.process.poll() is None
    # Issue 24 item 1: Scope's plugin manager runs a bare `uv`, which is not on this PATH.
    request = urllib.request.Request(
        f"http://127.0.0.1:{fake_pod.env['CA_SCOPE_PORT']}/api/v1/plugins",
        data=b'{"package": "scope-plugin-hello-world"}',
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_killing_the_pid_supervisord_shows_frees_the_port(fake_pod: FakePod, pod_start) -> None:
    """Issue 24 item 5: supervisord ran the `uv run` wrapper; killing the PID it showed left the
    server holding the port and every restart failed with "address already in use". It now runs
    Scope's own entry point, so its PID is the server's."""
    pod = pod_start(fake_pod.snapshot("c1"))
    wait_until(lambda: pod.running("scope") and scope_health(fake_pod) is not None)
    pid = int(pod.supervisorctl("pid", "scope"))
    assert scope_health(fake_pod)["pid"] == pid  # the supervised process serves the port
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        health = scope_health(fake_pod)
        return health is not None and health["pid"] not in (pid, None)

    wait_until(restarted, timeout_s=30)
    assert scope_health(fake_pod)["pid"] == int(pod.supervisorctl("pid", "scope"))
    log = (fake_pod.workspace / "logs/scope.out.log").read_text()
    assert "Address already in use" not in log
    assert pod.stop() == 0
