"""The daemon's side of the control channel: `ControlEndpoint`, a bound ROUTER that answers every
request through a table of handlers, caches replies by `(client, id)` so a retried request is
applied once, and never raises on bad input. It is a true boundary: no exception of any kind
leaves `poll`, and `poll` stops serving when its time budget is spent, so a flood of requests
waits for the next tick instead of freezing the frame loop. A TCP endpoint requires CURVE
(`control_keys`): a peer without the client key gets nothing, not even an error reply.
Import it through `control`.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgpack
import zmq
import zmq.auth.thread

from ca_server.wire.control_keys import ServerKeys, ensure_server_keys, uses_curve
from ca_server.wire.endpoint_addresses import _ipc_path, _new_socket, check_bind_endpoint
from ca_server.wire.errors import ControlError, EndpointRefusedError, WireError
from ca_server.wire.message_limits import brief
from ca_server.wire.protocol import (
    MAX_MESSAGE_BYTES,
    OPS,
    ErrorCode,
    OpSpec,
    Reply,
    Request,
    RequestError,
    decode_request,
    encode_reply,
    error_reply,
)

# The public module's name, so log filters set on `ca_server.wire.control` keep working.
logger = logging.getLogger("ca_server.wire.control")

Handler = Callable[[Mapping[str, Any]], Any]
REPLAY_CACHE_SIZE = 256
# libzmq drops a connection that sends a bigger frame (its limit is per frame); between our
# limit and this one the sender gets a `too_large` reply instead of silence.
RECEIVE_LIMIT_FACTOR = 4


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
        curve_keys: ServerKeys | None = None,
    ) -> None:
        """`curve_keys` (TCP endpoints only) default to `control_keys.ensure_server_keys()`,
        made in the runtime folder on first use."""
        check_bind_endpoint(endpoint, allow_remote=allow_remote)
        unknown = sorted(set(handlers) - set(ops))
        if unknown:
            raise ValueError(
                f"handlers for ops with no OpSpec: {unknown}; add them to the ops table"
            )
        self._handlers = dict(handlers)
        self._ops = ops
        self._max_message_bytes = max_message_bytes
        # (client, id) -> (digest of op and args, encoded reply)
        self._replies: collections.OrderedDict[tuple[Any, int], tuple[bytes, bytes]] = (
            collections.OrderedDict()
        )
        self._failures_logged: set[str] = set()
        self._replay_cache_size = replay_cache_size
        self._closed = False
        self._ipc_inode: int | None = None
        ipc_path = _ipc_path(endpoint)
        if ipc_path is not None and not ipc_path.startswith("@") and os.path.lexists(ipc_path):
            raise EndpointRefusedError(
                f"ipc socket {ipc_path} already exists: another daemon may be serving it; take the "
                "ring lock first, then call remove_stale_ipc_socket() to clear a dead one's socket"
            )
        self._context: zmq.Context | None = None
        self._authenticator: zmq.auth.thread.ThreadAuthenticator | None = None
        if uses_curve(endpoint):
            self._start_curve(curve_keys or ensure_server_keys())
        self._socket = _new_socket(zmq.ROUTER, endpoint, self._context)
        try:
            self._socket.setsockopt(zmq.MAXMSGSIZE, RECEIVE_LIMIT_FACTOR * max_message_bytes)
            self._socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
            if self._authenticator is not None:
                self._socket.curve_secretkey = self._keys.server_secret
                self._socket.curve_publickey = self._keys.server_public
                self._socket.curve_server = True
            _bind_private(self._socket, endpoint, ipc_path)
        except zmq.ZMQError as exc:
            self._socket.close(linger=0)
            self._stop_curve()
            self._closed = True
            raise WireError(f"cannot bind control endpoint {endpoint}: {exc.strerror}") from None
        self.endpoint: str = self._socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._ipc_path = ipc_path if ipc_path and not ipc_path.startswith("@") else None
        if self._ipc_path is not None:
            self._ipc_inode = os.lstat(self._ipc_path).st_ino

    def poll(
        self, timeout_ms: int = 0, *, max_requests: int = 1000, budget_s: float | None = None
    ) -> int:
        """Wait up to `timeout_ms` for a request, then answer pending ones until `max_requests`
        are answered or `budget_s` seconds are spent (at least one is answered; the rest wait
        for the next call), so a flood cannot starve the frame loop. Returns how many were
        handled. Never raises."""
        if self._closed:
            return 0
        stop_at = None if budget_s is None else time.monotonic() + budget_s
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
            try:
                self._answer(frames)
            except Exception as exc:  # the boundary: log each kind once, keep serving
                self._log_failure_once(exc)
            if stop_at is not None and time.monotonic() >= stop_at:
                break
        return handled

    def _log_failure_once(self, exc: Exception) -> None:
        kind = type(exc).__name__
        if kind not in self._failures_logged:
            self._failures_logged.add(kind)
            logger.error(
                "control request dropped: %s (%s); later ones of this kind drop quietly",
                kind,
                brief(exc),
            )

    def _answer(self, frames: list[bytes]) -> None:
        # A DEALER sends [payload]; a REQ sends ["", payload]; the reply mirrors the envelope.
        envelope, body = frames[:1], frames[1:]
        if len(body) >= 2 and body[0] == b"":
            envelope, body = frames[:2], frames[2:]
        if len(body) != 1:
            reply = encode_reply(  # a frame over the receive limit never gets here (see above)
                error_reply(
                    None,
                    ErrorCode.BAD_MESSAGE,
                    f"expected one message frame, got {len(body)}; send one msgpack map",
                )
            )
        else:
            try:
                reply = self._serve(envelope[0], body[0])
            except Exception as exc:
                self._log_failure_once(exc)
                reply = encode_reply(
                    error_reply(None, ErrorCode.INTERNAL, "request failed inside the daemon")
                )
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
        digest = _digest(request)
        cached = self._replies.get(key)
        if cached is not None:
            if cached[0] != digest:
                return encode_reply(
                    error_reply(
                        request.id,
                        ErrorCode.BAD_MESSAGE,
                        f"request id {request.id} was already used by this client for another "
                        "request; use a new id for each new request",
                    )
                )
            self._replies.move_to_end(key)
            return cached[1]
        reply = self._encode(self._dispatch(request))
        self._replies[key] = (digest, reply)
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
                f"op {brief(request.op)} is not served by this daemon; it serves: {served}",
            )
        try:
            result = handler(request.args)
        except ControlError as exc:
            return error_reply(request.id, exc.code, exc.message)
        except Exception as exc:
            logger.exception("control op %s failed", brief(request.op))
            return error_reply(
                request.id,
                ErrorCode.INTERNAL,
                f"{request.op} failed inside the daemon ({type(exc).__name__}: "
                f"{brief(str(exc))}); see the daemon's log",
            )
        return Reply(id=request.id, ok=True, result=result)

    def _encode(self, reply: Reply) -> bytes:
        try:
            return encode_reply(reply)
        except Exception as exc:
            logger.exception("control reply %s could not be encoded", brief(reply.id))
            return encode_reply(
                error_reply(
                    reply.id, ErrorCode.INTERNAL, f"reply could not be encoded: {brief(str(exc))}"
                )
            )

    def close(self) -> None:
        """Close the socket (linger 0) and remove its ipc socket file; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._socket.close(linger=0)
        self._stop_curve()
        if self._ipc_path is not None:
            try:
                # Only our own file: a newer daemon may already have bound the same path.
                if os.lstat(self._ipc_path).st_ino == self._ipc_inode:
                    os.unlink(self._ipc_path)
            except FileNotFoundError:
                pass

    def _start_curve(self, keys: ServerKeys) -> None:
        # A private context: its ZAP handler (the authenticator thread) must not answer for
        # other sockets of this process, and two endpoints must not fight over its address.
        self._keys = keys
        self._context = zmq.Context()
        self._authenticator = zmq.auth.thread.ThreadAuthenticator(self._context, log=logger)
        self._authenticator.start()
        self._authenticator.configure_curve_callback("*", _OneClientKey(keys.client_public))

    def _stop_curve(self) -> None:
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def __enter__(self) -> ControlEndpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _OneClientKey:
    """The authenticator's credentials provider: exactly one client public key may connect."""

    def __init__(self, client_public_z85: bytes) -> None:
        self._allowed = client_public_z85

    def callback(self, _domain: str, key: bytes) -> bool:
        return key == self._allowed  # pyzmq hands the key over in z85, as it is stored


def _digest(request: Request) -> bytes:
    """What a request asks for (op and validated args), so a reused id is told apart."""
    body = msgpack.packb([request.op, sorted(request.args.items())], use_bin_type=True)
    return hashlib.blake2b(body, digest_size=16).digest()


def _bind_private(sock: zmq.Socket, endpoint: str, ipc_path: str | None) -> None:
    """Bind; an ipc socket file is made 0600 whatever the umask (the bind creates it in this
    thread, so the umask set around it applies)."""
    if ipc_path is None or ipc_path.startswith("@"):
        sock.bind(endpoint)
        return
    old_umask = os.umask(0o177)
    try:
        sock.bind(endpoint)
    finally:
        os.umask(old_umask)
    os.chmod(ipc_path, 0o600, follow_symlinks=False)
