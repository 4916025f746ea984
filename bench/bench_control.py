"""Benchmark of the control channel: round-trip latency of `ControlClient.call("ping")` against a
`ControlEndpoint` in another process, over ipc:// and loopback TCP; prints a markdown table.

Run: `.venv/bin/python bench/bench_control.py [--count 5000]`. The goal is a median ≤ 200 µs.
"""

from __future__ import annotations

import argparse
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import zmq

from ca_server.wire.control import ControlClient

GOAL_US = 200.0

# The endpoint process polls with a timeout, as the daemon's loop would between frames.
SERVER_SCRIPT = """
import os, signal, sys, time
from ca_server.wire.control import ControlEndpoint
endpoint = ControlEndpoint(sys.argv[1], {"ping": lambda args: {"t_ns": time.monotonic_ns()}})
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
print(endpoint.endpoint, flush=True)
deadline = time.monotonic() + 600
while not stopping and time.monotonic() < deadline:
    endpoint.poll(100)
endpoint.close()
"""


def start_server(endpoint: str) -> tuple[subprocess.Popen[str], str]:
    """Start the endpoint process; returns it and the endpoint it bound (port resolved)."""
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, endpoint], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    bound = process.stdout.readline().strip() if ready else ""
    if not bound:
        process.kill()
        raise SystemExit(f"control endpoint process did not bind {endpoint} within 30 s")
    return process, bound


def measure_ping_us(endpoint: str, count: int, warmup: int) -> np.ndarray:
    """Round-trip times of `count` pings after `warmup` unmeasured ones.

    Returns float64 array of shape (count,), microseconds, on the host.
    """
    timings_us = np.empty(count, dtype=np.float64)
    with ControlClient(endpoint, timeout_s=2.0, retries=1) as client:
        for _ in range(warmup):
            client.call("ping")
        for index in range(count):
            started_ns = time.perf_counter_ns()
            client.call("ping")
            timings_us[index] = (time.perf_counter_ns() - started_ns) / 1000.0
    return timings_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="measured pings per transport")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured pings first")
    options = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="ca-bench-", dir="/tmp")
    transports = {"ipc://": f"ipc://{folder}/bench.ctl", "tcp://127.0.0.1": "tcp://127.0.0.1:*"}
    rows = []
    try:
        for label, wanted in transports.items():
            process, bound = start_server(wanted)
            try:
                timings_us = measure_ping_us(bound, options.count, options.warmup)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(10)
            median, p90, p99 = np.percentile(timings_us, [50, 90, 99])
            verdict = "yes" if median <= GOAL_US else "no"
            rows.append(f"| {label} | {options.count} | {median:.0f} | {p90:.0f} | {p99:.0f} |"
                        f" {verdict} |")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f'`call("ping")` round trip, endpoint in another process; {os.cpu_count()} CPUs, '
        f"Python {platform.python_version()}, pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}"
    )
    print()
    print(f"| transport | pings | median µs | p90 µs | p99 µs | median ≤ {GOAL_US:.0f} µs |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
