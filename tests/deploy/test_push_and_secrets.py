"""deploy/push.sh from a laptop checkout to a fake pod through a fake ssh (which runs the remote
command here, in a clean environment like a real SSH session), and secret hygiene: a token given
only in the pod's environment reaches the supervised programs but no file or log. The SSH
session has sshd's short PATH (no uv, no nvidia-smi), as on the Scope image."""

from __future__ import annotations

import os
import secrets
import shutil
import string
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import FakePod

REPO = Path(__file__).resolve().parents[2]
FAKES = Path(__file__).resolve().parent / "fakes"
GIT = [
    "git",
    "-c",
    "user.name=t",
    "-c",
    "user.email=t@example.invalid",
    "-c",
    "commit.gpgsign=false",
]

pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.skipif(
        not (Path(sys.executable).parent / "supervisord").exists(),
        reason="supervisord missing from this venv: pip install supervisor (test extra)",
    ),
]


def fake_token() -> str:
    """A token-shaped value built at run time, so none is ever committed."""
    alphabet = string.ascii_letters + string.digits
    return "hf" + "_" + "".join(secrets.choice(alphabet) for _ in range(34))


def commit_all(checkout: Path, message: str) -> str:
    subprocess.run([*GIT, "-C", str(checkout), "add", "-A"], check=True, capture_output=True)
    subprocess.run(
        [*GIT, "-C", str(checkout), "commit", "-qm", message], check=True, capture_output=True
    )
    return subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def laptop(fake_pod: FakePod, tmp_path_factory):
    """A git checkout with our deploy/ and a minimal package, plus a pod whose PID 1 environment
    (the template's env) holds the roots and a secret; ssh sessions see nothing else."""
    checkout = tmp_path_factory.mktemp("laptop") / "ca-server"
    template = fake_pod.snapshot("template")
    shutil.copytree(template, checkout, ignore=shutil.ignore_patterns(".ca-commit"))
    shutil.rmtree(template)
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    fake_pod.token = fake_token()  # type: ignore[attr-defined]
    pod_env = {k: v for k, v in fake_pod.env.items() if k.startswith("CA_")}
    pod_env.update(
        PATH=fake_pod.env["PATH"],  # the image's PATH: the pod's bin (nvidia-smi) is on it
        LD_LIBRARY_PATH="/usr/local/nvidia/lib64",  # not in import_env's allowlist
        HF_TOKEN=fake_pod.token,
        CA_HEALTH_SAMPLE_S="0.3",
        CA_HEALTH_RETRY_S="0.3",
        CA_DEPLOY_HEALTH_WAIT_S="20",
    )
    (fake_pod.root / "proc1-environ").write_bytes(
        b"".join(f"{k}={v}".encode() + b"\0" for k, v in pod_env.items())
    )
    (fake_pod.root / "bin/ssh").symlink_to(FAKES / "ssh")
    fake_pod.env["FAKE_SSH_LOG"] = str(fake_pod.root / "ssh.log")
    fake_pod.checkout = checkout  # type: ignore[attr-defined]
    yield fake_pod
    fake_pod.stop_supervisord()


