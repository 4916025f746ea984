"""The daemon's frame loop, in process: one device-to-host copy per frame, and never a black frame.

A real `CAServer` (real ring in a private /dev/shm folder, real control socket, numpy backend at
128 px) produces frames through `_produce_frame`, the body of its loop, and a real `RingReader`
reads each published frame. The backend counts its device-to-host copies (`to_host`): the health
statistics reach the host without one (written into mapped memory on the GPU; the same array on
numpy), so a healthy frame makes exactly one copy, the frame's. Deaths are forced by zeroing the
on-screen world between frames; the loop must notice after rendering, put the last visible
picture back and render again before publishing: that frame alone makes a second copy. The
second test runs the same frame on the GPU path with CuPy's host/device rules kept on the CPU
(tests/device_boundary.py). What neither can check is the GPU side of the mapped memory:
`tests/ca/test_gpu.py` does.
"""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

import numpy as np
import pytest
from device_boundary import DEVICE_POOL, device_boundary_backend, device_memory_limit, watch
from host_cuda import compiler_available

from ca_server.cli.ctl import format_status
from ca_server.config import ServerConfig
from ca_server.server import CAServer
from ca_server.wire.protocol import Reply, decode_reply, encode_reply
from ca_server.wire.ring import RingReader
from ca_server.xp import Backend, numpy_backend

SIZE = 128
FRAMES = 80
DEATH_FRAMES = (30, 31, 50)
VISIBLE_FRAME_MAX = 20  # a peak of 0.1 density renders at ~27/255; black is 0


@dataclasses.dataclass(frozen=True)
class CopyCountingBackend(Backend):
    """The numpy backend, recording the byte size of every device-to-host copy."""

    copies: list[int] = dataclasses.field(default_factory=list)

    def to_host(self, array: Any, out: np.ndarray | None = None) -> np.ndarray:
        self.copies.append(int(array.nbytes))
        return super().to_host(array, out)


def test_one_copy_per_frame_and_no_black_frame_after_deaths(runtime_dir, shm_dir) -> None:
    numpy = numpy_backend(fft_workers=1)
    fields = {field.name: getattr(numpy, field.name) for field in dataclasses.fields(numpy)}
    backend = CopyCountingBackend(**fields)
    config = ServerConfig(backend="numpy", width=SIZE, height=SIZE, name="loop", preset="coral")
    server = CAServer(config.resolved("numpy"), backend)
    reader = RingReader("loop")
    copies_per_frame, dark_frames = [], []
    try:
        reader.attach()
        for frame_index in range(FRAMES):
            if frame_index in DEATH_FRAMES:
                server.simulation.world[...] = 0.0
            before = len(backend.copies)
            server._produce_frame()
            copies_per_frame.append(backend.copies[before:])
            result = reader.read_new(1)
            assert len(result.pixels) == 1, result.message
            if int(result.pixels[0].max()) < VISIBLE_FRAME_MAX:
                dark_frames.append(frame_index)
    finally:
        reader.close()
        server.close()
    frame_bytes = SIZE * SIZE * 3
    other_copies = [size for sizes in copies_per_frame for size in sizes if size != frame_bytes]
    assert not other_copies, f"device-to-host copies besides the frame's: {other_copies[:8]}"
    redone = [index for index, sizes in enumerate(copies_per_frame) if len(sizes) != 1]
    assert not dark_frames, f"published black frames {dark_frames}"
    # The deaths on screen are the frames rendered twice (the one at 31 falls on a held picture
    # whose keepsake comes back too); every other frame made exactly one copy.
    assert redone == list(DEATH_FRAMES), copies_per_frame
    assert all(len(sizes) == 2 for index, sizes in enumerate(copies_per_frame) if index in redone)
    assert server.simulation.health()["regrowths"] >= 1


def started_boundary_server(name: str) -> tuple[CAServer, RingReader]:
    """A CAServer on tests/device_boundary.py's backend, its ring's reader attached, 3 frames in."""
    config = ServerConfig(backend="numpy", width=SIZE, height=SIZE, name=name, preset="coral")
    server = CAServer(config.resolved("numpy"), device_boundary_backend())
    reader = RingReader(name)
    try:
        reader.attach()
        for _ in range(3):
            server._produce_frame()
    except BaseException:
        reader.close()
        server.close()
        raise
    return server, reader


@pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")
def test_on_the_gpu_path_a_frame_crosses_once_and_status_reads_nothing(
    runtime_dir, shm_dir
) -> None:
    """The same daemon frame on tests/device_boundary.py's backend (the fused path with CuPy's
    host/device rules, no GPU needed): the frame's copy into the ring slot and settle's wait
    behind it are its only crossings, and a `status` reply, encoded for the wire, carries host
    values only (a device scalar would be a hidden read on CuPy, or fail to encode)."""
    server, reader = started_boundary_server("gpuloop")
    try:
        with watch() as crossings:
            for _ in range(10):
                server._produce_frame()
                assert len(reader.read_new(1).pixels) == 1
            encode_reply(Reply(id=1, ok=True, result=server.status()))
    finally:
        reader.close()
        server.close()
    # The ring slots are page-locked (CAServer pins them), so the copy is CUDA's direct DMA.
    frame_copy = ("copy", "get() into page-locked memory", SIZE * SIZE * 3)
    settle_wait = ("wait", "synchronize()", 0)
    seen = [(crossing.kind, crossing.what, crossing.nbytes) for crossing in crossings]
    others = [
        str(crossing)
        for crossing, kind_what in zip(crossings, seen, strict=True)
        if kind_what not in (frame_copy, settle_wait)
    ]
    assert seen == [frame_copy, settle_wait] * 10, others or seen


@pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")
def test_a_preset_change_past_the_memory_cap_is_dropped_reported_and_frames_go_on(
    runtime_dir, shm_dir
) -> None:
    """`ctl preset` to a preset whose warm-up does not fit the device pool's limit (the
    boundary backend refuses allocations past it as CuPy's capped pool does): every frame is
    still published, the old preset stays, and `ctl status` says what was dropped and why."""
    server, reader = started_boundary_server("capped")
    try:
        gc.collect()
        DEVICE_POOL.reset_peak()
        server._produce_frame()
        with device_memory_limit(DEVICE_POOL.peak_bytes):  # room for steady frames only
            server._handlers()["preset"]({"name": "medusa"})
            for _ in range(10):
                server._produce_frame()
                assert len(reader.read_new(1).pixels) == 1
        status = decode_reply(encode_reply(Reply(id=1, ok=True, result=server.status()))).result
    finally:
        reader.close()
        server.close()
    assert status["preset"] == status["health"]["showing"] == "coral"
    assert "'medusa'" in status["health"]["change_error"]
    assert "dropped      out of memory for 'medusa'" in format_status(status)
