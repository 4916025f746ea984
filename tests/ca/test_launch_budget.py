"""A launch budget: the device operations a steady frame issues stay under a bound per preset.

At 1024² a GPU frame is host-bound: each device operation costs CuPy several µs of Python
dispatch while its kernel runs in about one (docs/architecture.md; issue 20 estimates 0.10-0.16
ms of device time against 0.25-0.57 ms of host time). So the count of operations per frame is
what to hold, and it is counted here on the CPU, not timed: tests/device_boundary.py's backend
runs the GPU branches with the fused kernels compiled for the host and counts every operation
CuPy would issue (ufuncs, array functions that write, FFTs, filters, assignments, copies, fused
launches). The host µs per frame is measured, not asserted, by bench/bench_launches.py.
Budgets are today's counts (mean over 30 steady frames at speed 1, seed 0; the count follows
frame numbers, not time) rounded up: one more operation in the frame's path fails here and must
be budgeted on purpose; one fewer should lower the budget.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
from device_boundary import DEVICE_OPERATIONS, device_boundary_backend
from host_cuda import compiler_available

from ca_server.presets import load_preset, preset_names
from ca_server.simulation import Simulation

pytestmark = pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")

SIZE = 128  # the count does not depend on the size
FRAMES = 30
# Operations per steady frame, by engine unless a preset is listed. Today (2026-12-03): 19.5
# (lenia, smoothlife, mnca; one step a frame: FFT, spectrum product, inverse FFT, update, flow,
# keep-moving + 4 blur passes, 5 render and 2 health kernels, the frame's copy), 20.5
# (gray_scott: two substeps), 23.6 (amoeba: 1.6 steps a frame), 25.5 (tide_pool: 1.9).
# Issue 25 (2026-12-04) added 4 to each, the film smoothing (its box-mean downsample, two blur
# passes, film_upsample): 23.5, 24.5, 27.6, 29.5.
ENGINE_BUDGET = {"lenia": 24, "smoothlife": 24, "mnca": 24, "gray_scott": 25}
PRESET_BUDGET = {"amoeba": 28, "tide_pool": 30}


def budget(name: str) -> int:
    return PRESET_BUDGET.get(name, ENGINE_BUDGET[load_preset(name).engine])


def steady_operations(name: str, frames: int = FRAMES) -> tuple[float, collections.Counter[str]]:
    """(mean operations per steady frame, each operation's site counted) for preset `name`."""
    simulation = Simulation(device_boundary_backend(), width=SIZE, height=SIZE, preset=name, seed=0)
    slot = np.empty((SIZE, SIZE, 3), np.uint8)
    unpin = simulation.backend.pin_host_memory(slot)
    try:
        for _ in range(3):  # the first frames build the renderer's tables
            simulation.next_frame(host_out=slot)
        DEVICE_OPERATIONS.sites = collections.Counter()
        before = DEVICE_OPERATIONS.total
        for _ in range(frames):
            simulation.next_frame(host_out=slot)
        return (DEVICE_OPERATIONS.total - before) / frames, DEVICE_OPERATIONS.sites
    finally:
        DEVICE_OPERATIONS.sites = None
        unpin()


@pytest.mark.parametrize("name", preset_names())
def test_a_steady_frame_stays_within_its_launch_budget(name):
    per_frame, sites = steady_operations(name)
    listing = "\n".join(f"{count / FRAMES:5.2f} {site}" for site, count in sites.most_common())
    assert per_frame <= budget(name), f"{name}: {per_frame:.1f} operations a frame:\n{listing}"
    assert per_frame >= 10, f"{name}: too few operations counted, is the counter wired?\n{listing}"


def test_an_extra_operation_a_frame_is_over_budget(monkeypatch):
    # What the budget is for: one more array operation in every frame's path must fail it.
    from ca_server.render.iridescent import IridescentRenderer

    render = IridescentRenderer.render

    def render_with_an_extra_operation(self, world, out=None):
        world *= 1.0  # one ufunc launch on CuPy
        return render(self, world, out)

    monkeypatch.setattr(IridescentRenderer, "render", render_with_an_extra_operation)
    per_frame, _ = steady_operations("coral", frames=10)
    assert per_frame > budget("coral")


def test_the_counter_counts_what_cupy_would_launch():
    backend = device_boundary_backend()
    xp = backend.xp
    before = DEVICE_OPERATIONS.total
    a = xp.zeros((8, 8), np.float32)  # 1: a fill
    b = xp.empty_like(a)  # 0: no kernel
    xp.multiply(a, 2.0, out=b)  # 1
    b += a  # 1
    view = b[2:4]  # 0: a view
    view[...] = 1.0  # 1
    backend.fft.rfft2(a)  # 1
    backend.to_host(b)  # 1: the copy
    assert DEVICE_OPERATIONS.total - before == 6
