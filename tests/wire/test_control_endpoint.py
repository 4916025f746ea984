"""Tests of the control channel's daemon side over real ZeroMQ sockets: the ROUTER endpoint's
robustness to bad input, replies applied once per request id, the bind policy, and the ipc socket
file's lifecycle."""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import zmq
from control_testkit import Counter, pack, raw_socket

from ca_server.wire.control import (
    ControlClient,
    ControlEndpoint,
    check_bind_endpoint,
    remove_stale_ipc_socket,
)
from ca_server.wire.errors import ControlError, EndpointRefusedError, WireError
from ca_server.wire.protocol import ErrorCode, Reply, decode_reply, encode_request

pytestmark = pytest.mark.timeout(60)


def fail_internally(args: Mapping[str, Any]) -> Any:
    raise RuntimeError("engine exploded")


def fail_unknown_preset(args: Mapping[str, Any]) -> Any:
    raise ControlError(ErrorCode.UNKNOWN_PRESET, f"no preset {args['name']!r}")


@pytest.fixture
def counter() -> Counter:
    return Counter()


@pytest.fixture
def endpoint(counter: Counter) -> Iterator[ControlEndpoint]:
    """An endpoint on loopback TCP, polled by the test itself (no thread)."""
    handlers = {
        "ping": counter.handler("ping", lambda args: {"t_ns": time.monotonic_ns()}),
        "reseed": counter.handler("reseed"),
        "speed": counter.handler("speed"),
        "status": fail_internally,
        "preset": fail_unknown_preset,
        "hello": lambda args: object(),  # a result msgpack cannot carry
    }
    with ControlEndpoint("tcp://127.0.0.1:*", handlers) as served:
        yield served


@pytest.fixture
def raw_dealer(endpoint: ControlEndpoint) -> Iterator[zmq.Socket]:
    sock = raw_socket(zmq.DEALER, endpoint.endpoint)
    yield sock
    sock.close(linger=0)


def exchange(endpoint: ControlEndpoint, sock: zmq.Socket, frames: list[bytes]) -> Reply | None:
    """Send raw frames, let the endpoint answer, and return the decoded reply (None if dropped)."""
    sock.send_multipart(frames)
    endpoint.poll(1000)
    if not sock.poll(500, zmq.POLLIN):
        return None
    return decode_reply(sock.recv_multipart()[-1])


def assert_still_answers_ping(endpoint: ControlEndpoint) -> None:
    sock = raw_socket(zmq.DEALER, endpoint.endpoint)
    try:
        reply = exchange(endpoint, sock, [encode_request("ping", {}, 424242)])
    finally:
        sock.close(linger=0)
    assert reply is not None and reply.ok and reply.id == 424242


