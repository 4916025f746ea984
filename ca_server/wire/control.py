"""The control channel's sockets: the daemon's ROUTER endpoint and the clients' DEALER.

`ControlEndpoint` binds where the bind policy allows (ipc:// or loopback TCP), answers every
request through a table of handlers and never raises on bad input: a malformed request gets an
error reply or is dropped, a failing handler gets an INTERNAL reply. Replies are cached by
`(client, id)` so a retried request is applied once. `ControlClient` never hangs: every wait
has a deadline, sockets linger 0 and queue nothing towards an absent daemon (IMMEDIATE), and a
timed-out socket is closed and reopened before the retry (the zguide's Lazy Pirate). Both
classes belong to the thread that uses them; ZeroMQ sockets are not thread-safe. The encoding
lives in `protocol`; this module only moves its bytes.
"""

from __future__ import annotations

import collections
import ipaddress
import itertools
import logging
import math
import os
import secrets
import stat
import time
from collections.abc import Callable, Mapping
from typing import Any

import zmq

from ca_server.wire.errors import (
    ControlError,
    DaemonUnavailableError,
    EndpointRefusedError,
    WireError,
)
from ca_server.wire.paths import IPC_PATH_MAX_BYTES
from ca_server.wire.protocol import (
    MAX_MESSAGE_BYTES,
    OPS,
    ErrorCode,
    OpSpec,
    Reply,
    Request,
    RequestError,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    error_reply,
)

logger = logging.getLogger(__name__)

