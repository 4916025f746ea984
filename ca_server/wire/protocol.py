"""The control protocol, version 1: msgpack envelopes and the table of ops, with no sockets.

Both the daemon (`ControlEndpoint`) and every client (`ControlClient`, the CLI, the Scope plugin)
encode and decode through this module, so the wire format is written once. Every message is one
ZeroMQ frame holding one msgpack map; keys are short ASCII strings, timestamps int nanoseconds:

    request  {"v": 1, "id": <u64>, "op": <str>, "args": {<name>: <value>, ...}, "client": <str>?}
    ok       {"v": 1, "id": <u64>, "ok": true,  "result": <any msgpack value>}
    error    {"v": 1, "id": <u64 | nil>, "ok": false, "error": {"code": <str>, "message": <str>}}

    encode_request("ping", {}, 1) ==
        84 a1 76 01  a2 69 64 01  a2 6f 70 a4 70 69 6e 67  a4 61 72 67 73 80
        map(4) "v"=1  "id"=1      "op"="ping"              "args"={}

Unknown envelope fields are ignored (forward compatible); an unknown op, a different `v`, or
arguments that break the op's `ArgSpec`s (wrong type, NaN/inf, out of range, too long, unknown
name) are refused with an `ErrorCode`. The optional `client` token keys the daemon's replay
cache, so a retried request with the same `(client, id)` is applied once.
"""

from __future__ import annotations

import enum
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from ca_server.wire.errors import ControlError, ErrorCode
from ca_server.wire.message_limits import MAX_NESTING, brief, nesting_exceeds

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (PROTOCOL_VERSION,)
MAX_MESSAGE_BYTES = 65536
MAX_REQUEST_ID = 2**64 - 1
MAX_CLIENT_TOKEN_CHARS = 64


@dataclass(frozen=True)
class ArgSpec:
    """One argument of an op: its msgpack type and the bounds the daemon enforces.

    `type` is one of str, int, float, bool; float arguments also accept ints and refuse NaN/inf.
    `min`/`max` bound numbers (inclusive); `max_len` bounds strings in characters.
    """

    name: str
    type: type
    required: bool = True
    default: Any = None
    min: float | None = None
    max: float | None = None
    max_len: int | None = None
    summary: str = ""


@dataclass(frozen=True)
class OpSpec:
    """One control op: its name, a one-line summary for `--help`, and its arguments."""

    name: str
    summary: str
    args: tuple[ArgSpec, ...] = ()


def _op_table(*specs: OpSpec) -> Mapping[str, OpSpec]:
    return types.MappingProxyType({spec.name: spec for spec in specs})


OPS: Mapping[str, OpSpec] = _op_table(
    OpSpec("hello", "server name and version, protocol versions and the ring's geometry"),
    OpSpec("ping", "liveness check; answers {pong, pid}"),
    OpSpec("status", "current preset, parameters, measured fps and per-stage times"),
    OpSpec("presets", "the presets the daemon can run: name, title, engine and description"),
    OpSpec(
        "preset",
        "switch to a preset by name",
        (ArgSpec("name", str, max_len=64, summary="preset name, as listed by `presets`"),),
    ),
    OpSpec(
        "speed",
        "simulation speed multiplier (0 freezes, 1 is normal)",
        (ArgSpec("value", float, min=0.0, max=8.0, summary="speed multiplier"),),
    ),
    OpSpec(
        "hue",
        "hue shift of the colour palette, in turns",
        (ArgSpec("value", float, min=0.0, max=1.0, summary="hue shift in turns"),),
    ),
    OpSpec(
        "brightness",
        "output brightness gain",
        (ArgSpec("value", float, min=0.0, max=3.0, summary="brightness gain"),),
    ),
    OpSpec(
        "reseed",
        "restart the world from a new random seed",
        (
            ArgSpec(
                "seed",
                int,
                required=False,
                min=0,
                max=2**31 - 1,
                summary="random seed; a fresh one when omitted",
            ),
        ),
    ),
    OpSpec(
        "pause", "freeze: no steps and no new frames; the ring says PAUSED and keeps its heartbeat"
    ),
    OpSpec("resume", "step and publish frames again after `pause`"),
    # The beat clock (ca_server/beat_clock.py). Times are the sender's time.monotonic_ns().
    OpSpec(
        "tempo",
        "set the beat clock's tempo, keeping its phase (0 stops it)",
        (
            ArgSpec("bpm", float, min=0.0, max=400.0, summary="beats per minute; 0: off"),
            ArgSpec("beats_per_bar", int, required=False, min=1, max=16, summary="bar length"),
        ),
    ),
    OpSpec(
        "tap",
        "tap tempo: a beat falls now (two or more taps set the tempo)",
        (ArgSpec("t_ns", int, required=False, min=0, max=2**63 - 1, summary="when, monotonic"),),
    ),
    OpSpec(
        "beat_lock",
        "an outside clock's reading (Scope's tempo sync, Link): position `beat` at `t_ns`",
        (
            ArgSpec("bpm", float, min=20.0, max=400.0, summary="beats per minute"),
            ArgSpec("beat", float, min=-1e9, max=1e9, summary="beat position"),
            ArgSpec("t_ns", int, min=0, max=2**63 - 1, summary="when, monotonic"),
            ArgSpec("beats_per_bar", int, required=False, min=1, max=16, summary="bar length"),
            ArgSpec("source", str, required=False, max_len=16, summary="who sends it"),
        ),
    ),
    OpSpec(
        "beat",
        "how much the picture moves with the beat (× the preset's own amount; 0 off)",
        (ArgSpec("value", float, min=0.0, max=2.0, summary="beat amount"),),
    ),
)


