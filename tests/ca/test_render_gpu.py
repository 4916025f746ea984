"""The renderer and flow on CuPy agree with numpy (runs only where CuPy and a CUDA GPU exist)."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_tolerances import FLOW_ATOL, RENDER_CHANGED_PIXELS, RENDER_MAX_LEVELS, RENDER_MEAN_LEVELS

from ca_server.render import FlowAdvector, IridescentRenderer
from ca_server.render.palettes import build_color_lut, palette_by_name
from ca_server.render.resample import GaussianBlur
from ca_server.xp import numpy_backend

pytestmark = pytest.mark.gpu
SIZE = 256


def creature_world(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    world = np.zeros((SIZE, SIZE), np.float32)
    for _ in range(6):
        cy, cx = rng.uniform(0.2, 0.8, 2) * SIZE
        radius = rng.uniform(0.04, 0.1) * SIZE
        dist = np.hypot(y - cy, x - cx)
        world += np.exp(-(((dist - radius) / (0.35 * radius)) ** 2))
    return np.clip(world, 0, 1)


@pytest.mark.parametrize(
    "settings",
    [{}, {"palette": "scarab", "thickness": 5.0, "smoothing": 0.6, "hue": 0.3}],
    ids=["defaults", "all_stages"],
)
def test_renderer_agrees_with_numpy(gpu, settings):
    cpu = IridescentRenderer(numpy_backend(), SIZE, SIZE, seed=3, settings=settings)
    dev = IridescentRenderer(gpu, SIZE, SIZE, seed=3, settings=settings)
    for seed in range(3):
        world = creature_world(seed)
        on_cpu = cpu.render(world)
        on_gpu = gpu.to_host(dev.render(gpu.xp.asarray(world)))
        assert on_gpu.shape == (SIZE, SIZE, 3) and on_gpu.dtype == np.uint8
        # Tolerance: float32 rounding differs (FMA contraction on the GPU, cupyx's Gaussian),
        # ~1e-6 relative, so a pixel changes only where its index lands within ~1e-3 of a bin
        # edge and then by one table step: at most ~6 levels along the film axis (steepest
        # palette slope × 1/512) or one sqrt-spaced light step. The tables themselves differ by
        # one level in a few bytes (next test). Sized in tests/gpu_tolerances.py.
        difference = np.abs(on_cpu.astype(np.int16) - on_gpu)
        assert (difference.max(axis=2) > 0).mean() < RENDER_CHANGED_PIXELS
        assert difference.max() <= RENDER_MAX_LEVELS
        assert difference.mean() < RENDER_MEAN_LEVELS


@pytest.mark.parametrize(
    ("palette", "hue", "brightness"), [("oil_slick", 0.0, 1.0), ("scarab", 0.375, 2.2)]
)
def test_colour_table_built_on_the_device_matches_the_host_table(gpu, palette, hue, brightness):
    """The GPU builds the colour table itself (no upload per hue step). It works in float32, its
    tanhf is within 2 ulp and FMA may contract the rotation and scaling, so a byte on a rounding
    edge flips by one; on the CPU harness 4.2e-6 of bytes did."""
    renderer = IridescentRenderer(gpu, SIZE, SIZE, settings={"palette": palette})
    renderer.update({"hue": hue, "brightness": brightness})
    on_gpu = gpu.to_host(renderer._color_lut(renderer.settings))
    reference = build_color_lut(palette_by_name(palette), hue, brightness)
    difference = np.abs(reference.astype(np.int16) - on_gpu)
    assert difference.max() <= 1
    assert (difference > 0).mean() < 1e-3


@pytest.mark.parametrize("sigma", [0.6, 3.1])
def test_gaussian_blur_is_cupys_gaussian_filter(gpu, sigma):
    """GaussianBlur keeps its weights on the device instead of CuPy's upload per call; it runs the
    same two correlate1d passes with the same float32 weights, so it should match bit for bit;
    1e-6 leaves room for a different kernel order within CuPy, not for a wrong weight."""
    image = gpu.xp.asarray(creature_world(4))
    out = gpu.xp.empty_like(image)
    GaussianBlur(gpu, image.shape)(image, sigma, out=out)
    reference = gpu.ndimage.gaussian_filter(image, sigma, mode="wrap")
    np.testing.assert_allclose(gpu.to_host(out), gpu.to_host(reference), rtol=0, atol=1e-6)
    assert float(abs(out - image).max()) > 1e-3  # it did blur


def test_flow_agrees_with_numpy(gpu):
    strengths = {"radial": -0.3, "rotate": 0.35, "swirl": 0.5, "bubble": 0.2, "vortex": 0.3}
    cpu = FlowAdvector(numpy_backend(), SIZE, SIZE)
    dev = FlowAdvector(gpu, SIZE, SIZE)
    cpu.set_strengths(strengths)
    dev.set_strengths(strengths)
    field = creature_world(9)
    on_device = gpu.xp.asarray(field)
    for _ in range(10):
        field = cpu.advect(field)
        on_device = dev.advect(on_device)
    # The fused kernel floors the same float32 displacement the numpy path floors and blends the
    # same four taps in the same order: only rounding (FMA contraction) differs, ~1e-7 per step.
    np.testing.assert_allclose(gpu.to_host(on_device), field, atol=FLOW_ATOL)
