"""Deliver the forwarder's ops to the daemon: non-blocking, within a send budget, never raising.

Scope's tempo modulation can change a `modulatable` field on every call (hundreds a second),
and every message costs the daemon a little of its frame budget. `ControlLink` therefore sends
from a token bucket: `burst` ops at once (a session start sets every field together), then at
most `rate_hz` a second in total. Values are coalesced per field before they reach the bucket
(the forwarder keeps only the newest wanted value), and the least recently sent field goes
first, so a modulated field cannot starve the others and the last value of a drag is always
sent once the budget allows. An op the socket cannot take is warned about once and dropped
rather than retried forever, so one bad value never blocks the ones after it.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ca_scope_client.control_forwarder import ControlForwarder, ControlOp
from ca_server.wire.control import ControlClient
from ca_server.wire.errors import ControlError

logger = logging.getLogger("ca_scope_client")

SEND_RATE_HZ = 60.0
SEND_BURST = 5  # every value field plus a reseed
CONTROL_RETRY_S = 0.02
MAX_IN_FLIGHT = 256


class ControlLink:
    """Ops from Scope's parameters to one daemon's control socket, at most `rate_hz` a second.

    `warn(line)` reports a problem (the caller logs each distinct line once). Times are the
    caller's clock in seconds, so tests can drive the budget with a fake clock.
    """

    def __init__(
        self,
        warn: Callable[[str], None],
        *,
        rate_hz: float = SEND_RATE_HZ,
        burst: int = SEND_BURST,
    ) -> None:
        self.forwarder = ControlForwarder()
        self._warn = warn
        self._rate_hz = rate_hz
        self._burst = float(burst)
        self._tokens = float(burst)
        self._refilled_s: float | None = None
        self._next_attempt_s = float("-inf")
        self._in_flight: dict[int, ControlOp] = {}
        self.ops_sent: collections.Counter[str] = collections.Counter()
        self.ops_refused: collections.Counter[str] = collections.Counter()

    def observe(self, params: Mapping[str, Any]) -> None:
        """Take one call's parameters; ignored values are warned about once each."""
        self.forwarder.observe(params)
        for why in self.forwarder.rejected:
            self._warn(f"ignored parameter: {why}")
        self.forwarder.rejected.clear()

    def new_daemon(self) -> None:
        """A (re)started daemon knows nothing we sent: send every wanted value again."""
        self.forwarder.forget_sent()
        self._in_flight.clear()
        self._next_attempt_s = float("-inf")

    def exchange(self, client: ControlClient, now: float) -> None:
        """Send what is pending and the budget allows, then read the replies; never blocks."""
        if now >= self._next_attempt_s:
            self._send_pending(client, now)
        self._drain_replies(client)

    def _refill(self, now: float) -> None:
        if self._refilled_s is not None:
            elapsed_s = max(0.0, now - self._refilled_s)
            self._tokens = min(self._burst, self._tokens + elapsed_s * self._rate_hz)
        self._refilled_s = now

    def _send_pending(self, client: ControlClient, now: float) -> None:
        self._refill(now)
        for op in self.forwarder.pending():
            if self._tokens < 1.0:
                return
            try:
                request_id = client.send(op.op, **op.args)
            except ControlError as exc:  # refused before sending: retrying cannot help
                self._warn(f"not sending {op.op} {dict(op.args)}: {exc}")
                self.forwarder.mark_sent(op)
                continue
            except Exception as exc:  # e.g. a value msgpack cannot encode: drop it, go on
                self._warn(f"not sending {op.op} {dict(op.args)}: {type(exc).__name__}: {exc}")
                self.forwarder.mark_sent(op)
                continue
            if request_id < 0:  # not connected yet, or the daemon stopped reading
                self._next_attempt_s = now + CONTROL_RETRY_S
                return
            self._tokens -= 1.0
            self.forwarder.mark_sent(op)
            self._in_flight[request_id] = op
            self.ops_sent[op.op] += 1
            if len(self._in_flight) > MAX_IN_FLIGHT:
                self._in_flight.pop(next(iter(self._in_flight)))

    def _drain_replies(self, client: ControlClient) -> None:
        try:
            replies = client.poll_replies()
        except Exception as exc:
            logger.debug("control replies unreadable: %s", exc)
            return
        for reply in replies:
            op = self._in_flight.pop(reply.id, None) if reply.id is not None else None
            if reply.ok or op is None:
                continue
            self.ops_refused[op.op] += 1
            self._warn(
                f"ca-server refused {op.op} {dict(op.args)}: "
                f"{reply.error_message or reply.error_code}"
            )
