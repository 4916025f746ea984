"""Test doubles and helpers for the plugin tests: fake and real daemons, frame patterns.

`FakeDaemon` is a real `RingWriter` plus a real `ControlEndpoint` (ZeroMQ) that records every op
it is sent; it stands in for the daemon's simulation so the plugin's core is tested without it.
`RealDaemon` runs `python -m ca_server.cli serve` on the numpy backend as a subprocess (the
shared `daemon_process.DaemonProcess`, fixed at 30 fps).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from daemon_process import DEFAULT_SIZE, DaemonProcess

from ca_server.wire.control import ControlEndpoint
from ca_server.wire.paths import default_control_endpoint
from ca_server.wire.ring import RingWriter

HANG_BOUND_S = 10.0  # "soon" for a loaded 2-core box; a bound against hangs, not a speed claim


def frame_pattern(frame_id: int, height: int, width: int) -> np.ndarray:
    """A (height, width, 3) uint8 frame that encodes `frame_id` in every pixel."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[..., 0] = frame_id % 256
    frame[..., 1] = (frame_id // 256) % 256
    frame[..., 2] = np.arange(width, dtype=np.uint8)[None, :]
    return frame


def decode_frame_id(frame: np.ndarray) -> int:
    return int(frame[0, 0, 0]) + 256 * int(frame[0, 0, 1])


class FakeDaemon:
    """A ring writer and a recording control endpoint under one ring name, in this process."""

    def __init__(self, name: str, *, width: int = 64, height: int = 48, fps: float = 30.0):
        self.name = name
        self.width, self.height = width, height
        self.endpoint_address = default_control_endpoint(name)
        self.ops: list[tuple[str, dict[str, Any]]] = []
        handlers = {op: self._recorder(op) for op in ("preset", "speed", "hue", "brightness")}
        handlers["reseed"] = self._recorder("reseed")
        handlers["ping"] = lambda args: {"t_ns": time.monotonic_ns()}
        self.endpoint = ControlEndpoint(self.endpoint_address, handlers)
        self.writer = RingWriter(
            name,
            width,
            height,
            slots=8,
            control_endpoint=self.endpoint_address,
            nominal_fps=fps,
        )
        self.next_id = 0

    def _recorder(self, op: str):
        def handle(args):
            if op == "preset" and args["name"] == "no_such_preset":
                from ca_server.wire.errors import ControlError

                raise ControlError("unknown_preset", "unknown preset 'no_such_preset'")
            self.ops.append((op, dict(args)))
            return {"params_version": len(self.ops)}

        return handle

    def publish(self, count: int = 1) -> list[int]:
        ids = []
        for _ in range(count):
            frame = frame_pattern(self.next_id, self.height, self.width)
            ids.append(self.writer.write(frame, sim_step=self.next_id, params_version=0))
            self.next_id += 1
        return ids

    def serve(self, duration_s: float = 0.0) -> None:
        """Answer pending control requests (for up to `duration_s`)."""
        deadline = time.monotonic() + duration_s
        while True:
            self.endpoint.poll(timeout_ms=1)
            if time.monotonic() >= deadline:
                return

    def ops_named(self, op: str) -> list[dict[str, Any]]:
        return [args for name, args in self.ops if name == op]

    def close(self) -> None:
        self.endpoint.close()
        self.writer.close()


class RealDaemon(DaemonProcess):
    """`ca-server serve` on the numpy backend at `size`², 30 fps, in a subprocess."""

    def __init__(self, name: str, runtime_dir: Path, size: int = DEFAULT_SIZE) -> None:
        env = {**os.environ, "CA_SERVER_RUNTIME_DIR": str(runtime_dir)}
        super().__init__(name, env=env, size=size, serve_options=("--fps", "30"))
