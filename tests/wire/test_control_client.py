"""Tests of the control client over real ZeroMQ sockets: its never-hang guarantees against absent,
frozen and restarted daemons (real subprocesses), idempotent retries, and calls served end to end
over each local transport."""

from __future__ import annotations

import json
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from control_testkit import Counter, pack

from ca_server.wire.control import ControlClient, ControlEndpoint
from ca_server.wire.control_keys import ensure_server_keys
from ca_server.wire.errors import ControlError, DaemonUnavailableError, WireError
from ca_server.wire.paths import default_control_endpoint
from ca_server.wire.protocol import OPS, ArgSpec, ErrorCode, OpSpec, Reply

pytestmark = pytest.mark.timeout(60)

# Subprocess daemon stand-in: the real ControlEndpoint with counting handlers. It exits on
# SIGTERM, or after 60 s so that a crashed test never leaves it behind.
SERVER_SCRIPT = """
import os, signal, sys, time
from ca_server.wire.control import ControlEndpoint, remove_stale_ipc_socket
counts = {"reseed": 0}
def reseed(args):
    counts["reseed"] += 1
    return {"seed": args["seed"]}
handlers = {
    "ping": lambda args: {"pid": os.getpid(), "t_ns": time.monotonic_ns()},
    "status": lambda args: {"pid": os.getpid(), **counts},
    "reseed": reseed,
}
remove_stale_ipc_socket(sys.argv[1])
endpoint = ControlEndpoint(sys.argv[1], handlers)
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
print(endpoint.endpoint, flush=True)
deadline = time.monotonic() + 60
while not stopping and time.monotonic() < deadline:
    endpoint.poll(50)
endpoint.close()
"""


@pytest.fixture
def spawn_server() -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start SERVER_SCRIPT subprocesses bound at an endpoint; all are killed at teardown."""
    processes: list[subprocess.Popen[str]] = []

    def spawn(endpoint: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, endpoint], stdout=subprocess.PIPE, text=True
        )
        processes.append(process)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "control server subprocess did not start within 20 s"
        assert process.stdout.readline().strip(), "control server subprocess failed to bind"
        return process

    yield spawn
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        process.wait(timeout=10)


class ThreadServedEndpoint:
    """A ControlEndpoint created and polled by a background thread, for in-process client tests."""

    def __init__(
        self, endpoint: str, handlers: Mapping[str, Callable[..., Any]], **options: Any
    ) -> None:
        self._args = (endpoint, handlers)
        self._options = options
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.paused = threading.Event()  # while set, requests wait unanswered
        self.endpoint = ""

    def _run(self) -> None:
        with ControlEndpoint(*self._args, **self._options) as endpoint:
            self.endpoint = endpoint.endpoint
            self._ready.set()
            while not self._stop.is_set():
                if self.paused.is_set():
                    time.sleep(0.01)
                else:
                    endpoint.poll(20)

    def __enter__(self) -> ThreadServedEndpoint:
        self._thread.start()
        assert self._ready.wait(10), "endpoint thread did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_custom_ops_table_serves_ops_beyond_the_standard_ones(ipc_endpoint: str) -> None:
    shutdown = OpSpec("shutdown", "stop the daemon", (ArgSpec("grace_s", float, min=0, max=9),))
    ops = {**OPS, "shutdown": shutdown}
    handlers = {"shutdown": lambda args: {"grace_s": args["grace_s"]}}
    with (
        ThreadServedEndpoint(ipc_endpoint, handlers, ops=ops),
        ControlClient(ipc_endpoint, ops=ops) as client,
    ):
        assert client.call("shutdown", grace_s=2) == {"grace_s": 2.0}
        with pytest.raises(ControlError) as caught:
            client.call("shutdown", grace_s=10)
        assert caught.value.code == ErrorCode.BAD_ARGS
    with ControlClient(ipc_endpoint) as plain, pytest.raises(ControlError) as caught:
        plain.call("shutdown", grace_s=1)  # the standard table lacks it
    assert caught.value.code == ErrorCode.UNKNOWN_OP


def test_client_call_send_and_poll_replies_against_a_thread_server(ipc_endpoint: str) -> None:
    counter = Counter()
    handlers = {"ping": counter.handler("ping"), "speed": counter.handler("speed")}
    with ThreadServedEndpoint(ipc_endpoint, handlers), ControlClient(ipc_endpoint) as client:
        assert client.call("ping") == {}
        assert client.call("speed", value=2) == {"value": 2.0}
        with pytest.raises(ControlError) as caught:
            client.call("hue", value=0.5)
        assert caught.value.code == ErrorCode.UNKNOWN_OP
        with pytest.raises(ControlError) as caught:
            client.send("speed", value=-1.0)  # refused locally, never sent
        assert caught.value.code == ErrorCode.BAD_ARGS
        sent = [client.send("speed", value=1.5), client.send("pause")]
        assert all(request_id > 0 for request_id in sent)
        replies: list[Reply] = []
        deadline = time.monotonic() + 5
        while len(replies) < 2 and time.monotonic() < deadline:
            replies += client.poll_replies()
            time.sleep(0.01)
    assert [reply.id for reply in replies] == sent
    assert replies[0].ok and replies[0].result == {"value": 1.5}
    assert replies[1].error_code == ErrorCode.UNKNOWN_OP
    assert counter.calls == {"ping": 1, "speed": 2}


def test_client_ignores_stray_replies_and_garbage() -> None:
    """A hand-written ROUTER answers with junk and an old id before the real reply."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    keys = ensure_server_keys()  # TCP control is CURVE; this bare ROUTER checks no client key
    router.curve_secretkey, router.curve_publickey = keys.server_secret, keys.server_public
    router.curve_server = True
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def answer_once() -> None:
        if router.poll(5000, zmq.POLLIN):
            identity, payload = router.recv_multipart()
            request_id = msgpack.unpackb(payload)["id"]
            stray = pack({"v": 1, "id": request_id + 1000, "ok": True, "result": "stale"})
            real = pack({"v": 1, "id": request_id, "ok": True, "result": "fresh"})
            for frame in (b"\xc1junk", pack([1]), stray, real):
                router.send_multipart([identity, frame])

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    try:
        with ControlClient(f"tcp://127.0.0.1:{port}", timeout_s=5.0, retries=0) as client:
            assert client.call("ping") == "fresh"
            assert client.poll_replies() == []
    finally:
        thread.join(10)
        router.close(linger=0)


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_call_without_daemon_raises_unavailable_within_the_bound(
    ipc_endpoint: str, transport: str
) -> None:
    endpoint = ipc_endpoint if transport == "ipc" else f"tcp://127.0.0.1:{free_tcp_port()}"
    ensure_server_keys()  # a TCP client needs the key file before it can even try
    timeout_s, retries = 0.2, 2
    with ControlClient(endpoint, timeout_s=timeout_s, retries=retries) as client:
        started = time.monotonic()
        with pytest.raises(DaemonUnavailableError) as caught:
            client.call("ping")
        elapsed_s = time.monotonic() - started
        assert client.send("reseed") == -1  # nothing queues towards an absent daemon
    assert elapsed_s < timeout_s * (retries + 1) + 1.0
    assert elapsed_s >= timeout_s * (retries + 1) * 0.9  # every attempt was made
    assert caught.value.code == ErrorCode.UNAVAILABLE
    assert endpoint in caught.value.message and "ca-server serve" in caught.value.message