BAD_PAYLOADS = {
    "garbage": (b"\xc1\xff not msgpack", ErrorCode.BAD_MESSAGE),
    "empty": (b"", ErrorCode.BAD_MESSAGE),
    "non-map": (pack([1, "ping"]), ErrorCode.BAD_MESSAGE),
    "missing id": (pack({"v": 1, "op": "ping"}), ErrorCode.BAD_MESSAGE),
    "missing op": (pack({"v": 1, "id": 3}), ErrorCode.BAD_MESSAGE),
    "wrong version": (pack({"v": 2, "id": 3, "op": "ping"}), ErrorCode.BAD_VERSION),
    "unknown op": (pack({"v": 1, "id": 3, "op": "launch"}), ErrorCode.UNKNOWN_OP),
    "op without handler": (pack({"v": 1, "id": 3, "op": "pause"}), ErrorCode.UNKNOWN_OP),
    "wrong type": (pack({"v": 1, "id": 3, "op": "speed", "args": {"value": "x"}}), "bad_args"),
    "nan": (pack({"v": 1, "id": 3, "op": "speed", "args": {"value": math.nan}}), "bad_args"),
    "inf": (pack({"v": 1, "id": 3, "op": "speed", "args": {"value": math.inf}}), "bad_args"),
    "long name": (pack({"v": 1, "id": 3, "op": "preset", "args": {"name": "n" * 100}}), "bad_args"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
def test_bad_message_gets_an_error_reply_and_the_endpoint_lives_on(
    endpoint: ControlEndpoint, raw_dealer: zmq.Socket, counter: Counter, case: str
) -> None:
    payload, code = BAD_PAYLOADS[case]
    reply = exchange(endpoint, raw_dealer, [payload])
    assert reply is not None and not reply.ok
    assert reply.error_code == code
    assert reply.error_message
    assert counter.calls.get("speed", 0) == 0
    assert_still_answers_ping(endpoint)


def test_message_over_maxmsgsize_is_dropped(
    endpoint: ControlEndpoint, raw_dealer: zmq.Socket
) -> None:
    huge = pack({"v": 1, "id": 3, "op": "preset", "args": {"name": "x" * (1 << 20)}})
    assert exchange(endpoint, raw_dealer, [huge]) is None
    assert_still_answers_ping(endpoint)


def test_oversize_message_on_a_transport_without_maxmsgsize_gets_too_large() -> None:
    with ControlEndpoint("inproc://ca-ctl-too-large", {"ping": dict}) as served:
        sock = raw_socket(zmq.DEALER, served.endpoint)
        try:
            reply = exchange(served, sock, [b"\x00" * 70000])
            assert reply is not None and reply.error_code == ErrorCode.TOO_LARGE
            assert exchange(served, sock, [encode_request("ping", {}, 1)]) == Reply(1, True, {})
        finally:
            sock.close(linger=0)


def test_extra_frames_get_an_error_reply(endpoint: ControlEndpoint, raw_dealer: zmq.Socket) -> None:
    ping = encode_request("ping", {}, 5)
    reply = exchange(endpoint, raw_dealer, [ping, ping])
    assert reply is not None and reply.error_code == ErrorCode.BAD_MESSAGE
    assert reply.id is None
    assert_still_answers_ping(endpoint)


def test_req_sockets_are_answered_too(endpoint: ControlEndpoint) -> None:
    sock = raw_socket(zmq.REQ, endpoint.endpoint)
    try:
        sock.send(encode_request("ping", {}, 11))
        endpoint.poll(1000)
        assert sock.poll(1000, zmq.POLLIN)
        reply = decode_reply(sock.recv())
    finally:
        sock.close(linger=0)
    assert reply.ok and reply.id == 11


def test_failing_handler_gets_internal_reply_and_the_endpoint_lives_on(
    endpoint: ControlEndpoint, raw_dealer: zmq.Socket
) -> None:
    reply = exchange(endpoint, raw_dealer, [encode_request("status", {}, 21)])
    assert reply is not None and reply.id == 21
    assert reply.error_code == ErrorCode.INTERNAL
    assert "engine exploded" in (reply.error_message or "")
    unpackable = exchange(endpoint, raw_dealer, [encode_request("hello", {}, 22)])
    assert unpackable is not None and unpackable.error_code == ErrorCode.INTERNAL
    assert_still_answers_ping(endpoint)


def test_handler_control_error_becomes_that_error_reply(
    endpoint: ControlEndpoint, raw_dealer: zmq.Socket
) -> None:
    reply = exchange(endpoint, raw_dealer, [encode_request("preset", {"name": "nope"}, 4)])
    assert reply is not None
    assert (reply.error_code, reply.error_message) == (ErrorCode.UNKNOWN_PRESET, "no preset 'nope'")


def test_duplicate_request_id_is_applied_once(
    endpoint: ControlEndpoint, raw_dealer: zmq.Socket, counter: Counter
) -> None:
    first = exchange(endpoint, raw_dealer, [encode_request("reseed", {"seed": 9}, 7, client="a")])
    again = exchange(endpoint, raw_dealer, [encode_request("reseed", {"seed": 9}, 7, client="a")])
    assert first is not None and first.ok and first == again
    assert counter.calls["reseed"] == 1
    other_client = exchange(endpoint, raw_dealer, [encode_request("reseed", {}, 7, client="b")])
    new_id = exchange(endpoint, raw_dealer, [encode_request("reseed", {}, 8, client="a")])
    assert other_client is not None and other_client.ok and new_id is not None and new_id.ok
    assert counter.calls["reseed"] == 3


def test_poll_returns_the_number_handled(endpoint: ControlEndpoint, raw_dealer: zmq.Socket) -> None:
    assert endpoint.poll(0) == 0
    for request_id in range(3):
        raw_dealer.send(encode_request("ping", {}, request_id))
    handled, deadline = 0, time.monotonic() + 5
    while handled < 3 and time.monotonic() < deadline:
        handled += endpoint.poll(100)
    assert handled == 3


def test_handlers_must_have_an_op_spec() -> None:
    with pytest.raises(ValueError, match="shutdown"):
        ControlEndpoint("tcp://127.0.0.1:*", {"shutdown": dict})


@pytest.mark.parametrize(
    "refused",
    [
        "tcp://0.0.0.0:5555",
        "tcp://*:5555",
        "tcp://192.168.1.5:5555",
        "tcp://[::]:5555",
        "tcp://eth0:5555",
        "tcp://127.0.0.1:notaport",
        "tcp://127.0.0.1:70000",
        "tcp://127.0.0.1",
        "ipc://",
        "ipc://@abstract-name",
        "ipc:///tmp/" + "x" * 120,
        "udp://127.0.0.1:5555",
        "127.0.0.1:5555",
    ],
)
def test_bind_policy_refuses_non_local_or_malformed_endpoints(refused: str) -> None:
    with pytest.raises(EndpointRefusedError):
        check_bind_endpoint(refused)


@pytest.mark.parametrize(
    "allowed",
    [
        "ipc:///tmp/ca-server/gpu0.ctl",
        "tcp://127.0.0.1:*",
        "tcp://127.0.0.1:5555",
        "tcp://localhost:5555",
        "tcp://[::1]:5555",
        "inproc://ctl",
    ],
)
def test_bind_policy_allows_local_endpoints(allowed: str) -> None:
    assert check_bind_endpoint(allowed) == allowed


def test_allow_remote_lets_a_non_loopback_bind_through() -> None:
    assert check_bind_endpoint("tcp://0.0.0.0:5555", allow_remote=True) == "tcp://0.0.0.0:5555"
    with pytest.raises(EndpointRefusedError):
        ControlEndpoint("tcp://0.0.0.0:*", {"ping": dict})
    with ControlEndpoint("tcp://0.0.0.0:*", {"ping": dict}, allow_remote=True) as served:
        port = served.endpoint.rsplit(":", 1)[1]
        with ControlClient(f"tcp://127.0.0.1:{port}") as client:
            served_thread = threading.Thread(target=served.poll, args=(3000,), daemon=True)
            served_thread.start()
            assert client.call("ping") == {}
            served_thread.join(5)


def test_ipc_socket_file_lifecycle(ipc_endpoint: str) -> None:
    socket_path = Path(ipc_endpoint.removeprefix("ipc://"))
    served = ControlEndpoint(ipc_endpoint, {"ping": dict})
    assert socket_path.is_socket()
    with pytest.raises(EndpointRefusedError, match="remove_stale_ipc_socket"):
        ControlEndpoint(ipc_endpoint, {"ping": dict})  # would silently steal a live endpoint
    served.close()
    served.close()
    assert not socket_path.exists()
    assert served.poll(10) == 0


def test_remove_stale_ipc_socket(ipc_endpoint: str) -> None:
    socket_path = ipc_endpoint.removeprefix("ipc://")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(socket_path)  # a dead daemon's leftover
    stale.close()
    with pytest.raises(EndpointRefusedError):
        ControlEndpoint(ipc_endpoint, {"ping": dict})
    assert remove_stale_ipc_socket(ipc_endpoint) is True
    assert remove_stale_ipc_socket(ipc_endpoint) is False
    assert remove_stale_ipc_socket("tcp://127.0.0.1:5555") is False
    with ControlEndpoint(ipc_endpoint, {"ping": dict}):
        pass
    Path(socket_path).write_text("not a socket")
    with pytest.raises(WireError, match="not a socket"):
        remove_stale_ipc_socket(ipc_endpoint)
