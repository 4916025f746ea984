"""The host harness runs kernels as a grid, so geometry bugs and order-dependent races fail on CPU.

tests/host_cuda.py launches every kernel as GRID_BLOCKS blocks of BLOCK_THREADS threads and, on
copies, again in reverse order. Here the bugs it exists for are planted (in a patched prelude or
a test-only kernel, never in the product's code) and each must be caught: a grid-stride loop
that forgets gridDim (elements updated once per block), one that ignores blockIdx (elements
never visited), and an in-place stencil whose threads read neighbours other threads rewrite.
"""

from __future__ import annotations

import numpy as np
import pytest
from host_cuda import (
    BLOCK_THREADS,
    GRID_BLOCKS,
    HostKernelCompiler,
    compiler_available,
    host_fused_backend,
)

import ca_server.fused
from ca_server.engines import create_engine
from ca_server.fused import KERNEL_SOURCES, PRELUDE, KernelSource
from ca_server.presets import load_preset
from ca_server.xp import numpy_backend

pytestmark = pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")

GRID_STRIDE = "i += (long long)blockDim.x * gridDim.x)"
BLOCK_START = "(long long)blockIdx.x * blockDim.x + threadIdx.x;"
PLANTED_PRELUDES = {
    "forgets gridDim": PRELUDE.replace(GRID_STRIDE, "i += (long long)blockDim.x)"),
    "ignores blockIdx": PRELUDE.replace(BLOCK_START, "(long long)threadIdx.x;"),
}


def lenia_difference(steps: int = 2) -> float:
    """Largest |numpy - fused| in the world after `steps` Lenia steps at 64²."""
    preset = load_preset("coral")
    engines = [
        create_engine(preset.engine, backend, 64, 64, preset.engine_params)
        for backend in (numpy_backend(fft_workers=1), host_fused_backend())
    ]
    for engine in engines:
        engine.seed(np.random.default_rng(2), preset.seed_kind, preset.seed_density)
        for _ in range(steps):
            engine.step()
    return float(np.abs(engines[0].world - engines[1].world).max())


def test_the_grid_is_several_blocks_of_several_threads():
    assert GRID_BLOCKS > 1 and BLOCK_THREADS > 1


def test_the_product_prelude_agrees_with_numpy():
    assert lenia_difference() < 1e-5


@pytest.mark.parametrize("bug", PLANTED_PRELUDES)
def test_a_planted_grid_stride_bug_is_caught(bug, monkeypatch):
    planted = PLANTED_PRELUDES[bug]
    assert planted != PRELUDE  # the bug is in
    monkeypatch.setattr(ca_server.fused, "PRELUDE", planted)
    assert lenia_difference() > 1e-3, bug


def test_a_kernel_reading_neighbours_it_rewrites_is_caught():
    # An in-place three-cell blur: a thread reads cells another thread of the launch writes, so
    # on a GPU the result depends on which runs first.
    source = KernelSource(
        "test_in_place_blur",
        r"""
extern "C" __global__ void test_in_place_blur(float* field, const long long n) {
    CA_FOR_EACH(i, n) { field[i] = (field[ca_wrap(i - 1, n)] + field[i] + field[(i + 1) % n]) / 3; }
}
""",
    )
    KERNEL_SOURCES.remove(source)  # a test-only kernel: not one of the product's
    field = np.random.default_rng(0).random(500).astype(np.float32)
    launch = HostKernelCompiler().compile(source)
    with pytest.raises(AssertionError, match="differ between forward and reverse block order"):
        launch(field.size, field)
    unchecked = field.copy()
    HostKernelCompiler(check_order=False).compile(source)(unchecked.size, unchecked)  # runs


def test_an_out_of_place_blur_passes_the_order_check():
    source = KernelSource(
        "test_out_of_place_blur",
        r"""
extern "C" __global__ void test_out_of_place_blur(
    float* out, const float* field, const long long n) {
    CA_FOR_EACH(i, n) { out[i] = (field[ca_wrap(i - 1, n)] + field[i] + field[(i + 1) % n]) / 3; }
}
""",
    )
    KERNEL_SOURCES.remove(source)
    field = np.random.default_rng(0).random(500).astype(np.float32)
    out = np.zeros_like(field)
    HostKernelCompiler().compile(source)(field.size, out, field)
    expected = (np.roll(field, 1) + field + np.roll(field, -1)) / np.float32(3)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