def push(pod, *ssh_args: str):
    laptop_env = {k: v for k, v in pod.env.items() if not k.startswith("CA_")}
    laptop_env.update(
        CA_REMOTE_WORKSPACE=str(pod.workspace), CA_PROC1_ENVIRON=pod.env["CA_PROC1_ENVIRON"]
    )
    return subprocess.run(
        ["bash", str(pod.checkout / "deploy/push.sh"), *ssh_args],
        env=laptop_env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_push_deploys_the_commit_and_prints_health(laptop) -> None:
    sha = commit_all(laptop.checkout, "first")
    done = push(laptop, "ssh", "root@203.0.113.7", "-p", "22022", "-i", "/keys/id")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"deployed {sha}: healthy" in done.stderr
    assert '"ok": true' in done.stdout  # the health report, printed from the pod
    tree = laptop.workspace / "ca/src" / sha
    assert (tree / ".ca-commit").read_text().strip() == sha
    assert os.readlink(laptop.workspace / "ca/current") == str(tree)
    ssh_log = (laptop.root / "ssh.log").read_text()
    ssh_calls = [line for line in ssh_log.splitlines() if line.startswith("-o BatchMode")]
    assert len(ssh_calls) == 2  # one copy, one deploy
    assert all(
        "BatchMode=yes" in c and "root@203.0.113.7 -p 22022 -i /keys/id" in c for c in ssh_calls
    )

    installs_before = laptop.mutating_uv_calls()
    again = push(laptop, "root@203.0.113.7", "-p", "22022")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already present" in again.stdout + again.stderr
    assert laptop.mutating_uv_calls() == installs_before

    (laptop.checkout / "ca_scope_client/plugin.py").write_text("PLUGIN = 'v2'\n")
    (laptop.checkout / "scratch.txt").write_text("local only\n")
    subprocess.run(["git", "-C", str(laptop.checkout), "add", "ca_scope_client"], check=True)
    sha2 = commit_all(laptop.checkout, "plugin change")
    third = push(laptop, "root@203.0.113.7", "-p", "22022")
    assert third.returncode == 0, third.stdout + third.stderr
    new_calls = laptop.mutating_uv_calls()[len(installs_before) :]
    assert len(new_calls) == 1 and new_calls[0].endswith(f"ca-server {tree.parent / sha2}")
    assert f"--python {laptop.app}/.venv/bin/python" in new_calls[0]

    leaked = [
        str(p)
        for p in laptop.root.rglob("*")
        if p.is_file() and p.name != "proc1-environ" and laptop.token.encode() in p.read_bytes()
    ]
    assert leaked == []
    for output in (done, again, third):
        assert laptop.token not in output.stdout + output.stderr
    scope_pid = subprocess.run(
        [
            str(laptop.workspace / "ca/tools/bin/supervisorctl"),
            "-c",
            str(laptop.run_dir / "supervisord.conf"),
            "pid",
            "scope",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    scope_env = Path(f"/proc/{scope_pid}/environ").read_bytes().split(b"\0")
    assert f"HF_TOKEN={laptop.token}".encode() in scope_env  # inherited, never written


def test_gateway_address_is_refused(laptop) -> None:
    commit_all(laptop.checkout, "first")
    done = push(laptop, "abc123-64411e@ssh.runpod.io", "-i", "/keys/id")
    assert done.returncode == 1
    assert "cannot copy files" in done.stderr and "direct TCP" in done.stderr
    assert not (laptop.root / "ssh.log").exists()


def test_uncommitted_changes_are_named_not_sent(laptop) -> None:
    sha = commit_all(laptop.checkout, "first")
    (laptop.checkout / "ca_server/engines/lenia.py").write_text("ENGINE = 'dirty'\n")
    done = push(laptop, "root@203.0.113.7", "-p", "22022")
    assert "uncommitted changes are NOT deployed" in done.stderr
    pushed = (laptop.workspace / "ca/src" / sha / "ca_server/engines/lenia.py").read_text()
    assert "dirty" not in pushed


def scope_pid(pod) -> int:
    done = subprocess.run(
        [
            str(pod.workspace / "ca/tools/bin/supervisorctl"),
            "-c",
            str(pod.run_dir / "supervisord.conf"),
            "pid",
            "scope",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_deploy_over_ssh_finds_uv_and_nvidia_smi(laptop) -> None:
    """Issue 24 item 1: over SSH neither the image's uv folder nor (maybe) nvidia-smi's is on
    PATH. Scope, started from that session, must find the bare `uv` its plugin manager runs, and
    the GPU must be seen (not a degraded install without CuPy)."""
    commit_all(laptop.checkout, "first")
    done = push(laptop, "root@203.0.113.7", "-p", "22022")
    assert done.returncode == 0, done.stdout + done.stderr
    state = (laptop.workspace / "ca/state/bootstrap.json").read_text()
    assert '"degraded":false' in state and "cupy-cuda12x" in state
    request = urllib.request.Request(
        f"http://127.0.0.1:{laptop.env['CA_SCOPE_PORT']}/api/v1/plugins",
        data=b'{"package": "scope-plugin-hello-world"}',
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # 500 FileNotFoundError: 'uv'
        assert response.status == 200


def test_supervisord_started_over_ssh_gives_scope_the_pods_environment(laptop) -> None:
    """Issue 24 item 7: a supervisord first started from an SSH session gave its programs only
    the allowlisted variables until the next reboot; they now get all of PID 1's."""
    commit_all(laptop.checkout, "first")
    done = push(laptop, "root@203.0.113.7", "-p", "22022")
    assert done.returncode == 0, done.stdout + done.stderr
    scope_env = Path(f"/proc/{scope_pid(laptop)}/environ").read_bytes().split(b"\0")
    assert b"LD_LIBRARY_PATH=/usr/local/nvidia/lib64" in scope_env
