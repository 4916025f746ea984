"""The wire's exception tree: every failure a ring or control client can meet, as one type each.

Each message says what happened and what to do about it, in one line, because these messages
end up on a VJ's terminal or in Scope's log. Foreign errors (OSError, zmq.ZMQError, msgpack's
exceptions) are mapped to these at the boundary and never escape the wire package.
"""

from __future__ import annotations


class WireError(Exception):
    """Base of every error raised by `ca_server.wire`."""


class UnsafePathError(WireError):
    """A runtime, ring or key path is a symlink, a FIFO, or another user's: refused, untouched."""


class RingError(WireError):
    """A shared-memory ring could not be created, attached or read."""


class RingNotFoundError(RingError):
    """No ring exists at the expected path (the daemon is not running, or uses another name)."""


class RingLayoutError(RingError):
    """The file is not a ring of ours, or has a layout version this code cannot read."""


class ShmTooSmallError(RingError):
    """The shared-memory filesystem has no room for the ring."""

    def __init__(self, message: str, *, needed_bytes: int = 0, available_bytes: int = 0) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes


class RingInUseError(RingError):
    """Another live writer holds the lock for this ring name."""


class EndpointRefusedError(WireError):
    """A control endpoint was refused by policy (for example a non-loopback TCP bind)."""


class ControlError(WireError):
    """A control call failed; `code` is the protocol's error code (see `protocol.ErrorCode`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DaemonUnavailableError(ControlError):
    """No daemon answered within the timeout (absent, frozen, or restarting)."""

    def __init__(self, message: str) -> None:
        super().__init__("unavailable", message)
