"""Helpers shared by the control endpoint and client tests: counting handlers and raw msgpack."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgpack


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
