"""A fake pod for the deploy scripts: a temporary root with /workspace, /app and /tmp stand-ins.

The scripts run for real (bash, flock, df, tar, supervisord); only what needs the pod is faked:
`nvidia-smi`, `uv`, Scope's entry point `daydream-scope` (its CLI and HTTP server) and venv
interpreter, and the daemon's CLI (tests/deploy/fakes). Nothing touches the real /workspace,
/app, /proc/1 or the network: every root the scripts read is overridden here, and PATH starts
with the fake pod's bin folder. Like on the image, uv is not on that PATH (only $CA_UV names it).
Every process a test starts must be gone when its fake pod is torn down: leftovers are killed
and fail the test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKES = Path(__file__).resolve().parent / "fakes"
SCRIPT_TIMEOUT_S = 60
# A few of Scope's locked packages as `uv pip freeze` shows them in the image's /app/.venv.
SCOPE_PACKAGES = (
    "av==14.4.0",
    "diffusers==0.35.2",
    "fastapi==0.115.12",
    "numpy==2.4.1",
    "nvidia-cudnn-cu12==9.15.0.57",
    "torch==2.9.1+cu128",
    "uvicorn==0.34.2",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class FakePod:
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def app(self) -> Path:
        return self.root / "app"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def uv_log(self) -> Path:
        return self.root / "uv.log"

    def snapshot(self, commit: str, daemon_text: str = "v1", plugin_text: str = "v1") -> Path:
        """A pushed tree at workspace/ca/src/<commit>: our deploy/ plus a minimal package."""
        tree = self.workspace / "ca" / "src" / commit
        if tree.exists():
            shutil.rmtree(tree)
        shutil.copytree(
            REPO / "deploy", tree / "deploy", ignore=shutil.ignore_patterns("__pycache__")
        )
        (tree / "pyproject.toml").write_text('[project]\nname = "ca-server"\nversion = "0.1.0"\n')
        for rel, text in {
            "ca_server/__init__.py": "",
            "ca_server/wire/ring.py": "WIRE = 1\n",
            "ca_server/engines/lenia.py": f"ENGINE = {daemon_text!r}\n",
            "ca_scope_client/plugin.py": f"PLUGIN = {plugin_text!r}\n",
        }.items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_text(text)
        (tree / ".ca-commit").write_text(commit + "\n")
        return tree

    def run(
        self, script: Path | str, *args: str, timeout_s: float = SCRIPT_TIMEOUT_S, **overrides: str
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **overrides}
        return subprocess.run(
            ["bash", str(script), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def uv_calls(self) -> list[str]:
        """Every fake-uv call so far, as "<cwd>\t<args>"."""
        return self.uv_log.read_text().splitlines() if self.uv_log.exists() else []

    def mutating_uv_calls(self) -> list[str]:
        """The uv calls that change an environment (venv, pip install, plugin install)."""
        return [
            c
            for c in self.uv_calls()
            if any(w in f" {c.split(chr(9), 1)[1]} " for w in MUTATING_UV)
        ]

    def scope_freeze(self) -> list[str]:
        """Scope's venv as `uv pip freeze` lists it (through the fake uv)."""
        done = subprocess.run(
            [self.env["CA_UV"], "pip", "freeze", "--python", str(self.app / ".venv/bin/python")],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.splitlines()

    def live_pids(self) -> list[int]:
        """Pids of live processes started for this pod (their environment names its uv log)."""
        marker = f"FAKE_LOG={self.uv_log}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
        return found

    def stop_supervisord(self) -> None:
        """Shut down a supervisord a test started, by its own pid file."""
        pid_file = self.run_dir / "supervisord.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), 15)


MUTATING_UV = (
    " venv ",
    " pip install ",
    " pip uninstall ",
    " daydream-scope install ",
    " daydream-scope uninstall ",
)
ORPHAN_GRACE_S = 30.0


def end_leftovers(pod: FakePod) -> list[str]:
    """Wait (bounded) for the pod's processes to exit; kill and name those that do not."""
    deadline = time.monotonic() + ORPHAN_GRACE_S
    while pod.live_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    leftovers = []
    for pid in pod.live_pids():
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            leftovers.append(f"{pid}: {command.decode(errors='replace').strip()}")
            os.kill(pid, signal.SIGKILL)
    return leftovers


@pytest.fixture
def fake_pod(tmp_path: Path):
    root = tmp_path
    for sub in ("workspace", "app/.venv/bin", "run", "shm", "bin", "home"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "app/pyproject.toml").write_text('[project]\nname = "daydream-scope"\n')
    (root / "app/uv.lock").write_text("version = 1\n")
    shutil.copy(FAKES / "scope-python", root / "app/.venv/bin/python")
    (root / "app/.venv/bin/daydream-scope").symlink_to(FAKES / "daydream-scope")
    (root / "app/.venv/fake-packages.txt").write_text("\n".join(SCOPE_PACKAGES) + "\n")
    (root / "bin/nvidia-smi").symlink_to(FAKES / "nvidia-smi")
    path = f"{root / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    # PID 1's environment as the template would set it; what import_env may read.
    (root / "proc1-environ").write_bytes(
        f"PUBLIC_KEY=ssh-ed25519 AAAAfake test@laptop\0PATH={path}\0".encode()
    )
    (root / "proc1-cmdline").write_bytes(b"/bin/bash\0/workspace/ca/current/deploy/pod-start.sh\0")
    env = {
        "PATH": path,
        "HOME": str(root / "home"),
        "LANG": "C.UTF-8",
        "CA_WORKSPACE": str(root / "workspace"),
        "CA_APP_DIR": str(root / "app"),
        "CA_RUN_DIR": str(root / "run"),
        "CA_SERVER_SHM_DIR": str(root / "shm"),
        "CA_UV": str(FAKES / "uv"),
        "CA_PROC1_ENVIRON": str(root / "proc1-environ"),
        "CA_PROC1_CMDLINE": str(root / "proc1-cmdline"),
        "CA_MIN_FREE_GB": "0",
        "CA_ENABLE_SSHD": "0",
        "CA_SCOPE_PORT": str(free_port()),
        "CA_DAEMON_STARTSECS": "0",
        "CA_SCOPE_STARTSECS": "0",
        "FAKE_LOG": str(root / "uv.log"),
        "FAKE_SCOPE_LOG": str(root / "scope-http.log"),
        "REAL_PYTHON": sys.executable,
        "SUPERVISOR_BIN_DIR": str(Path(sys.executable).parent),
    }
    pod = FakePod(root=root, env=env)
    yield pod
    leftovers = end_leftovers(pod)
    assert not leftovers, f"processes left running after the test (killed now): {leftovers}"