def test_call_with_bad_args_fails_locally_without_a_daemon(ipc_endpoint: str) -> None:
    with ControlClient(ipc_endpoint, timeout_s=5.0) as client:
        started = time.monotonic()
        with pytest.raises(ControlError) as caught:
            client.call("speed", value=math.nan)
        assert time.monotonic() - started < 2.0
    assert caught.value.code == ErrorCode.BAD_ARGS


@pytest.mark.subprocess
def test_call_against_a_stopped_daemon_raises_unavailable(
    ipc_endpoint: str, spawn_server: Callable[[str], subprocess.Popen[str]]
) -> None:
    server = spawn_server(ipc_endpoint)
    with ControlClient(ipc_endpoint, timeout_s=0.3, retries=1) as client:
        assert client.call("ping")["pid"] == server.pid
        os.kill(server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(DaemonUnavailableError):
                client.call("ping")
            assert time.monotonic() - started < 0.3 * 2 + 1.0
        finally:
            os.kill(server.pid, signal.SIGCONT)


@pytest.mark.subprocess
def test_client_recovers_when_the_daemon_is_restarted(
    ipc_endpoint: str, spawn_server: Callable[[str], subprocess.Popen[str]]
) -> None:
    first = spawn_server(ipc_endpoint)
    with ControlClient(ipc_endpoint, timeout_s=1.0, retries=3) as client:
        assert client.call("ping")["pid"] == first.pid
        first.kill()
        first.wait(10)
        second = spawn_server(ipc_endpoint)
        assert client.call("ping")["pid"] == second.pid


@pytest.mark.subprocess
def test_request_to_a_frozen_daemon_is_retried_on_its_replacement(
    ipc_endpoint: str, spawn_server: Callable[[str], subprocess.Popen[str]]
) -> None:
    first = spawn_server(ipc_endpoint)
    outcome: dict[str, Any] = {}
    with ControlClient(ipc_endpoint, timeout_s=0.5, retries=20) as client:
        assert client.call("ping")["pid"] == first.pid
        os.kill(first.pid, signal.SIGSTOP)

        def call_in_background() -> None:
            try:
                outcome["result"] = client.call("reseed", seed=5)
            except Exception as exc:
                outcome["error"] = exc

        caller = threading.Thread(target=call_in_background, daemon=True)
        caller.start()
        time.sleep(0.3)  # the first attempt is now stuck in the frozen daemon's queue
        first.kill()
        first.wait(10)
        second = spawn_server(ipc_endpoint)
        caller.join(15)
        assert not caller.is_alive()
        assert outcome == {"result": {"seed": 5}}
        assert client.call("status") == {"pid": second.pid, "reseed": 1}


@pytest.mark.subprocess
def test_nothing_sent_while_the_daemon_was_down_is_applied_later(
    ipc_endpoint: str, spawn_server: Callable[[str], subprocess.Popen[str]]
) -> None:
    with ControlClient(ipc_endpoint, timeout_s=2.0, retries=2) as client:
        assert client.send("reseed", seed=1) == -1
        spawn_server(ipc_endpoint)
        assert client.call("status")["reseed"] == 0


def test_retry_after_a_lost_reply_is_applied_once(ipc_endpoint: str) -> None:
    counter = Counter()
    with ThreadServedEndpoint(ipc_endpoint, {"reseed": counter.handler("reseed")}) as served:
        served.paused.set()  # the first attempt times out unanswered
        with ControlClient(ipc_endpoint, timeout_s=0.3, retries=5) as client:
            threading.Timer(0.5, served.paused.clear).start()
            assert client.call("reseed", seed=3) == {"seed": 3}
    assert counter.calls == {"reseed": 1}


@pytest.mark.subprocess
def test_close_with_undeliverable_requests_returns_promptly(
    ipc_endpoint: str, spawn_server: Callable[[str], subprocess.Popen[str]]
) -> None:
    server = spawn_server(ipc_endpoint)
    client = ControlClient(ipc_endpoint, timeout_s=1.0)
    assert client.call("ping")
    os.kill(server.pid, signal.SIGSTOP)
    try:
        # More than the send queue plus the kernel's socket buffer can hold.
        queued = [client.send("reseed", seed=n % 100) for n in range(5000)]
        assert any(request_id > 0 for request_id in queued)
        assert -1 in queued  # the queue filled up and dropped, it did not block
        started = time.monotonic()
        client.close()
        client.close()
        assert time.monotonic() - started < 0.5
    finally:
        os.kill(server.pid, signal.SIGCONT)
    with pytest.raises(WireError):
        client.call("ping")
    assert client.send("ping") == -1 and client.poll_replies() == []


@pytest.mark.parametrize("transport", ["tcp://127.0.0.1:*", "tcp://localhost:*", "ipc"])
def test_local_endpoints_serve_calls(transport: str, ipc_endpoint: str) -> None:
    wanted = ipc_endpoint if transport == "ipc" else transport
    with ThreadServedEndpoint(wanted, {"ping": lambda args: "pong"}) as served:
        assert "*" not in served.endpoint
        with ControlClient(served.endpoint) as client:
            assert client.call("ping") == "pong"


def test_ipv6_loopback_endpoint_serves_calls() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    with (
        ThreadServedEndpoint("tcp://[::1]:*", {"ping": lambda args: "pong"}) as served,
        ControlClient(served.endpoint) as client,
    ):
        assert served.endpoint.startswith("tcp://[::1]:")
        assert client.call("ping") == "pong"


def test_default_endpoint_in_the_runtime_dir_serves_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tempfile.mkdtemp(prefix="ca-run-", dir="/tmp")
    monkeypatch.setenv("CA_SERVER_RUNTIME_DIR", folder)
    try:
        endpoint = default_control_endpoint("gpu0")
        assert endpoint == f"ipc://{folder}/gpu0.ctl"
        with (
            ThreadServedEndpoint(endpoint, {"ping": lambda args: "pong"}),
            ControlClient(endpoint) as client,
        ):
            assert client.call("ping") == "pong"
        assert not Path(folder, "gpu0.ctl").exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_client_refuses_bad_settings() -> None:
    with pytest.raises(WireError):
        ControlClient("localhost:5555")
    with pytest.raises(ValueError, match="timeout_s"):
        ControlClient("tcp://127.0.0.1:5555", timeout_s=0)
    with pytest.raises(ValueError, match="retries"):
        ControlClient("tcp://127.0.0.1:5555", retries=-1)


@pytest.mark.parametrize(
    "argv",
    [
        ["ctl", "--json", "--timeout", "2", "--control", "{endpoint}", "speed", "1.5"],
        ["ctl", "speed", "1.5", "--json", "--timeout", "2", "--control", "{endpoint}"],
        ["ctl", "speed", "--json", "--timeout=2", "1.5", "--control={endpoint}"],
    ],
    ids=["before", "after", "mixed"],
)
def test_ctl_takes_its_options_before_or_after_the_command(ipc_endpoint: str, argv) -> None:
    from typer.testing import CliRunner

    from ca_server.cli import app

    counter = Counter()
    with ThreadServedEndpoint(ipc_endpoint, {"speed": counter.handler("speed")}):
        argv = [word.format(endpoint=ipc_endpoint) for word in argv]
        result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ok": True, "result": {"value": 1.5}}
    assert counter.calls == {"speed": 1}


def test_ctl_status_json_name_after_the_command_reaches_that_ring(runtime_dir: Path) -> None:
    from typer.testing import CliRunner

    from ca_server.cli import app
    from ca_server.exit_codes import ExitCode

    argv = ["ctl", "status", "--json", "--name", "absent", "--timeout", "0.2"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == ExitCode.UNAVAILABLE, result.output  # no daemon, said in JSON
    reply = json.loads(result.stdout)
    assert reply["ok"] is False and "absent.ctl" in reply["error"]["message"]
