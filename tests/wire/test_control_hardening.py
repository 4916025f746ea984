"""The control endpoint under hostile input (issue 18): nesting bombs, over-size messages, reused
ids, unauthenticated TCP peers and request floods, over real ZeroMQ sockets."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from control_testkit import Counter, pack, raw_socket

from ca_server.wire.control import ControlClient, ControlEndpoint
from ca_server.wire.protocol import ErrorCode, Reply, decode_reply

pytestmark = pytest.mark.timeout(60)


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def exchange(endpoint: ControlEndpoint, sock: zmq.Socket, payload: bytes) -> Reply | None:
    sock.send(payload)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        endpoint.poll(50)
        if sock.poll(50, zmq.POLLIN):
            return decode_reply(sock.recv())
    return None


@pytest.fixture
def ipc_served(runtime_dir: Path) -> Iterator[tuple[ControlEndpoint, Counter]]:
    counter = Counter()
    handlers = {"ping": counter.handler("ping"), "speed": counter.handler("speed")}
    with ControlEndpoint(f"ipc://{runtime_dir}/t.ctl", handlers) as served:
        yield served, counter


@pytest.mark.parametrize("field", ["args", "v", "id", "op", "value", "client"])
def test_a_request_nested_1000_deep_is_refused_and_the_endpoint_keeps_serving(
    ipc_served: tuple[ControlEndpoint, Counter], field: str
) -> None:
    served, _ = ipc_served
    request = {"v": 1, "id": 7, "op": "speed", "args": {"value": 1.0}}
    if field == "value":
        request["args"] = {"value": nested(1000)}
    else:
        request[field] = nested(1000)
    payload = pack(request)
    assert len(payload) < 1100  # one small message, as in the report
    sock = raw_socket(zmq.DEALER, served.endpoint)
    try:
        reply = exchange(served, sock, payload)
        assert reply is not None and not reply.ok
        assert reply.error_code == ErrorCode.BAD_MESSAGE
        assert len(reply.error_message or "") < 300
        assert exchange(served, sock, pack({"v": 1, "id": 8, "op": "ping", "args": {}})).ok
    finally:
        sock.close(linger=0)


def test_poll_stops_at_its_time_budget_and_serves_the_rest_later(runtime_dir: Path) -> None:
    def slow(_args: object) -> dict:
        time.sleep(0.005)
        return {}

    with ControlEndpoint(f"ipc://{runtime_dir}/b.ctl", {"ping": slow}) as served:
        sock = raw_socket(zmq.DEALER, served.endpoint)
        try:
            for request_id in range(200):
                sock.send(pack({"v": 1, "id": request_id, "op": "ping", "args": {}}))
            handled = 0
            deadline = time.monotonic() + 10
            while handled == 0 and time.monotonic() < deadline:
                handled = served.poll(100, budget_s=0.02)
            # 0.02 s holds at most a handful of 5 ms requests (the first is always served).
            assert 1 <= handled < 50
            while handled < 200 and time.monotonic() < deadline + 20:
                handled += served.poll(100, budget_s=0.02)
            assert handled == 200  # nothing was dropped: the rest waited for later calls
        finally:
            sock.close(linger=0)


def test_over_size_request_gets_too_large_reply(
    ipc_served: tuple[ControlEndpoint, Counter],
) -> None:
    served, _ = ipc_served
    sock = raw_socket(zmq.DEALER, served.endpoint)
    try:
        payload = pack({"v": 1, "id": 3, "op": "ping", "args": {}, "pad": "x" * 100_000})
        reply = exchange(served, sock, payload)
        assert reply is not None, "an over-size request was dropped without a reply"
        assert reply.error_code == ErrorCode.TOO_LARGE
    finally:
        sock.close(linger=0)


def test_a_reused_id_with_other_content_is_an_error_not_the_cached_reply(
    ipc_served: tuple[ControlEndpoint, Counter],
) -> None:
    served, counter = ipc_served
    sock = raw_socket(zmq.DEALER, served.endpoint)
    try:
        first = {"v": 1, "id": 5, "op": "speed", "args": {"value": 1.0}, "client": "abc"}
        assert exchange(served, sock, pack(first)).ok
        again = exchange(served, sock, pack(first))  # a true retry: the cached reply
        assert again.ok and counter.calls == {"speed": 1}
        other = {**first, "args": {"value": 2.0}}
        reply = exchange(served, sock, pack(other))
        assert not reply.ok and reply.error_code == ErrorCode.BAD_MESSAGE
        assert "already used" in reply.error_message
        assert counter.calls == {"speed": 1}
    finally:
        sock.close(linger=0)


def test_an_unauthenticated_tcp_peer_gets_nothing(runtime_dir: Path) -> None:
    counter = Counter()
    with ControlEndpoint("tcp://127.0.0.1:*", {"ping": counter.handler("ping")}) as served:
        plain = zmq.Context.instance().socket(zmq.DEALER)  # no CURVE at all
        plain.setsockopt(zmq.LINGER, 0)
        plain.connect(served.endpoint)
        try:
            plain.send(pack({"v": 1, "id": 1, "op": "ping", "args": {}}), zmq.NOBLOCK)
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                served.poll(50)
            assert not plain.poll(0, zmq.POLLIN), "an unauthenticated peer got a reply"
            assert counter.calls == {}
        finally:
            plain.close(linger=0)


def test_tcp_control_needs_the_client_key(runtime_dir: Path) -> None:
    from ca_server.wire.control_keys import CLIENT_KEY_FILE, SERVER_KEY_FILE, ensure_server_keys

    counter = Counter()
    with ControlEndpoint("tcp://127.0.0.1:*", {"ping": counter.handler("ping")}) as served:
        for name in (SERVER_KEY_FILE, CLIENT_KEY_FILE):
            assert stat.S_IMODE(os.stat(runtime_dir / name).st_mode) == 0o600
        stranger = zmq.Context.instance().socket(zmq.DEALER)  # knows the server, wrong own key
        stranger.setsockopt(zmq.LINGER, 0)
        public, secret = zmq.curve_keypair()
        stranger.curve_serverkey = ensure_server_keys().server_public
        stranger.curve_publickey, stranger.curve_secretkey = public, secret
        stranger.connect(served.endpoint)
        try:
            stranger.send(pack({"v": 1, "id": 1, "op": "ping", "args": {}}), zmq.NOBLOCK)
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                served.poll(50)
            assert not stranger.poll(0, zmq.POLLIN) and counter.calls == {}
        except zmq.Again:
            pass  # not even connected: the handshake failed, as it should
        finally:
            stranger.close(linger=0)
        with ControlClient(served.endpoint, timeout_s=5) as client:  # the key from the runtime dir
            deadline = time.monotonic() + 10
            request_id = -1
            while request_id == -1 and time.monotonic() < deadline:  # until the handshake is done
                served.poll(20)
                request_id = client.send("ping")
            replies: list[Reply] = []
            while not replies and time.monotonic() < deadline:
                served.poll(50)
                replies = client.poll_replies()
            assert [reply.id for reply in replies] == [request_id] and replies[0].ok


def test_key_files_are_reused_across_restarts(runtime_dir: Path) -> None:
    from ca_server.wire.control_keys import ensure_server_keys

    first = ensure_server_keys()
    assert ensure_server_keys() == first
