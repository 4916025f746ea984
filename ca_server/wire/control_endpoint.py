"""The daemon's side of the control channel: `ControlEndpoint`, a bound ROUTER that answers every
request through a table of handlers, caches replies by `(client, id)` so a retried request is
applied once, and never raises on bad input. Import it through `control`.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import zmq

from ca_server.wire.endpoint_addresses import _ipc_path, _new_socket, check_bind_endpoint
from ca_server.wire.errors import ControlError, EndpointRefusedError, WireError
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
