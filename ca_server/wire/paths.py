"""Where a ring's files live: the shared-memory file, the lock file and the control endpoint.

One ring name (default `gpu0`, from `--gpu 0`) keys everything, so a daemon and a client that
agree on the name meet without further configuration:

    /dev/shm/ca-server.<name>.ring      frames (override the folder with CA_SERVER_SHM_DIR)
    <rundir>/<name>.lock                flock held by the live writer
    ipc://<rundir>/<name>.ctl           control endpoint (ZeroMQ ROUTER)

`<rundir>` is `$CA_SERVER_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/ca-server`, else
`/tmp/ca-server-<uid>`; it is created with mode 0700. Another local user may have planted
anything at these paths first, so every one is opened without following a symlink
(`O_NOFOLLOW`) and without blocking on a FIFO (`O_NONBLOCK`), and must be a regular file or
folder owned by us; anything else is refused with one line (`UnsafePathError`), never chmodded.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from ca_server.wire.errors import UnsafePathError, WireError

DEFAULT_SHM_DIR = "/dev/shm"
# Always fullmatch: with re.match, "$" would also accept a trailing newline.
RING_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}")
IPC_PATH_MAX_BYTES = 107  # sockaddr_un.sun_path minus the NUL


def default_ring_name(gpu_index: int = 0) -> str:
    """The ring name `serve --gpu N` uses when `--name` is not given, e.g. `gpu0`."""
    return f"gpu{gpu_index}"


def validate_ring_name(name: str) -> str:
    """Return `name` if it is a valid ring name; raise WireError saying what is allowed."""
    if not isinstance(name, str) or not RING_NAME_PATTERN.fullmatch(name):
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
        _make_private_dir(path)
    return path


def _make_private_dir(path: Path) -> None:
    """Create `path` 0700, or accept it if it is already a folder of ours closed to others."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise WireError(
            f"cannot create runtime folder {path}: {exc.strerror}; "
            "set CA_SERVER_RUNTIME_DIR to a writable folder"
        ) from exc
    fd = _open_nofollow(path, os.O_RDONLY | os.O_DIRECTORY, what="runtime folder")
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    fix = "set CA_SERVER_RUNTIME_DIR to a folder of your own"
    if info.st_uid != os.geteuid():
        raise UnsafePathError(f"runtime folder {path} belongs to uid {info.st_uid}, not you; {fix}")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise UnsafePathError(
            f"runtime folder {path} is open to other users (mode "
            f"{stat.S_IMODE(info.st_mode):o}); chmod 700 it, or {fix}"
        )


def _open_nofollow(path: Path, flags: int, *, what: str) -> int:
    """os.open with O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC; a symlink becomes UnsafePathError."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePathError(
                f"{what} {path} is a symbolic link or not a folder; remove it and retry"
            ) from None
        raise


def open_private_file(path: Path, flags: int, mode: int = 0o600, *, what: str = "file") -> int:
    """Open `path` (os.open `flags`, O_CREAT allowed) refusing symlinks, FIFOs, devices and
    files of other users with UnsafePathError. Returns the descriptor, left non-blocking (a
    regular file ignores that). FileNotFoundError passes through."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"{what} {path} is a symbolic link; refusing it") from None
        raise
    try:
        check_private_file(os.fstat(fd), path, what=what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_private_file(info: os.stat_result, path: Path, *, what: str = "file") -> None:
    """Raise UnsafePathError unless `info` is a regular file owned by this user."""
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePathError(f"{what} {path} is not a regular file; remove it and retry")
    if info.st_uid != os.geteuid():
        raise UnsafePathError(
            f"{what} {path} belongs to uid {info.st_uid}, not to you; remove it as that user "
            "(or root), or pick another --name"
        )


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
