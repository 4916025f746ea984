"""The clients' side of the control channel: `ControlClient`, a DEALER that never hangs. Every wait
has a deadline, the socket lingers 0 and queues nothing towards an absent daemon (IMMEDIATE), and a
timed-out socket is closed and reopened before the retry (the zguide's Lazy Pirate). Import it
through `control`.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import secrets
import time
from collections.abc import Mapping
from typing import Any

import zmq

from ca_server.wire.control_keys import ClientKeys, load_client_keys, uses_curve
from ca_server.wire.endpoint_addresses import _new_socket
from ca_server.wire.errors import ControlError, DaemonUnavailableError, WireError
from ca_server.wire.protocol import (
    OPS,
    ErrorCode,
    OpSpec,
    Reply,
    decode_reply,
    encode_request,
)

# The public module's name, so log filters set on `ca_server.wire.control` keep working.
logger = logging.getLogger("ca_server.wire.control")

MAX_PENDING_SENDS = 1024
CLIENT_SEND_HWM = 64  # fire-and-forget sends beyond this many queued are dropped, not blocked on


class ControlClient:
    """A client of one daemon's control endpoint over a DEALER socket.

    `call` waits for its reply (at most `timeout_s` per attempt, `retries` more attempts after
    the first, each on a fresh socket); `send` and `poll_replies` never block, for callers such
    as the Scope plugin that must not wait on the network. A tcp:// endpoint needs the daemon's
    CURVE key: `curve_keys`, else the file `control_keys.client_key_path()` names (WireError
    says how to get it when missing).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout_s: float = 1.0,
        retries: int = 1,
        ops: Mapping[str, OpSpec] = OPS,
        curve_keys: ClientKeys | None = None,
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
        self._curve_keys = curve_keys
        if uses_curve(endpoint) and curve_keys is None:
            self._curve_keys = load_client_keys()
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
            if uses_curve(self.endpoint) and self._curve_keys is not None:
                sock.curve_serverkey = self._curve_keys.server_public
                sock.curve_publickey = self._curve_keys.client_public
                sock.curve_secretkey = self._curve_keys.client_secret
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
        hint = " (or it refused our CURVE key: copy its control.key again)"
        raise DaemonUnavailableError(
            f"no ca-server daemon answered at {self.endpoint} within {total_s:g} s"
            f"{hint if uses_curve(self.endpoint) else ''}; start one with `ca-server serve`"
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
