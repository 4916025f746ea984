"""Unit tests of the control protocol's pure encode/decode and its ops table (no sockets)."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca_server.wire.errors import ControlError, exit_code_for
from ca_server.wire.protocol import (
    OPS,
    PROTOCOL_VERSION,
    ErrorCode,
    Reply,
    RequestError,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    validate_args,
)


def pack(message: object) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def request(op: str = "ping", args: object = None, **fields: object) -> bytes:
    message: dict[str, object] = {"v": 1, "id": 7, "op": op, "args": {} if args is None else args}
    message.update(fields)
    return pack({k: v for k, v in message.items() if v is not ...})


def test_ping_request_has_the_documented_golden_bytes() -> None:
    expected = bytes.fromhex("84a17601a2696401a26f70a470696e67a46172677380")
    assert encode_request("ping", {}, 1) == expected


def test_ops_table_has_the_documented_ops_and_ranges() -> None:
    assert set(OPS) >= {
        "hello", "ping", "status", "presets", "preset", "speed", "hue", "brightness",
        "reseed", "pause", "resume",
    }  # fmt: skip
    ranges = {name: (spec.args[0].min, spec.args[0].max) for name, spec in OPS.items() if spec.args}
    assert ranges["speed"] == (0.0, 8.0)
    assert ranges["hue"] == (0.0, 1.0)
    assert ranges["brightness"] == (0.0, 3.0)
    assert ranges["reseed"] == (0, 2**31 - 1)
    assert OPS["preset"].args[0].max_len == 64
    assert not OPS["reseed"].args[0].required
    for spec in OPS.values():
        assert spec.summary
        for arg in spec.args:
            assert arg.type in (str, int, float, bool)


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("ping", {}),
        ("hello", {}),
        ("preset", {"name": "coral"}),
        ("speed", {"value": 2.5}),
        ("hue", {"value": 1}),
        ("brightness", {"value": 0.0}),
        ("reseed", {"seed": 2**31 - 1}),
        ("reseed", {}),
        ("pause", {}),
    ],
)
def test_request_round_trip(op: str, args: dict[str, object]) -> None:
    decoded = decode_request(encode_request(op, args, 2**64 - 1, client="cafe"))
    assert decoded.id == 2**64 - 1
    assert decoded.op == op
    assert decoded.client == "cafe"
    for name, value in args.items():
        assert decoded.args[name] == value
        assert type(decoded.args[name]) is OPS[op].args[0].type


def test_decode_fills_defaults_and_converts_ints_for_float_args() -> None:
    assert dict(decode_request(request("reseed")).args) == {"seed": None}
    speed = decode_request(request("speed", {"value": 3})).args["value"]
    assert speed == 3.0 and isinstance(speed, float)


def test_unknown_envelope_fields_are_ignored() -> None:
    decoded = decode_request(request("ping", deadline_ms=100, future={"x": 1}))
    assert decoded.op == "ping" and decoded.id == 7


def test_request_args_may_be_omitted_or_nil() -> None:
    assert decode_request(request("ping", args=...)).op == "ping"
    assert decode_request(request("pause", args=None)).op == "pause"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", ErrorCode.BAD_MESSAGE),
        (b"\xc1", ErrorCode.BAD_MESSAGE),  # a byte msgpack never uses
        (b"\x92\x01", ErrorCode.BAD_MESSAGE),  # truncated array
        (b"not msgpack at all \xff\xfe", ErrorCode.BAD_MESSAGE),
        (pack([1, 2, 3]), ErrorCode.BAD_MESSAGE),
        (pack("ping"), ErrorCode.BAD_MESSAGE),
        (pack({"v": 1, "op": "ping"}), ErrorCode.BAD_MESSAGE),  # no id
        (pack({"v": 1, "id": 1}), ErrorCode.BAD_MESSAGE),  # no op
        (pack({"id": 1, "op": "ping"}), ErrorCode.BAD_MESSAGE),  # no v
        (pack({"v": "1", "id": 1, "op": "ping"}), ErrorCode.BAD_MESSAGE),
        (pack({"v": 1, "id": "1", "op": "ping"}), ErrorCode.BAD_MESSAGE),
        (pack({"v": 1, "id": -1, "op": "ping"}), ErrorCode.BAD_MESSAGE),
        (pack({"v": 1, "id": True, "op": "ping"}), ErrorCode.BAD_MESSAGE),
        (pack({"v": 1, "id": 1.0, "op": "ping"}), ErrorCode.BAD_MESSAGE),
        (pack({"v": 1, "id": 1, "op": 5}), ErrorCode.BAD_MESSAGE),
        (pack({1: 1}), ErrorCode.BAD_MESSAGE),  # non-string map key
        (b"\x81\xa1v\xa2\xff\xfe", ErrorCode.BAD_MESSAGE),  # invalid UTF-8 in a string
        (request() + request(), ErrorCode.BAD_MESSAGE),  # trailing data
        (request(client="x" * 65), ErrorCode.BAD_MESSAGE),
        (request(v=2), ErrorCode.BAD_VERSION),
        (request(v=0), ErrorCode.BAD_VERSION),
        (request("launch"), ErrorCode.UNKNOWN_OP),
        (request("ping", [1]), ErrorCode.BAD_ARGS),
        (request("ping", {"x": 1}), ErrorCode.BAD_ARGS),
        (request("speed", {}), ErrorCode.BAD_ARGS),
        (request("speed", {"value": "fast"}), ErrorCode.BAD_ARGS),
        (request("speed", {"value": True}), ErrorCode.BAD_ARGS),
        (request("speed", {"value": math.nan}), ErrorCode.BAD_ARGS),
        (request("speed", {"value": math.inf}), ErrorCode.BAD_ARGS),
        (request("hue", {"value": -math.inf}), ErrorCode.BAD_ARGS),
        (request("speed", {"value": 8.001}), ErrorCode.BAD_ARGS),
        (request("hue", {"value": -0.01}), ErrorCode.BAD_ARGS),
        (request("brightness", {"value": [1.0]}), ErrorCode.BAD_ARGS),
        (request("preset", {"name": "x" * 65}), ErrorCode.BAD_ARGS),
        (request("preset", {"name": 5}), ErrorCode.BAD_ARGS),
        (request("preset", {"name": b"coral"}), ErrorCode.BAD_ARGS),
        (request("reseed", {"seed": 1.5}), ErrorCode.BAD_ARGS),
        (request("reseed", {"seed": 2**31}), ErrorCode.BAD_ARGS),
        (request("reseed", {"seed": -1}), ErrorCode.BAD_ARGS),
        (request("speed", {"value": 1.0, "extra": 1}), ErrorCode.BAD_ARGS),
        (b"\x00" * 65537, ErrorCode.TOO_LARGE),
    ],
)
def test_bad_requests_raise_control_error_with_the_right_code(data: bytes, code: str) -> None:
    with pytest.raises(ControlError) as caught:
        decode_request(data)
    assert caught.value.code == code
    assert caught.value.message


def test_errors_carry_the_request_id_once_it_was_readable() -> None:
    with pytest.raises(RequestError) as caught:
        decode_request(request("speed", {"value": math.nan}))
    assert caught.value.request_id == 7
    with pytest.raises(RequestError) as caught:
        decode_request(b"\xc1")
    assert caught.value.request_id is None


def test_unknown_op_message_lists_the_valid_ops() -> None:
    with pytest.raises(ControlError) as caught:
        decode_request(request("launch"))
    for op in OPS:
        assert op in caught.value.message


def test_max_message_bytes_is_configurable() -> None:
    with pytest.raises(ControlError) as caught:
        decode_request(request("ping"), max_message_bytes=8)
    assert caught.value.code == ErrorCode.TOO_LARGE


def test_encode_request_refuses_what_the_daemon_would_refuse() -> None:
    with pytest.raises(ControlError) as caught:
        encode_request("speed", {"value": 100.0}, 1)
    assert caught.value.code == ErrorCode.BAD_ARGS
    assert "[0, 8]" in caught.value.message
    with pytest.raises(ControlError) as caught:
        encode_request("launch", {}, 1)
    assert caught.value.code == ErrorCode.UNKNOWN_OP
    with pytest.raises(ControlError):
        encode_request("ping", {}, -1)


def test_validate_args_without_defaults_keeps_only_given_args() -> None:
    assert validate_args("reseed", {}, fill_defaults=False) == {}
    assert validate_args("reseed", {}) == {"seed": None}


@pytest.mark.parametrize(
    "reply",
    [
        Reply(id=3, ok=True, result={"t_ns": 123, "names": ["a", "b"], "x": 1.5}),
        Reply(id=3, ok=True, result=None),
        Reply(id=9, ok=False, error_code=ErrorCode.BAD_ARGS, error_message="speed too high"),
        Reply(id=None, ok=False, error_code=ErrorCode.BAD_MESSAGE, error_message="garbage"),
        Reply(id=1, ok=False, error_code="some_future_code", error_message="?"),
    ],
)
def test_reply_round_trip(reply: Reply) -> None:
    assert decode_reply(encode_reply(reply)) == reply


def test_reply_envelope_fields() -> None:
    ok = msgpack.unpackb(encode_reply(Reply(id=1, ok=True, result=5)))
    assert ok == {"v": PROTOCOL_VERSION, "id": 1, "ok": True, "result": 5}
    error = msgpack.unpackb(encode_reply(Reply(1, False, error_code="busy", error_message="m")))
    assert error == {"v": 1, "id": 1, "ok": False, "error": {"code": "busy", "message": "m"}}


def test_encode_reply_converts_numpy_values_and_refuses_the_unpackable() -> None:
    result = {"fps": np.float32(59.5), "size": np.int64(3), "hist": np.arange(3, dtype=np.uint8)}
    decoded = decode_reply(encode_reply(Reply(id=1, ok=True, result=result)))
    assert decoded.result == {"fps": 59.5, "size": 3, "hist": [0, 1, 2]}
    with pytest.raises(TypeError):
        encode_reply(Reply(id=1, ok=True, result=object()))


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",
        pack([1]),
        pack({"v": 1, "id": 1}),
        pack({"v": 1, "id": 1, "ok": "yes"}),
        pack({"v": 1, "id": 1, "ok": False}),
        pack({"v": 1, "id": 1, "ok": False, "error": {"code": 1, "message": "m"}}),
        pack({"v": 1, "id": "x", "ok": True}),
        pack({"v": 2, "id": 1, "ok": True}),
    ],
)
def test_decode_reply_refuses_non_replies(data: bytes) -> None:
    with pytest.raises(ControlError):
        decode_reply(data)


def test_exit_codes_follow_sysexits() -> None:
    assert exit_code_for(ErrorCode.BAD_ARGS) == 65
    assert exit_code_for(ErrorCode.UNAVAILABLE) == 69
    assert exit_code_for(ErrorCode.INTERNAL) == 70
    assert exit_code_for("never_heard_of_it") == 1


def test_every_arg_bound_in_the_table_is_inclusive_and_enforced() -> None:
    for op, spec in OPS.items():
        others = {a.name: a.min for a in spec.args if a.required and a.min is not None}
        for arg in spec.args:
            if arg.min is None:
                continue
            for bound in (arg.min, arg.max):
                decoded = decode_request(request(op, {**others, arg.name: bound}))
                assert decoded.args[arg.name] == bound
            step = 1 if arg.type is int else 1e-6
            for outside in (arg.min - step, arg.max + step):
                with pytest.raises(ControlError):
                    decode_request(request(op, {**others, arg.name: arg.type(outside)}))


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80)
    | st.binary(max_size=80),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
arg_names = st.sampled_from(sorted({a.name for s in OPS.values() for a in s.args} | {"zzz"}))
envelopes = st.fixed_dictionaries(
    {
        "v": st.sampled_from([1, 1, 1, 2, "1", None]),
        "id": st.one_of(st.integers(min_value=-5, max_value=2**64 - 1), msgpack_values),
        "op": st.one_of(st.sampled_from(sorted(OPS)), msgpack_values),
        "args": st.one_of(st.dictionaries(arg_names, msgpack_values, max_size=3), msgpack_values),
    }
)


def assert_only_control_errors(data: bytes) -> None:
    try:
        decoded = decode_request(data)
    except ControlError as exc:
        assert exc.code in set(ErrorCode)
        return
    # Whatever got through must satisfy the table the handlers rely on.
    assert decoded.op in OPS
    assert validate_args(decoded.op, decoded.args) == dict(decoded.args)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=256))
def test_fuzz_arbitrary_bytes_only_raise_control_error(data: bytes) -> None:
    assert_only_control_errors(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msgpack_values)
def test_fuzz_arbitrary_msgpack_values_only_raise_control_error(value: object) -> None:
    assert_only_control_errors(pack(value))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes)
def test_fuzz_request_shaped_maps_only_raise_control_error(message: dict[str, object]) -> None:
    assert_only_control_errors(pack(message))