Handler = Callable[[Mapping[str, Any]], Any]
REPLAY_CACHE_SIZE = 256
MAX_PENDING_SENDS = 1024
CLIENT_SEND_HWM = 64  # fire-and-forget sends beyond this many queued are dropped, not blocked on


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
            "control endpoint %s is reachable from other hosts, unauthenticated", endpoint
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
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _new_socket(kind: int, endpoint: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if "://[" in endpoint:
        sock.setsockopt(zmq.IPV6, 1)
    return sock


class ControlEndpoint:
    """The daemon's side of the control channel: a bound ROUTER answering through `handlers`.

    `handlers` maps op names (each needs an `OpSpec` in `ops`) to callables that take the
    validated args and return a msgpack-able result, or raise ControlError for an error reply.
    """

    def __init__(
        self,
        endpoint: str,
        handlers: Mapping[str, Handler],
        *,
        allow_remote: bool = False,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        ops: Mapping[str, OpSpec] = OPS,
        replay_cache_size: int = REPLAY_CACHE_SIZE,
    ) -> None:
        check_bind_endpoint(endpoint, allow_remote=allow_remote)
        unknown = sorted(set(handlers) - set(ops))
        if unknown:
            raise ValueError(
                f"handlers for ops with no OpSpec: {unknown}; add them to the ops table"
            )
        self._handlers = dict(handlers)
        self._ops = ops
        self._max_message_bytes = max_message_bytes
        self._replies: collections.OrderedDict[tuple[Any, int], bytes] = collections.OrderedDict()
        self._replay_cache_size = replay_cache_size
        self._closed = False
        self._ipc_inode: int | None = None
        ipc_path = _ipc_path(endpoint)
        if ipc_path is not None and not ipc_path.startswith("@") and os.path.lexists(ipc_path):
            raise EndpointRefusedError(
                f"ipc socket {ipc_path} already exists: another daemon may be serving it; take the "
                "ring lock first, then call remove_stale_ipc_socket() to clear a dead one's socket"
            )
        self._socket = _new_socket(zmq.ROUTER, endpoint)
        try:
            self._socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
            self._socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
            self._socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close(linger=0)
            self._closed = True
            raise WireError(f"cannot bind control endpoint {endpoint}: {exc.strerror}") from None
        self.endpoint: str = self._socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._ipc_path = ipc_path if ipc_path and not ipc_path.startswith("@") else None
        if self._ipc_path is not None:
            self._ipc_inode = os.lstat(self._ipc_path).st_ino

    def poll(self, timeout_ms: int = 0, *, max_requests: int = 1000) -> int:
        """Wait up to `timeout_ms` for a request, then answer every pending one (at most
        `max_requests`, so a flood cannot starve the frame loop); returns how many were handled.
        Never raises for anything a client sends."""
        if self._closed:
            return 0
        try:
            if timeout_ms > 0 and not self._socket.poll(timeout_ms, zmq.POLLIN):
                return 0
        except zmq.ZMQError as exc:
            logger.warning("control endpoint poll failed: %s", exc)
            return 0
        handled = 0
        while handled < max_requests:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError as exc:
                logger.warning("control endpoint receive failed: %s", exc)
                break
            handled += 1
            self._answer(frames)
        return handled

    def _answer(self, frames: list[bytes]) -> None:
        # A DEALER sends [payload]; a REQ sends ["", payload]; the reply mirrors the envelope.
        envelope, body = frames[:1], frames[1:]
        if len(body) >= 2 and body[0] == b"":
            envelope, body = frames[:2], frames[2:]
        if len(body) != 1:
            reply = encode_reply(
                error_reply(
                    None,
                    ErrorCode.BAD_MESSAGE,
                    f"expected one message frame, got {len(body)}; send one msgpack map",
                )
            )
        else:
            reply = self._serve(envelope[0], body[0])
        try:
            self._socket.send_multipart([*envelope, reply], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the client went away or stopped reading: drop the reply
            logger.debug("control reply dropped: %s", exc)

    def _serve(self, identity: bytes, data: bytes) -> bytes:
        try:
            request = decode_request(data, max_message_bytes=self._max_message_bytes, ops=self._ops)
        except RequestError as exc:
            logger.debug("bad control request: %s", exc.message)
            return encode_reply(error_reply(exc.request_id, exc.code, exc.message))
        except ControlError as exc:
            return encode_reply(error_reply(None, exc.code, exc.message))
        key = (request.client if request.client is not None else identity, request.id)
        cached = self._replies.get(key)
        if cached is not None:
            self._replies.move_to_end(key)
            return cached
        reply = self._encode(self._dispatch(request))
        self._replies[key] = reply
        while len(self._replies) > self._replay_cache_size:
            self._replies.popitem(last=False)
        return reply

    def _dispatch(self, request: Request) -> Reply:
        handler = self._handlers.get(request.op)
        if handler is None:
            served = ", ".join(sorted(self._handlers))
            return error_reply(
                request.id,
                ErrorCode.UNKNOWN_OP,
                f"op {request.op!r} is not served by this daemon; it serves: {served}",
            )
        try:
            result = handler(request.args)
        except ControlError as exc:
            return error_reply(request.id, exc.code, exc.message)
        except Exception as exc:
            logger.exception("control op %r failed", request.op)
            return error_reply(
                request.id,
                ErrorCode.INTERNAL,
                f"{request.op} failed inside the daemon ({type(exc).__name__}: {exc}); "
                "see the daemon's log",
            )
        return Reply(id=request.id, ok=True, result=result)

    def _encode(self, reply: Reply) -> bytes:
        try:
            return encode_reply(reply)
        except Exception as exc:
            logger.exception("control reply %r could not be encoded", reply.id)
            return encode_reply(
                error_reply(reply.id, ErrorCode.INTERNAL, f"reply could not be encoded: {exc}")
            )

    def close(self) -> None:
        """Close the socket (linger 0) and remove its ipc socket file; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._socket.close(linger=0)
        if self._ipc_path is not None:
            try:
                # Only our own file: a newer daemon may already have bound the same path.
                if os.lstat(self._ipc_path).st_ino == self._ipc_inode:
                    os.unlink(self._ipc_path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> ControlEndpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ControlClient:
    """A client of one daemon's control endpoint over a DEALER socket.

    `call` waits for its reply (at most `timeout_s` per attempt, `retries` more attempts after
    the first, each on a fresh socket); `send` and `poll_replies` never block, for callers such
    as the Scope plugin that must not wait on the network.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout_s: float = 1.0,
        retries: int = 1,
        ops: Mapping[str, OpSpec] = OPS,
    ) -> None:
        if not isinstance(endpoint, str) or "://" not in endpoint:
            raise WireError(
                f"invalid control endpoint {endpoint!r}; use ipc:///path or tcp://HOST:PORT"
            )
        if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
        self.endpoint = endpoint
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self._ops = ops
        self._client_token = secrets.token_hex(8)
        self._ids = itertools.count(1)
        self._pending_sends: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._arrived: list[Reply] = []
        self._socket: zmq.Socket | None = None
        self._socket = self._open_socket()

    def _open_socket(self) -> zmq.Socket:
        sock = _new_socket(zmq.DEALER, self.endpoint)
        try:
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.SNDHWM, CLIENT_SEND_HWM)
            sock.connect(self.endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise WireError(
                f"cannot connect to control endpoint {self.endpoint}: {exc.strerror}"
            ) from None
        return sock

    def _reset_socket(self) -> None:
        # Lazy Pirate: a socket that timed out may hold a request for a dead peer; start afresh.
        if self._socket is not None:
            self._socket.close(linger=0)
        self._pending_sends.clear()
        self._socket = self._open_socket()

    def call(self, op: str, **args: Any) -> Any:
        """Send `op` and return its result. Raises ControlError for an error reply (or for args
        that break the op's spec, before sending) and DaemonUnavailableError when no reply came
        within about `timeout_s * (retries + 1)` seconds."""
        if self._socket is None:
            raise WireError("this ControlClient is closed; make a new one")
        request_id = next(self._ids)
        payload = encode_request(op, args, request_id, client=self._client_token, ops=self._ops)
        for attempt in range(self.retries + 1):
            deadline = time.monotonic() + self.timeout_s
            if self._send_before(payload, deadline):
                reply = self._wait_for(request_id, deadline)
                if reply is not None:
                    return self._result_of(reply)
            if attempt < self.retries:
                logger.debug("no reply to %s from %s; retrying on a new socket", op, self.endpoint)
            self._reset_socket()
        total_s = self.timeout_s * (self.retries + 1)
        raise DaemonUnavailableError(
            f"no ca-server daemon answered at {self.endpoint} within {total_s:g} s; "
            "start one with `ca-server serve`"
        )

    def _send_before(self, payload: bytes, deadline: float) -> bool:
        assert self._socket is not None
        while True:
            try:
                self._socket.send(payload, zmq.NOBLOCK)
                return True
            except zmq.Again:  # not connected yet (IMMEDIATE) or the queue is full
                pass
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not self._socket.poll(remaining_ms, zmq.POLLOUT):
                return False

    def _wait_for(self, request_id: int, deadline: float) -> Reply | None:
        assert self._socket is not None
        while True:
            remaining_ms = math.ceil((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not self._socket.poll(remaining_ms, zmq.POLLIN):
                return None
            reply = self._receive()
            if reply is None:
                continue
            if reply.id == request_id:
                return reply
            if reply.id in self._pending_sends:
                del self._pending_sends[reply.id]
                self._arrived.append(reply)

    def _receive(self) -> Reply | None:
        """One reply from the socket, or None if none is waiting or it is not a valid reply."""
        assert self._socket is not None
        try:
            data = self._socket.recv(zmq.NOBLOCK)
        except zmq.ZMQError:
            return None
        try:
            return decode_reply(data)
        except ControlError as exc:
            logger.debug("ignoring a malformed reply from %s: %s", self.endpoint, exc.message)
            return None

    @staticmethod
    def _result_of(reply: Reply) -> Any:
        if reply.ok:
            return reply.result
        code, message = reply.error_code or ErrorCode.INTERNAL, reply.error_message or ""
        if code == ErrorCode.UNAVAILABLE:
            raise DaemonUnavailableError(message)
        raise ControlError(code, message)

    def send(self, op: str, **args: Any) -> int:
        """Queue `op` without waiting and return its request id, or -1 if it was dropped because
        no daemon is connected or the queue is full. Args that break the op's spec raise
        ControlError. Replies come back through `poll_replies`."""
        if self._socket is None:
            return -1
        request_id = next(self._ids)
        payload = encode_request(op, args, request_id, client=self._client_token, ops=self._ops)
        try:
            self._socket.send(payload, zmq.NOBLOCK)
        except zmq.ZMQError:
            return -1
        self._pending_sends[request_id] = None
        while len(self._pending_sends) > MAX_PENDING_SENDS:
            self._pending_sends.popitem(last=False)
        return request_id

    def poll_replies(self) -> list[Reply]:
        """Replies that have arrived for `send` requests, oldest first; never blocks."""
        replies, self._arrived = self._arrived, []
        if self._socket is None:
            return replies
        while True:
            try:
                if not self._socket.poll(0, zmq.POLLIN):
                    break
            except zmq.ZMQError:
                break
            reply = self._receive()
            if reply is not None and reply.id in self._pending_sends:
                del self._pending_sends[reply.id]
                replies.append(reply)
        return replies

    def close(self) -> None:
        """Close the socket at once (linger 0), dropping anything unsent; idempotent."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
