"""Helpers shared by the control endpoint and client tests: counting handlers and raw msgpack."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgpack
import zmq


class Counter:
    """Handlers that count how often each op was applied."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def handler(self, op: str, result: Callable[[Mapping[str, Any]], Any] = dict) -> Any:
        def handle(args: Mapping[str, Any]) -> Any:
            self.calls[op] = self.calls.get(op, 0) + 1
            return result(args)

        return handle


def pack(message: object) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def raw_socket(kind: int, endpoint: str) -> zmq.Socket:
    """A bare ZeroMQ socket (linger 0) connected to `endpoint`, holding the client CURVE key
    from the runtime folder when the endpoint is TCP, as a real client must."""
    sock = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if endpoint.startswith("tcp://"):
        from ca_server.wire.control_keys import load_client_keys

        keys = load_client_keys()
        sock.curve_serverkey = keys.server_public
        sock.curve_publickey = keys.client_public
        sock.curve_secretkey = keys.client_secret
    sock.connect(endpoint)
    return sock
