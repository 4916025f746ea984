"""Where a ring's files live: the shared-memory file, the lock file and the control endpoint.

One ring name (default `gpu0`, from `--gpu 0`) keys everything, so a daemon and a client that
agree on the name meet without further configuration:

    /dev/shm/ca-server.<name>.ring      frames (override the folder with CA_SERVER_SHM_DIR)
    <rundir>/<name>.lock                flock held by the live writer
    ipc://<rundir>/<name>.ctl           control endpoint (ZeroMQ ROUTER)

`<rundir>` is `$CA_SERVER_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/ca-server`, else
`/tmp/ca-server-<uid>`; it is created with mode 0700 and refused if another user owns it.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ca_server.wire.errors import WireError

DEFAULT_SHM_DIR = "/dev/shm"
RING_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$")
IPC_PATH_MAX_BYTES = 107  # sockaddr_un.sun_path minus the NUL


def default_ring_name(gpu_index: int = 0) -> str:
    """The ring name `serve --gpu N` uses when `--name` is not given, e.g. `gpu0`."""
    return f"gpu{gpu_index}"


def validate_ring_name(name: str) -> str:
    """Return `name` if it is a valid ring name; raise WireError saying what is allowed."""
    if not RING_NAME_PATTERN.match(name):
        raise WireError(
            f"invalid ring name {name!r}: use 1-31 characters from letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return name


def shm_dir() -> Path:
    """The folder that holds ring files: `$CA_SERVER_SHM_DIR` or `/dev/shm`."""
    return Path(os.environ.get("CA_SERVER_SHM_DIR") or DEFAULT_SHM_DIR)


def runtime_dir(create: bool = True) -> Path:
    """The per-user runtime folder for lock files and ipc sockets, mode 0700."""
    override = os.environ.get("CA_SERVER_RUNTIME_DIR")
    if override:
        path = Path(override)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "ca-server"
    else:
        path = Path(f"/tmp/ca-server-{os.getuid()}")
    if create:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = path.stat()
        except OSError as exc:
            raise WireError(
                f"cannot create runtime folder {path}: {exc.strerror}; "
                "set CA_SERVER_RUNTIME_DIR to a writable folder"
            ) from exc
        if info.st_uid != os.getuid():
            raise WireError(
                f"runtime folder {path} belongs to uid {info.st_uid}, not to you; "
                "set CA_SERVER_RUNTIME_DIR to a folder of your own"
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(0o700)
    return path


def ring_path(name: str) -> Path:
    """The ring file for `name`, e.g. `/dev/shm/ca-server.gpu0.ring`."""
    return shm_dir() / f"ca-server.{validate_ring_name(name)}.ring"


def lock_path(name: str) -> Path:
    """The lock file the live writer of ring `name` holds an flock on."""
    return runtime_dir() / f"{validate_ring_name(name)}.lock"


def default_control_endpoint(name: str) -> str:
    """The daemon's default control endpoint for ring `name`: `ipc://<rundir>/<name>.ctl`."""
    socket_path = runtime_dir() / f"{validate_ring_name(name)}.ctl"
    if len(os.fsencode(str(socket_path))) > IPC_PATH_MAX_BYTES:
        raise WireError(
            f"ipc socket path {socket_path} is longer than {IPC_PATH_MAX_BYTES} bytes; "
            "set CA_SERVER_RUNTIME_DIR to a shorter folder or pass a tcp://127.0.0.1 endpoint"
        )
    return f"ipc://{socket_path}"