def op_range(op: str) -> tuple[float, float]:
    """The inclusive (min, max) the daemon accepts for `op`'s one numeric argument: the one
    statement of the speed, hue and brightness ranges, which the simulation, the preset files,
    the renderer, the CLI and the Scope schema read."""
    (arg,) = OPS[op].args
    if arg.min is None or arg.max is None:
        raise ValueError(f"op {op!r} has no numeric range")
    return float(arg.min), float(arg.max)


@dataclass(frozen=True)
class Request:
    """A decoded, validated request; `args` holds every declared argument, defaults filled."""

    id: int
    op: str
    args: Mapping[str, Any]
    client: str | None = None


@dataclass(frozen=True)
class Reply:
    """A reply: `result` when `ok`, else `error_code` (an `ErrorCode` value) and `error_message`."""

    id: int | None
    ok: bool
    result: Any = None
    error_code: str | None = None
    error_message: str | None = None


class RequestError(ControlError):
    """A request that cannot be served, with the id it carried (None when unreadable)."""

    def __init__(self, code: str, message: str, request_id: int | None = None) -> None:
        super().__init__(code, message)
        self.request_id = request_id


def _format_bound(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _check_arg(op: str, spec: ArgSpec, value: Any) -> Any:
    """Return `value` converted to `spec.type`, or raise BAD_ARGS saying what is allowed."""
    where = f"{op}: argument {brief(spec.name)}"
    if spec.type is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ControlError(ErrorCode.BAD_ARGS, f"{where} must be a number, got {brief(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise ControlError(ErrorCode.BAD_ARGS, f"{where} must be finite, got {brief(value)}")
    elif spec.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ControlError(
                ErrorCode.BAD_ARGS, f"{where} must be an integer, got {brief(value)}"
            )
    elif spec.type is bool:
        if not isinstance(value, bool):
            raise ControlError(
                ErrorCode.BAD_ARGS, f"{where} must be true or false, got {brief(value)}"
            )
    elif spec.type is str:
        if not isinstance(value, str):
            raise ControlError(ErrorCode.BAD_ARGS, f"{where} must be a string, got {brief(value)}")
        if spec.max_len is not None and len(value) > spec.max_len:
            raise ControlError(
                ErrorCode.BAD_ARGS,
                f"{where} is {len(value)} characters long; the limit is {spec.max_len}",
            )
        return value
    if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
        low = "-inf" if spec.min is None else _format_bound(spec.min)
        high = "inf" if spec.max is None else _format_bound(spec.max)
        raise ControlError(
            ErrorCode.BAD_ARGS, f"{where} must be in [{low}, {high}], got {brief(value)}"
        )
    return value


def validate_args(
    op: str, args: Mapping[str, Any], *, ops: Mapping[str, OpSpec] = OPS, fill_defaults: bool = True
) -> dict[str, Any]:
    """Check `args` against `ops[op]` and return them converted (ints become floats where the
    op wants floats). With `fill_defaults`, every declared argument is present (default or None).

    Raises ControlError UNKNOWN_OP (listing the valid ops) or BAD_ARGS (saying what is allowed).
    """
    spec = ops.get(op) if isinstance(op, str) else None
    if spec is None:
        raise ControlError(
            ErrorCode.UNKNOWN_OP, f"unknown op {brief(op)}; valid ops: {', '.join(sorted(ops))}"
        )
    if not isinstance(args, Mapping):
        raise ControlError(ErrorCode.BAD_ARGS, f"{op}: args must be a map, got {brief(args)}")
    declared = {arg.name: arg for arg in spec.args}
    for name in args:
        if name not in declared:
            valid = ", ".join(declared) or "none"
            raise ControlError(
                ErrorCode.BAD_ARGS,
                f"{op}: unknown argument {brief(name)}; valid arguments: {valid}",
            )
    checked: dict[str, Any] = {}
    for name, arg in declared.items():
        value = args.get(name)
        if value is None:
            if arg.required:
                raise ControlError(
                    ErrorCode.BAD_ARGS, f"{op}: missing required argument {brief(name)}"
                )
            if fill_defaults:
                checked[name] = arg.default
            continue
        checked[name] = _check_arg(op, arg, value)
    return checked


def _unpack(data: Any, max_message_bytes: int) -> Any:
    """Unpack one msgpack value with hard limits; anything else raises BAD_MESSAGE/TOO_LARGE."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise RequestError(ErrorCode.BAD_MESSAGE, f"expected bytes, got {type(data).__name__}")
    if len(data) > max_message_bytes:
        raise RequestError(
            ErrorCode.TOO_LARGE, f"message of {len(data)} bytes exceeds {max_message_bytes} bytes"
        )
    try:
        message = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_array_len=4096,
            max_map_len=256,
            max_ext_len=0,
        )
    except (
        Exception
    ) as exc:  # msgpack raises ValueError, TypeError, UnicodeDecodeError, StackError…
        raise RequestError(
            ErrorCode.BAD_MESSAGE, f"message is not one valid msgpack value ({str(exc)[:120]})"
        ) from None
    if nesting_exceeds(message):
        raise RequestError(
            ErrorCode.BAD_MESSAGE, f"message nests lists or maps deeper than {MAX_NESTING} levels"
        )
    return message


def _read_id(message: Mapping[Any, Any]) -> int | None:
    request_id = message.get("id")
    is_int = isinstance(request_id, int) and not isinstance(request_id, bool)
    return request_id if is_int and 0 <= request_id <= MAX_REQUEST_ID else None


def _check_version(message: Mapping[Any, Any], request_id: int | None) -> None:
    version = message.get("v")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RequestError(
            ErrorCode.BAD_MESSAGE, f"field 'v' must be an integer, got {brief(version)}", request_id
        )
    if version not in SUPPORTED_VERSIONS:
        raise RequestError(
            ErrorCode.BAD_VERSION,
            f"protocol version {version} is not supported; this side speaks "
            f"{list(SUPPORTED_VERSIONS)}; upgrade ca-server on both sides",
            request_id,
        )


def encode_request(
    op: str,
    args: Mapping[str, Any],
    request_id: int,
    *,
    client: str | None = None,
    ops: Mapping[str, OpSpec] = OPS,
) -> bytes:
    """Validate `args` against `ops` and pack a request; raises ControlError before sending junk."""
    if isinstance(request_id, bool) or not isinstance(request_id, int):
        raise ControlError(
            ErrorCode.BAD_MESSAGE, f"request id must be an int, got {brief(request_id)}"
        )
    if not 0 <= request_id <= MAX_REQUEST_ID:
        raise ControlError(ErrorCode.BAD_MESSAGE, f"request id {request_id} is not a u64")
    checked = validate_args(op, args, ops=ops, fill_defaults=False)
    message: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": request_id, "op": op, "args": checked}
    if client is not None:
        message["client"] = client
    return msgpack.packb(message, use_bin_type=True)


def decode_request(
    data: bytes, *, max_message_bytes: int = MAX_MESSAGE_BYTES, ops: Mapping[str, OpSpec] = OPS
) -> Request:
    """Decode and validate one request. Raises only ControlError (a `RequestError` carrying
    the request id when one was readable) for any malformed input."""
    message = _unpack(data, max_message_bytes)
    if not isinstance(message, dict):
        raise RequestError(
            ErrorCode.BAD_MESSAGE, f"a request must be a msgpack map, got {type(message).__name__}"
        )
    request_id = _read_id(message)
    if request_id is None:
        raise RequestError(
            ErrorCode.BAD_MESSAGE,
            f"field 'id' must be an integer in [0, 2**64), got {brief(message.get('id'))}",
        )
    _check_version(message, request_id)
    op = message.get("op")
    if not isinstance(op, str):
        raise RequestError(
            ErrorCode.BAD_MESSAGE, f"field 'op' must be a string, got {brief(op)}", request_id
        )
    client = message.get("client")
    if client is not None and not (
        isinstance(client, str) and len(client) <= MAX_CLIENT_TOKEN_CHARS
    ):
        raise RequestError(
            ErrorCode.BAD_MESSAGE,
            f"field 'client' must be a string of at most {MAX_CLIENT_TOKEN_CHARS} characters",
            request_id,
        )
    args = message.get("args", {})
    try:
        checked = validate_args(op, args if args is not None else {}, ops=ops)
    except ControlError as exc:
        raise RequestError(exc.code, exc.message, request_id) from None
    return Request(id=request_id, op=op, args=types.MappingProxyType(checked), client=client)


def _pack_default(value: Any) -> Any:
    """Turn the non-msgpack values handlers tend to return (numpy scalars, arrays, mappings,
    sets, paths, enums) into msgpack values; anything else is a handler bug and raises TypeError."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} in a reply: {brief(value)}")


def encode_reply(reply: Reply) -> bytes:
    """Pack a reply; raises TypeError if `reply.result` holds a value msgpack cannot carry."""
    message: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": reply.id, "ok": bool(reply.ok)}
    if reply.ok:
        message["result"] = reply.result
    else:
        message["error"] = {
            "code": str(reply.error_code or ErrorCode.INTERNAL),
            "message": str(reply.error_message or ""),
        }
    return msgpack.packb(message, use_bin_type=True, default=_pack_default)


def error_reply(request_id: int | None, code: str, message: str) -> Reply:
    """An error `Reply` for `request_id` (None when the request was unreadable)."""
    return Reply(id=request_id, ok=False, error_code=str(code), error_message=message)


def decode_reply(data: bytes, *, max_message_bytes: int = 64 * 1024 * 1024) -> Reply:
    """Decode one reply; raises ControlError BAD_MESSAGE/BAD_VERSION if it is not a reply."""
    message = _unpack(data, max_message_bytes)
    if not isinstance(message, dict):
        raise ControlError(ErrorCode.BAD_MESSAGE, "a reply must be a msgpack map")
    request_id = _read_id(message)
    if request_id is None and message.get("id") is not None:
        raise ControlError(
            ErrorCode.BAD_MESSAGE, f"reply id {brief(message.get('id'))} is not a u64"
        )
    _check_version(message, request_id)
    ok = message.get("ok")
    if not isinstance(ok, bool):
        raise ControlError(
            ErrorCode.BAD_MESSAGE, f"reply field 'ok' must be a bool, got {brief(ok)}"
        )
    if ok:
        return Reply(id=request_id, ok=True, result=message.get("result"))
    error = message.get("error")
    if not isinstance(error, dict):
        raise ControlError(ErrorCode.BAD_MESSAGE, "error reply has no 'error' map")
    code, text = error.get("code"), error.get("message")
    if not isinstance(code, str) or not isinstance(text, str):
        raise ControlError(ErrorCode.BAD_MESSAGE, "error reply needs string 'code' and 'message'")
    return Reply(id=request_id, ok=False, error_code=code, error_message=text)
