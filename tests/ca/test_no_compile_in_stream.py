"""No compile in the stream: after the first frame, nothing makes CuPy build a kernel.

CuPy builds some kernels of its own the first time it meets a new variant of a call (NVRTC, a
fraction of a second on a fresh pod; a disk-cache load after): `correlate1d` per weight length, so
a thickness drag makes new ones; `maximum_filter` per size; `zoom` per output shape, at the end of
every warm-up on a reduced grid; an integer-array index, as `stamp_max` did. The package runs its
own fused kernels instead, all built before the first frame (KERNEL_SOURCES). This drives the GPU
path on the CPU (tests/device_boundary.py: the fused kernels compiled for the host, CuPy's
boundary rules, and every self-compiling call noted by variant) through a first frame, then a
thickness drag, a preset change warmed up on a reduced grid and scaled up, and cluster drops,
and lists each variant seen for the first time after the first frame: there must be none.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from device_boundary import COMPILED_VARIANTS, device_boundary_backend
from host_cuda import compiler_available, host_fused_backend

import ca_server.warmup
from ca_server.engines.base import (
    GridUpscaleKernel,
    GridUpscaleZoom,
    StampMaxKernel,
    StampMaxPasses,
)
from ca_server.render import IridescentRenderer
from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend

pytestmark = pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")

SIZE = 128
MAX_TICKS = 600  # far more than the warm-up takes at 64² (it lands in ~15 ticks here)


def test_nothing_compiles_after_the_first_frame(monkeypatch):
    # A 128² frame warms a preset up on a 64² grid and scales it up, as 512² and up do at 256².
    monkeypatch.setattr(ca_server.warmup, "WARMUP_MIN_SIDE_PX", SIZE // 2)
    renderers: list[IridescentRenderer] = []

    def recording_renderer(*args: Any, **kwargs: Any) -> IridescentRenderer:
        renderers.append(IridescentRenderer(*args, **kwargs))
        return renderers[-1]

    backend = device_boundary_backend()
    simulation = Simulation(
        backend,
        width=SIZE,
        height=SIZE,
        preset="coral",
        seed=0,
        renderer_factory=recording_renderer,
    )
    simulation.next_frame()
    seen_by_the_first_frame = set(COMPILED_VARIANTS.first_sites)

    for thickness in (1.0, 3.0, 6.5, 9.0, 14.0, 20.0):  # a thickness drag, sigma and size change
        renderers[0].thickness = thickness
        simulation.next_frame()
    simulation.set_preset("labyrinth")  # Gray-Scott: warmed up at 64², then scaled up
    for _ in range(MAX_TICKS):
        simulation.next_frame()
        if simulation.showing == "labyrinth" and simulation.arriving is None:
            break
    assert simulation.showing == "labyrinth"
    renderers[-1].thickness = 7.0
    rng = np.random.default_rng(3)
    for _ in range(3):  # cluster drops: stamps of seeds into the world
        simulation.change.current.engine.drop_cluster(rng)
        simulation.next_frame()

    compiled = COMPILED_VARIANTS.new_since(seen_by_the_first_frame)
    assert not compiled, "CuPy would compile in the stream:\n" + "\n".join(compiled)


def test_the_list_sees_a_new_variant():
    # Guards the test above: a self-compiling call with a new variant is listed, a repeat is not.
    # (Variants no other test uses: the registry lives as long as the test process.)
    backend = device_boundary_backend()
    image = backend.xp.zeros((8, 8), np.int16)
    out = backend.xp.empty_like(image)
    backend.ndimage.maximum_filter(image, size=3, output=out, mode="wrap")
    seen = set(COMPILED_VARIANTS.first_sites)
    backend.ndimage.maximum_filter(image, size=3, output=out, mode="wrap")
    assert COMPILED_VARIANTS.new_since(seen) == []
    backend.ndimage.maximum_filter(image, size=37, output=out, mode="wrap")
    image[backend.xp.asarray(np.array([1, 2]))] = 1
    new = COMPILED_VARIANTS.new_since(seen)
    assert len(new) == 2 and "size=37" in new[0] and "index write of int16" in new[1], new


# The kernels that replace CuPy's own, against the numpy calls they replace.


@pytest.mark.parametrize(("factor_y", "factor_x"), [(2, 2), (4, 4), (2, 4)])
def test_grid_upscale_kernel_matches_zoom(factor_y, factor_x):
    rng = np.random.default_rng(factor_y * 10 + factor_x)
    small = rng.random((24, 20), dtype=np.float32) * 1.2 - 0.1  # some outside [0, 1]: clipped
    field = np.empty((24 * factor_y, 20 * factor_x), np.float32)
    expected = np.empty_like(field)
    GridUpscaleKernel(host_fused_backend())(small, field)
    GridUpscaleZoom(numpy_backend(1))(small, expected)
    np.testing.assert_allclose(field, expected, rtol=0, atol=2e-6)
    assert field.min() == 0.0 and field.max() == 1.0


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_stamp_kernel_matches_numpy_for_patches_wider_than_the_field():
    # A patch wider than the field lands on some cells twice; numpy's last write wins, and so
    # must one thread per cell (a race otherwise, which the host harness's reverse order shows).
    rng = np.random.default_rng(5)
    stamps = [(3.0, 30.0, rng.random((21, 9), dtype=np.float32)), (15.0, 2.0, rng.random((5, 5)))]
    start = rng.random((16, 18), dtype=np.float32)
    start[4, 4] = np.nan
    stamps[1][2][0, 0] = np.nan
    expected, actual = start.copy(), start.copy()
    StampMaxPasses(numpy_backend(1))(expected, stamps)
    StampMaxKernel(host_fused_backend())(actual, stamps)
    np.testing.assert_array_equal(actual, expected)
    assert not np.array_equal(expected, start)
