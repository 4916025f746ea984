"""numpy vs CuPy agreement (runs only where CuPy and a CUDA GPU are available).

On the GPU the engines, keep-moving, flow, renderer, health monitor and crossfade take their fused
kernels (ca_server/fused.py); the same comparisons run on the CPU in test_fused.py, with the
kernels compiled by g++, so what only a GPU can show here is NVRTC, the CuPy launch and the
device's rounding (FMA contraction, its expf).
"""

from __future__ import annotations

import numpy as np
import pytest
from gpu_tolerances import ENGINE_CELL_ATOL, ENGINE_CELL_FRACTION

from ca_server.engines import create_engine
from ca_server.presets import load_preset, preset_names
from ca_server.xp import numpy_backend

pytestmark = pytest.mark.gpu
ONE_PER_ENGINE = ["coral", "sl_gliders", "mnca_worm", "medusa"]


def test_every_fused_kernel_compiles_with_nvrtc(gpu):
    from ca_server.fused import KERNEL_SOURCES
    from ca_server.simulation import Simulation  # noqa: F401 - registers every kernel

    for source in KERNEL_SOURCES:
        assert callable(gpu.fused_kernel(source)), source.name


@pytest.mark.parametrize("name", preset_names())
def test_one_step_agrees_with_numpy(gpu, name):
    preset = load_preset(name)
    cpu = create_engine(preset.engine, numpy_backend(), 256, 256, preset.engine_params)
    dev = create_engine(preset.engine, gpu, 256, 256, preset.engine_params)
    for engine in (cpu, dev):
        engine.seed(np.random.default_rng(3), preset.seed_kind, preset.seed_density)
    np.testing.assert_array_equal(cpu.world, gpu.to_host(dev.world))  # seeds drawn on the host
    for _ in range(3):
        cpu.step()
        dev.step()
    on_gpu = gpu.to_host(dev.world)
    # MNCA and narrow-band Lenia may flip a few threshold cells on FFT round-off.
    assert (np.abs(cpu.world - on_gpu) > ENGINE_CELL_ATOL).mean() < ENGINE_CELL_FRACTION


@pytest.mark.parametrize("name", ONE_PER_ENGINE)
def test_simulation_runs_on_the_gpu(gpu, name):
    from ca_server.simulation import Simulation

    sim = Simulation(gpu, width=256, height=256, preset=name, seed=1)
    host_frame = np.empty((256, 256, 3), np.uint8)
    for _ in range(60):
        frame = sim.next_frame(host_out=host_frame)
    world = gpu.to_host(sim.world)
    assert np.isfinite(world).all() and world.min() >= 0 and world.max() <= 1
    assert frame.shape == (256, 256, 3) and str(frame.dtype) == "uint8"
    np.testing.assert_array_equal(host_frame, gpu.to_host(frame))
    assert sim.health()["alive"] > 0.002


def test_mapped_host_memory_holds_kernel_writes_after_a_wait(gpu):
    host, device = gpu.host_mapped_array((4,), np.float32)
    assert not host.any()
    device[...] = gpu.xp.arange(1, 5, dtype=gpu.xp.float32)  # a kernel storing through the map
    gpu.synchronize()
    np.testing.assert_array_equal(host, [1, 2, 3, 4])


def test_a_death_on_the_gpu_is_never_published_black(gpu):
    # The health statistics reach the host through mapped memory, read after the frame copy's
    # wait; a stale read would let a dead world's frame out (the CPU twin: test_continuity.py).
    from ca_server.simulation import Simulation

    sim = Simulation(gpu, width=128, height=128, preset="coral", seed=3, crossfade_frames=4)
    sim.change.warmup_steps_per_tick = 10**6  # a regrowth lands on the next tick
    host_frame = np.empty((128, 128, 3), np.uint8)
    dark_frames = []
    for frame_index in range(90):
        if frame_index in (30, 31, 60):
            sim.world[...] = 0.0
        sim.next_frame(host_out=host_frame)
        if int(host_frame.max()) < 20:
            dark_frames.append(frame_index)
    assert not dark_frames
    assert sim.health()["regrowths"] >= 2


