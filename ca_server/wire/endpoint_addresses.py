"""Control endpoint addresses: how an `ipc://` or `tcp://` address is read, which ones the daemon
may bind (`check_bind_endpoint`, the bind policy: local only unless `allow_remote`), removing the
socket file a dead daemon left (`remove_stale_ipc_socket`), and opening a ZeroMQ socket suited to
an address. Shared by `control_endpoint` and `control_client`; import the public names through
`control`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat

import zmq

from ca_server.wire.errors import EndpointRefusedError, UnsafePathError, WireError
from ca_server.wire.paths import IPC_PATH_MAX_BYTES

# The public module's name, so log filters set on `ca_server.wire.control` keep working.
logger = logging.getLogger("ca_server.wire.control")


def _ipc_path(endpoint: str) -> str | None:
    return endpoint[len("ipc://") :] if endpoint.startswith("ipc://") else None


def _split_tcp_address(address: str) -> tuple[str, str]:
    if address.startswith("["):
        host, sep, rest = address[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return (host, port) if sep else ("", "")
    host, _, port = address.rpartition(":")
    return host, port


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or "*": may be reachable from the network


def check_bind_endpoint(endpoint: str, *, allow_remote: bool = False) -> str:
    """Return `endpoint` if the daemon may bind it, else raise EndpointRefusedError.

    Allowed: `ipc:///path` (file permissions guard it), `inproc://name`, and
    `tcp://127.0.0.1|localhost|[::1]:PORT` (PORT may be `*`). Anything reachable from other hosts
    needs `allow_remote=True`.
    """
    usage = "use ipc:///path/to/socket or tcp://127.0.0.1:PORT"
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise EndpointRefusedError(f"invalid control endpoint {endpoint!r}; {usage}")
    scheme, _, address = endpoint.partition("://")
    if scheme == "ipc":
        if not address:
            raise EndpointRefusedError(f"control endpoint {endpoint!r} names no socket; {usage}")
        if len(os.fsencode(address)) > IPC_PATH_MAX_BYTES:
            raise EndpointRefusedError(
                f"ipc socket path {address} is longer than {IPC_PATH_MAX_BYTES} bytes; "
                "use a shorter folder (CA_SERVER_RUNTIME_DIR) or tcp://127.0.0.1:PORT"
            )
        if address.startswith("@") and not allow_remote:
            raise EndpointRefusedError(
                f"refusing abstract ipc endpoint {endpoint}: it has no file permissions, so any "
                "local user could steer the daemon; use a socket path, or pass --allow-remote"
            )
        return endpoint
    if scheme == "inproc":
        return endpoint
    if scheme != "tcp":
        if allow_remote:
            return endpoint
        raise EndpointRefusedError(f"refusing {scheme}:// control endpoint {endpoint}; {usage}")
    host, port = _split_tcp_address(address)
    if not host or not (port == "*" or (port.isdigit() and 0 < int(port) < 65536)):
        raise EndpointRefusedError(f"invalid tcp control endpoint {endpoint!r}; {usage}")
    if _is_loopback_host(host):
        return endpoint
    if allow_remote:
        logger.warning(
            "control endpoint %s is reachable from other hosts (CURVE: key holders only)", endpoint
        )
        return endpoint
    raise EndpointRefusedError(
        f"refusing to bind control endpoint {endpoint}: {host} is not a loopback address, so "
        "other hosts could steer the daemon; bind tcp://127.0.0.1:PORT, or pass --allow-remote"
    )


def remove_stale_ipc_socket(endpoint: str) -> bool:
    """Delete the socket file an ipc endpoint left behind; True if one was removed.

    Call it only while holding the ring's lock: binding over a live daemon's socket file would
    silently steal its endpoint. A path that exists but is not a socket is left alone (WireError).
    """
    path = _ipc_path(endpoint)
    if path is None or path.startswith("@"):
        return False
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(info.st_mode):
        raise WireError(f"{path} exists and is not a socket; refusing to delete it")
    if info.st_uid != os.geteuid():
        raise UnsafePathError(
            f"ipc socket {path} belongs to uid {info.st_uid}, not to you; refusing to delete it: "
            "pick another --control path"
        )
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _new_socket(kind: int, endpoint: str, context: zmq.Context | None = None) -> zmq.Socket:
    sock = (context or zmq.Context.instance()).socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if "://[" in endpoint:
        sock.setsockopt(zmq.IPV6, 1)
    return sock
