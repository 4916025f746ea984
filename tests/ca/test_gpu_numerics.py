"""The `gpu` tests' tolerances leave room for the device's rounding: measured here, on the CPU.

NVRTC under CuPy contracts multiply-adds into FMAs and flushes denormals to zero (`-ftz=true`).
tests/host_cuda.py's "gpu" numerics builds the fused kernels the same way (g++
-ffp-contract=fast -mfma, FTZ and DAZ set in MXCSR around each launch); these tests run the `gpu`
tests' own scenarios through it and require what it shows to be at most a tenth of each bound in
tests/gpu_tolerances.py, so the bounds are sized from a measured difference, not guessed.
"""

from __future__ import annotations

import numpy as np
import pytest
from gpu_tolerances import (
    ENGINE_CELL_ATOL,
    ENGINE_CELL_FRACTION,
    FLOW_ATOL,
    RENDER_CHANGED_PIXELS,
    RENDER_MAX_LEVELS,
    RENDER_MEAN_LEVELS,
)
from host_cuda import compiler_available, host_fused_backend

from ca_server.engines import create_engine
from ca_server.presets import load_preset
from ca_server.render import FlowAdvector, IridescentRenderer
from ca_server.xp import numpy_backend

pytestmark = pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")

SIZE = 256  # the gpu tests' size
MARGIN = 10  # each bound is at least this many times what FMA and FTZ alone change


def creature_world(seed: int) -> np.ndarray:
    """test_render_gpu's test image: six soft rings, float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    world = np.zeros((SIZE, SIZE), np.float32)
    for _ in range(6):
        cy, cx = rng.uniform(0.2, 0.8, 2) * SIZE
        radius = rng.uniform(0.04, 0.1) * SIZE
        world += np.exp(-(((np.hypot(y - cy, x - cx) - radius) / (0.35 * radius)) ** 2))
    return np.clip(world, 0, 1)


def engine_worlds(name: str, numerics: str) -> tuple[np.ndarray, np.ndarray]:
    """(numpy world, fused world built with `numerics`) after test_gpu's 3 steps at 256²."""
    preset = load_preset(name)
    engines = [
        create_engine(preset.engine, backend, SIZE, SIZE, preset.engine_params)
        for backend in (numpy_backend(fft_workers=1), host_fused_backend(numerics))
    ]
    for engine in engines:
        engine.seed(np.random.default_rng(3), preset.seed_kind, preset.seed_density)
        for _ in range(3):
            engine.step()
    return engines[0].world, engines[1].world


@pytest.mark.parametrize("name", ["coral", "sl_gliders", "mnca_worm", "medusa"])
def test_engine_tolerance_covers_fma_and_flushed_denormals(name):
    reference, gpu_like = engine_worlds(name, "gpu")
    difference = np.abs(reference - gpu_like)
    assert float(difference.max()) * MARGIN <= ENGINE_CELL_ATOL, name
    assert (difference > ENGINE_CELL_ATOL / MARGIN).mean() * MARGIN <= ENGINE_CELL_FRACTION


def test_the_gpu_numerics_build_does_contract():
    # Without FMA the "gpu" build would equal the strict one and size nothing.
    strict, gpu_like = engine_worlds("coral", "strict")[1], engine_worlds("coral", "gpu")[1]
    assert float(np.abs(strict - gpu_like).max()) > 0


@pytest.mark.parametrize(
    "settings",
    [{}, {"palette": "scarab", "thickness": 5.0, "smoothing": 0.6, "hue": 0.3}],
    ids=["defaults", "all_stages"],
)
def test_render_tolerance_covers_fma_and_flushed_denormals(settings):
    cpu = IridescentRenderer(numpy_backend(), SIZE, SIZE, seed=3, settings=settings)
    gpu_like = IridescentRenderer(host_fused_backend("gpu"), SIZE, SIZE, seed=3, settings=settings)
    for seed in range(3):
        world = creature_world(seed)
        difference = np.abs(cpu.render(world).astype(np.int16) - gpu_like.render(world))
        assert (difference.max(axis=2) > 0).mean() * MARGIN <= RENDER_CHANGED_PIXELS
        assert difference.max() * MARGIN <= RENDER_MAX_LEVELS
        assert difference.mean() * MARGIN <= RENDER_MEAN_LEVELS


def test_flow_tolerance_covers_fma_and_flushed_denormals():
    strengths = {"radial": -0.3, "rotate": 0.35, "swirl": 0.5, "bubble": 0.2, "vortex": 0.3}
    cpu = FlowAdvector(numpy_backend(), SIZE, SIZE)
    gpu_like = FlowAdvector(host_fused_backend("gpu"), SIZE, SIZE)
    cpu.set_strengths(strengths)
    gpu_like.set_strengths(strengths)
    field = creature_world(9)
    on_gpu_like = field.copy()
    for _ in range(10):
        field = cpu.advect(field)
        on_gpu_like = gpu_like.advect(on_gpu_like)
    assert float(np.abs(field - on_gpu_like).max()) * MARGIN <= FLOW_ATOL