def test_health_statistics_agree_with_numpy(gpu):
    from ca_server.health import HealthMonitor, policy_for

    shape = (300, 520)
    monitors = [HealthMonitor(b, *shape, policy_for("lenia")) for b in (numpy_backend(), gpu)]
    rng = np.random.default_rng(5)
    for steps in (0, 1, 2):
        world = (rng.random(shape, dtype=np.float32) ** 4).astype(np.float32)
        cpu = (*monitors[0].measure(world, steps), monitors[0].peak)
        dev = (*monitors[1].measure(gpu.xp.asarray(world), steps), monitors[1].peak)
        np.testing.assert_allclose(cpu, dev, rtol=1e-5, equal_nan=True)


def test_out_of_memory_is_told_from_other_cuda_errors(gpu):
    from cupy.cuda import cufft, driver, memory, runtime

    out_of_memory = [
        memory.OutOfMemoryError(1 << 20, 0, 1 << 20),  # the pool, past its limit or device full
        runtime.CUDARuntimeError(2),  # cudaErrorMemoryAllocation: pinned host memory
        driver.CUDADriverError(2),  # CUDA_ERROR_OUT_OF_MEMORY: a module load
        cufft.CuFFTError(2),  # CUFFT_ALLOC_FAILED: planning, outside the pool
    ]
    other = [runtime.CUDARuntimeError(700), driver.CUDADriverError(700), cufft.CuFFTError(5)]
    assert [gpu.ran_out_of_memory(error) for error in out_of_memory] == [True] * 4
    assert [gpu.ran_out_of_memory(error) for error in other] == [False] * 3


def test_a_change_past_the_pool_limit_is_dropped_and_frames_go_on(gpu):
    # CuPy's own pool limit (the daemon's --max-vram-mb), set just above what steady frames
    # hold; the CPU twin with every phase: tests/ca/test_memory_cap.py.
    from ca_server.simulation import Simulation

    pool = gpu.xp.get_default_memory_pool()
    limit_before = pool.get_limit()
    sim = Simulation(gpu, width=256, height=256, preset="coral", warmup_steps_per_tick=200)
    host_frame = np.empty((256, 256, 3), np.uint8)
    for _ in range(5):
        sim.next_frame(host_out=host_frame)
    brightest = []
    try:
        pool.set_limit(size=pool.total_bytes() + 256 * 256 * 4)  # one field of room
        sim.set_preset("medusa")
        for _ in range(40):
            sim.next_frame(host_out=host_frame)
            brightest.append(int(host_frame.max()))
    finally:
        pool.set_limit(size=limit_before)
    assert min(brightest) > 0 and sim.showing == sim.preset_name == "coral"
    assert "'medusa'" in (sim.change_error or ""), sim.change_error
    sim.set_preset("medusa")
    for _ in range(60):
        sim.next_frame(host_out=host_frame)
    assert sim.showing == "medusa" and sim.change_error is None


def test_a_2048_change_fits_under_the_scaled_default_cap(gpu):
    # The memory model's check on a card (its CPU half: test_memory_model.py): the pool capped at
    # the default for 2048², cuFFT's work areas included, holds a change to another engine.
    from ca_server.config import scaled_vram_cap_mb
    from ca_server.simulation import Simulation

    pool = gpu.xp.get_default_memory_pool()
    limit_before = pool.get_limit()
    gpu.free_cached_memory()
    pool.set_limit(size=scaled_vram_cap_mb(2048, 2048) * 2**20)
    try:
        sim = Simulation(gpu, width=2048, height=2048, preset="sl_gliders", seed=0)
        host_frame = np.empty((2048, 2048, 3), np.uint8)
        sim.set_preset("mnca_worm")
        for _ in range(3000):
            sim.next_frame(host_out=host_frame)
            if sim.showing == "mnca_worm" and sim.arriving is None:
                break
        held_mb = pool.total_bytes() / 2**20
    finally:
        pool.set_limit(size=limit_before)
    assert sim.change_error is None and sim.showing == "mnca_worm", sim.change_error
    print(f"2048² change: pool held {held_mb:.0f} MB of {scaled_vram_cap_mb(2048, 2048)}")
