"""ZeroMQ CURVE keys for TCP control: who may talk to a daemon over the network.

An `ipc://` endpoint is guarded by its 0700 folder; a TCP port is open to whoever can reach it,
so TCP control is encrypted and authenticated with CURVE. The daemon keeps two files in the
runtime folder, both mode 0600, made on its first TCP start and reused after:

    <rundir>/control-server.key   the daemon's key pair and the one client key it accepts
    <rundir>/control.key          what a client needs: the daemon's public key, the client pair

`ctl`, the Scope plugin and any `ControlClient` read `control.key` from `$CA_SERVER_CONTROL_KEY`
if set, else from the runtime folder; to steer a daemon on another machine, copy that file
there (it is a password: keep it 0600). Delete both files to revoke every copy. Each file holds
`name = z85-text` lines.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq

from ca_server.wire.errors import WireError
from ca_server.wire.paths import open_private_file, runtime_dir

CONTROL_KEY_ENV = "CA_SERVER_CONTROL_KEY"
SERVER_KEY_FILE = "control-server.key"
CLIENT_KEY_FILE = "control.key"
_KEY_FILE_MAX_BYTES = 4096
_Z85_KEY_CHARS = 40


@dataclass(frozen=True, repr=False)
class ServerKeys:
    """The daemon's CURVE pair and the client public key it accepts (z85 bytes, 40 each)."""

    server_public: bytes
    server_secret: bytes
    client_public: bytes


@dataclass(frozen=True, repr=False)
class ClientKeys:
    """What a client needs to pass a daemon's CURVE handshake (z85 bytes, 40 each)."""

    server_public: bytes
    client_public: bytes
    client_secret: bytes


def uses_curve(endpoint: str) -> bool:
    """True for endpoints other hosts' processes could reach (tcp:// and the like)."""
    return not endpoint.startswith(("ipc://", "inproc://"))


def client_key_path() -> Path:
    """`$CA_SERVER_CONTROL_KEY`, else `<rundir>/control.key`."""
    override = os.environ.get(CONTROL_KEY_ENV)
    return Path(override) if override else runtime_dir() / CLIENT_KEY_FILE


def load_client_keys(path: Path | None = None) -> ClientKeys:
    """Read a client key file (default `client_key_path()`); WireError says how to get one."""
    path = path or client_key_path()
    fields = _read_key_file(path)
    try:
        return ClientKeys(fields["server_public"], fields["client_public"], fields["client_secret"])
    except KeyError as exc:
        raise WireError(f"control key file {path} lacks {exc.args[0]}; copy it again") from None


def ensure_server_keys(folder: Path | None = None) -> ServerKeys:
    """The daemon's keys from `folder` (default: the runtime folder), made on first use."""
    folder = folder or runtime_dir()
    server_file, client_file = folder / SERVER_KEY_FILE, folder / CLIENT_KEY_FILE
    if os.path.lexists(server_file) and os.path.lexists(client_file):
        fields = _read_key_file(server_file)
        try:
            return ServerKeys(
                fields["server_public"], fields["server_secret"], fields["client_public"]
            )
        except KeyError as exc:
            raise WireError(
                f"control key file {server_file} lacks {exc.args[0]}; delete {server_file} and "
                f"{client_file} and start the daemon again"
            ) from None
    if not _CURVE_AVAILABLE:
        raise WireError("this libzmq has no CURVE support; use an ipc:// control endpoint")
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    _write_key_file(
        client_file,
        server_public=server_public,
        client_public=client_public,
        client_secret=client_secret,
    )
    _write_key_file(
        server_file,
        server_public=server_public,
        server_secret=server_secret,
        client_public=client_public,
    )
    return ServerKeys(server_public, server_secret, client_public)


_CURVE_AVAILABLE = zmq.has("curve")


def _read_key_file(path: Path) -> dict[str, bytes]:
    how_to_fix = (
        f"copy the daemon's {CLIENT_KEY_FILE} there, or point {CONTROL_KEY_ENV} at your copy"
    )
    try:
        fd = open_private_file(path, os.O_RDONLY)
    except FileNotFoundError:
        raise WireError(
            f"no control key at {path}: a tcp:// control endpoint needs the daemon's key; "
            + how_to_fix
        ) from None
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            raise WireError(f"control key file {path} is readable by others; chmod 600 it")
        text = os.read(fd, _KEY_FILE_MAX_BYTES).decode("ascii", "replace")
    finally:
        os.close(fd)
    fields: dict[str, bytes] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        value = value.strip()
        if sep and len(value) == _Z85_KEY_CHARS:
            fields[key.strip()] = value.encode("ascii")
    return fields


def _write_key_file(path: Path, **keys: bytes) -> None:
    """Write `keys` to a new 0600 file beside `path`, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    lines = [f"# ca-server control key ({path.name}): keep it private, mode 0600"]
    lines += [f"{name} = {value.decode('ascii')}" for name, value in keys.items()]
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, ("\n".join(lines) + "\n").encode("ascii"))
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
