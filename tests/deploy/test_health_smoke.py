"""healthcheck.sh and smoke.sh against a fake daemon CLI and a fake Scope HTTP server: the verdict
and exit code for each failing component, the report on disk, and the HTTP calls the smoke test
makes for a headless session and for the chain into Krea."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import FakePod

REPO = Path(__file__).resolve().parents[2]
FAKES = Path(__file__).resolve().parent / "fakes"


def start_process(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def scope_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def pod(fake_pod: FakePod):
    """A fake pod with our (fake) daemon CLI installed; processes started here are stopped after."""
    bin_dir = fake_pod.workspace / "ca/venv/bin"
    bin_dir.mkdir(parents=True)
    shutil.copy(FAKES / "ca-server", bin_dir / "ca-server")
    fake_pod.env["CA_SERVER_RUNTIME_DIR"] = str(fake_pod.run_dir / "ca-server")
    fake_pod.env["CA_HEALTH_SAMPLE_S"] = "0.3"
    fake_pod.processes = []  # type: ignore[attr-defined]
    yield fake_pod
    for process in fake_pod.processes:  # type: ignore[attr-defined]
        process.terminate()
        process.wait(timeout=10)


def start_daemon(pod, **env: str) -> None:
    proc = start_process(
        [str(pod.workspace / "ca/venv/bin/ca-server"), "serve", "--name", "gpu0"],
        {**pod.env, **env},
    )
    pod.processes.append(proc)
    wait_until(lambda: (pod.run_dir / "ca-server/fake-gpu0.alive").exists())


def start_scope(pod, **env: str) -> str:
    port = pod.env["CA_SCOPE_PORT"]
    proc = start_process(
        [sys.executable, str(FAKES / "fake_scope.py"), "--port", port], {**pod.env, **env}
    )
    pod.processes.append(proc)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: scope_up(url))
    return url


def healthcheck(pod, *args: str, **env: str):
    return pod.run(REPO / "deploy/healthcheck.sh", *args, **env)


def report(done) -> dict:
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_healthy_pod(pod) -> None:
    start_daemon(pod)
    start_scope(pod)
    done = healthcheck(pod)
    assert done.returncode == 0, done.stdout + done.stderr
    verdict = report(done)
    assert verdict["ok"] is True
    assert verdict["health"]["daemon"]["frames_rise"] > 0
    assert verdict["health"]["scope"]["pipelines"] == ["ca-source"]
    assert "HEALTHY" in done.stderr
    on_disk = json.loads((pod.workspace / "logs/health/latest.json").read_text())
    assert on_disk == verdict


@pytest.mark.parametrize(
    ("case", "daemon_env", "scope_env", "code", "message"),
    [
        ("frames stuck", {"FAKE_DAEMON_STUCK": "1"}, {}, 3, "did not rise"),
        ("plugin failed to load", {}, {"FAKE_SCOPE_PLUGIN": "failed"}, 5, "no module named zmq"),
        ("plugin not installed", {}, {"FAKE_SCOPE_PLUGIN": "missing"}, 5, "not installed"),
    ],
)
def test_each_failing_component_has_its_code(pod, case, daemon_env, scope_env, code, message):
    start_daemon(pod)
    start_scope(pod, **scope_env)
    done = healthcheck(pod, **daemon_env)  # the fake daemon CLI reads them at `ctl status`
    assert done.returncode == code, (case, done.stdout)
    assert message in report(done)["error"], case
    assert "UNHEALTHY" in done.stderr


def test_no_daemon_and_no_scope(pod) -> None:
    start_scope(pod)
    no_daemon = healthcheck(pod)
    assert no_daemon.returncode == 3 and "not answering" in report(no_daemon)["error"]
    start_daemon(pod)
    pod.processes[0].terminate()  # Scope gone, daemon up
    wait_until(lambda: not scope_up(f"http://127.0.0.1:{pod.env['CA_SCOPE_PORT']}"))
    no_scope = healthcheck(pod)
    assert no_scope.returncode == 4, no_scope.stdout


def test_required_pipeline_id_must_be_registered(pod) -> None:
    start_daemon(pod)
    start_scope(pod)
    done = healthcheck(pod, CA_PIPELINE_ID="ca-other")
    assert done.returncode == 5 and "'ca-other' not registered" in report(done)["error"]


def test_wait_retries_until_healthy(pod) -> None:
    start_scope(pod)
    late_daemon = subprocess.Popen(
        ["bash", "-c", f"sleep 1; exec {pod.workspace}/ca/venv/bin/ca-server serve"],
        env=pod.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pod.processes.append(late_daemon)
    done = healthcheck(pod, "--wait", "20", CA_HEALTH_RETRY_S="0.3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not healthy yet" in done.stderr


def scope_calls(pod) -> list[list]:
    return [json.loads(line) for line in (pod.root / "scope-http.log").read_text().splitlines()]


def test_smoke_runs_a_headless_session_and_saves_the_frame(pod) -> None:
    start_daemon(pod)
    start_scope(pod)
    done = pod.run(REPO / "deploy/smoke.sh")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SMOKE PASSED" in done.stderr
    frame = (pod.workspace / "logs/health/smoke-frame.jpg").read_bytes()
    first = (pod.workspace / "logs/health/smoke-frame-first.jpg").read_bytes()
    assert frame.startswith(b"\xff\xd8") and first.startswith(b"\xff\xd8")
    assert frame != first  # the saved frames move
    posts = [(c[1], c[2]) for c in scope_calls(pod) if c[0] == "POST"]
    assert [p[0] for p in posts] == [
        "/api/v1/pipeline/load",
        "/api/v1/session/start",
        "/api/v1/session/stop",
    ]
    # Scope looks a single-pipeline session up by node id = pipeline id (issue 24 item 2).
    assert posts[0][1]["pipelines"][0]["node_id"] == "ca-source"
    assert posts[1][1] == {"pipeline_id": "ca-source"}


def test_smoke_e2e_skips_krea_without_weights(pod) -> None:
    start_daemon(pod)
    start_scope(pod)
    done = pod.run(REPO / "deploy/smoke.sh", "--e2e")
    assert done.returncode == 0, done.stdout + done.stderr
    chain = json.loads((pod.workspace / "logs/health/smoke-chain.json").read_text())
    assert "not downloaded" in chain["chain"]["skipped"]


def test_smoke_e2e_chains_into_krea_in_video_mode(pod) -> None:
    start_daemon(pod)
    start_scope(pod, FAKE_KREA_WEIGHTS="1")
    done = pod.run(REPO / "deploy/smoke.sh", "--e2e")
    assert done.returncode == 0, done.stdout + done.stderr
    chain = json.loads((pod.workspace / "logs/health/smoke-chain.json").read_text())["chain"]
    assert chain["pipelines"] == ["ca-source", "krea-realtime-video"]
    assert chain["pipeline_fps"] == 29.5 and chain["scope_vram"]["vram_allocated_mb"] == 1000.0
    assert chain["daemon"]["vram_mb"] == 256.0
    start = [c[2] for c in scope_calls(pod) if c[1] == "/api/v1/session/start"][-1]
    assert start["input_mode"] == "video"
    nodes = {n["id"]: n for n in start["graph"]["nodes"]}
    assert nodes["input"]["type"] == "source"  # without one Scope forces text mode
    edges = {(e["from"], e["to_node"]) for e in start["graph"]["edges"]}
    assert edges == {("ca", "krea"), ("krea", "output")}


@pytest.mark.parametrize(
    ("case", "scope_env", "message"),
    [
        ("Scope refuses the session", {"FAKE_SCOPE_SESSION_ERROR": "1"}, "not loaded"),
        ("frames do not move", {"FAKE_SCOPE_FROZEN": "1"}, "frames did not change"),
    ],
)
def test_failed_session_is_a_session_failure(pod, case, scope_env, message) -> None:
    """Issue 24 item 2: an HTTP error from a session call was reported as exit 4 (Scope down),
    and one frame that never changes passed; both are session failures (exit 6)."""
    start_daemon(pod)
    start_scope(pod, **scope_env)
    done = pod.run(REPO / "deploy/smoke.sh", CA_SMOKE_TIMEOUT_S="3")
    assert done.returncode != 0, case
    session = json.loads((pod.workspace / "logs/health/smoke-session.json").read_text())
    assert session["exit_code"] == 6, (case, session)
    assert message in session["error"], case
