"""The wire's branch of the exception tree (`ca_server.errors`), and the control error codes.

Each message says what happened and what to do about it, in one line, because these messages
end up on a VJ's terminal or in Scope's log. Foreign errors (OSError, zmq.ZMQError, msgpack's
exceptions) are mapped to these at the boundary and never escape the wire package. Each class
carries the exit code a command ends with; a `ControlError` takes its code from its `ErrorCode`.
"""

from __future__ import annotations

import enum

from ca_server.errors import CAServerError
from ca_server.exit_codes import ExitCode


class ErrorCode(enum.StrEnum):
    """The `error.code` values a daemon sends, each with the exit code `ca-server ctl` ends with;
    clients may meet codes newer than this list (they exit 1)."""

    exit_code: ExitCode

    def __new__(cls, value: str, exit_code: ExitCode) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.exit_code = exit_code
        return member

    # not msgpack, not a map, missing or wrongly typed envelope field
    BAD_MESSAGE = "bad_message", ExitCode.BAD_ARGUMENT
    BAD_VERSION = "bad_version", ExitCode.BAD_ARGUMENT
    UNKNOWN_OP = "unknown_op", ExitCode.BAD_ARGUMENT
    # wrong type, NaN/inf, out of range, too long, unknown argument
    BAD_ARGS = "bad_args", ExitCode.BAD_ARGUMENT
    TOO_LARGE = "too_large", ExitCode.BAD_ARGUMENT
    UNKNOWN_PRESET = "unknown_preset", ExitCode.BAD_ARGUMENT
    INTERNAL = "internal", ExitCode.INTERNAL  # the daemon's handler failed; see the daemon's log
    UNAVAILABLE = "unavailable", ExitCode.UNAVAILABLE  # no daemon answered (raised client-side)


def exit_code_for(code: str) -> ExitCode:
    """The exit code `ca-server ctl` ends with for error `code` (1 for a code it does not know)."""
    known = ErrorCode._value2member_map_.get(code)
    return known.exit_code if isinstance(known, ErrorCode) else ExitCode.UNEXPECTED


class WireError(CAServerError):
    """Base of every error raised by `ca_server.wire`."""

    exit_code = ExitCode.CANNOT_CREATE


class UnsafePathError(WireError):
    """A runtime, ring or key path is a symlink, a FIFO, or another user's: refused, untouched."""


class RingError(WireError):
    """A shared-memory ring could not be created, attached or read."""


class RingUnavailableError(RingError):
    """A reader cannot attach to the ring (absent, unreadable, or not one of ours)."""

    exit_code = ExitCode.UNAVAILABLE


class RingNotFoundError(RingUnavailableError):
    """No ring exists at the expected path (the daemon is not running, or uses another name)."""


class RingLayoutError(RingUnavailableError):
    """The file is not a ring of ours, or has a layout version this code cannot read."""


class ShmTooSmallError(RingError):
    """The shared-memory filesystem has no room for the ring."""

    def __init__(self, message: str, *, needed_bytes: int = 0, available_bytes: int = 0) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes


class RingInUseError(RingError):
    """Another live writer holds the lock for this ring name."""

    exit_code = ExitCode.IN_USE


class RingTruncatedError(RingError):
    """The ring file shrank under a running writer (another process truncated it)."""

    exit_code = ExitCode.UNEXPECTED


class EndpointRefusedError(WireError):
    """A control endpoint was refused by policy (for example a non-loopback TCP bind)."""

    exit_code = ExitCode.CONFIG


class ControlError(WireError):
    """A control call failed; `code` is the protocol's error code (an `ErrorCode` value), which
    also decides `exit_code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code_for(code)


class DaemonUnavailableError(ControlError):
    """No daemon answered within the timeout (absent, frozen, or restarting)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)
