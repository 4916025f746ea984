"""The renderer's and bloom's fused kernels compute what their numpy sequences do, in few launches.

The fused path runs on the CPU here (tests/host_cuda.py compiles the CUDA C with g++); the
`gpu`-marked test_render_gpu.py compares a real device with numpy under the same tolerance.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from host_cuda import compiler_available, host_fused_backend, nvcc_check

from ca_server.render import IridescentRenderer
from ca_server.render.bloom import BLOOM_DOWNSAMPLE, BLOOM_UPSAMPLE_ADD, Bloom
from ca_server.render.film_smoothing import FILM_UPSAMPLE, FilmSmoother
from ca_server.render.iridescent_kernels import (
    RENDER_COLOUR,
    RENDER_COLOUR_TABLE,
    RENDER_DISPLAY,
    RENDER_SHADE,
)
from ca_server.render.palettes import (
    COORD_BINS,
    EXPOSURE,
    PALETTE_NAMES,
    PALETTES,
    VALUE_BINS,
    VALUE_SQRT_SCALE,
    build_color_lut,
    hue_rotation_matrix,
    palette_colours,
)
from ca_server.render.resample import BilinearUpsampler
from ca_server.render.thicken import THICKEN_DOWNSAMPLE, THICKEN_UPSAMPLE_MAX, StrandThickener
from ca_server.xp import numpy_backend

pytestmark = pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")

SIZE = 128
RENDER_KERNELS = (
    RENDER_DISPLAY,
    RENDER_SHADE,
    RENDER_COLOUR,
    RENDER_COLOUR_TABLE,
    BLOOM_DOWNSAMPLE,
    BLOOM_UPSAMPLE_ADD,
    THICKEN_DOWNSAMPLE,
    THICKEN_UPSAMPLE_MAX,
    FILM_UPSAMPLE,
)
NVCC = shutil.which("nvcc")


def creature_world(height: int, width: int, seed: int) -> np.ndarray:
    """Soft rings like Lenia creatures: (height, width) float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    world = np.zeros((height, width), np.float32)
    for _ in range(6):
        cy, cx = rng.uniform(0.2, 0.8, 2) * (height, width)
        radius = rng.uniform(0.04, 0.1) * min(height, width)
        dist = np.hypot(y - cy, x - cx)
        world += np.exp(-(((dist - radius) / (0.35 * radius)) ** 2))
    return np.clip(world, 0, 1)


def assert_frames_agree(reference: np.ndarray, fused: np.ndarray) -> None:
    """test_render_gpu.py's tolerance: only float rounding may differ, flipping a few bins."""
    assert fused.shape == reference.shape and fused.dtype == np.uint8
    difference = np.abs(reference.astype(np.int16) - fused)
    assert (difference.max(axis=2) > 0).mean() < 0.01
    assert difference.max() <= 16
    assert difference.mean() < 0.1


@pytest.mark.skipif(NVCC is None, reason="the CUDA toolkit (nvcc) is not installed")
@pytest.mark.parametrize("source", RENDER_KERNELS, ids=lambda source: source.name)
def test_render_kernels_compile_as_cuda(source):
    nvcc_check(source, NVCC)


@pytest.mark.parametrize(
    ("height", "width", "settings"),
    [
        (SIZE, SIZE, {}),
        (
            SIZE,
            SIZE,
            {"palette": "scarab", "hue": 0.3, "smoothing": 0.6, "bloom": 1.5, "thickness": 5.0},
        ),
        (SIZE, SIZE, {"floor": 0.1, "gain": 2.5, "relief": 1.7, "iridescence": 0.4, "film": 2.5}),
        (96, 160, {"smoothing": 0.3}),
    ],
    ids=["defaults", "all_stages", "floor_gain", "non_square"],
)
def test_fused_frames_agree_with_numpy(height, width, settings):
    reference = IridescentRenderer(numpy_backend(1), height, width, seed=3, settings=settings)
    fused = IridescentRenderer(host_fused_backend(), height, width, seed=3, settings=settings)
    out = np.zeros((height, width, 3), np.uint8)
    for seed in range(3):  # several frames, so the smoothing EMA is primed and then blended
        world = creature_world(height, width, seed)
        assert fused.render(world, out=out) is out
        assert_frames_agree(reference.render(world), out)
    reference.reset()
    fused.reset()
    world = creature_world(height, width, 7) * 1.4 - 0.2  # clipped at both ends
    assert_frames_agree(reference.render(world), fused.render(world))


def test_live_setting_changes_reach_the_fused_path():
    reference = IridescentRenderer(numpy_backend(1), SIZE, SIZE, seed=5)
    fused = IridescentRenderer(host_fused_backend(), SIZE, SIZE, seed=5)
    world = creature_world(SIZE, SIZE, 1)
    for change in ({"hue": 0.6}, {"brightness": 2.0}, {"bloom": 0.0}, {"smoothing": 0.5}):
        reference.update(change)
        fused.update(change)
        assert_frames_agree(reference.render(world), fused.render(world))


# display, shade, colour; the film smoother's downsample and upsample; bloom's two.
@pytest.mark.parametrize(("bloom", "per_frame"), [(0.7, 7), (0.0, 5)])
def test_a_frame_is_a_handful_of_launches(bloom, per_frame):
    backend = host_fused_backend()
    renderer = IridescentRenderer(backend, SIZE, SIZE, settings={"bloom": bloom, "smoothing": 0.5})
    frames = 4
    for seed in range(frames):
        renderer.render(creature_world(SIZE, SIZE, seed))
    launches = backend.kernel_compiler.launches
    # The colour table is built once: hue and brightness did not move.
    assert launches.pop("render_colour_table") == 1
    assert sum(launches.values()) == per_frame * frames
    for name in (
        "render_display",
        "render_shade",
        "render_colour",
        "thicken_downsample",  # the film smoother's box mean (no thickening in this test)
        "film_upsample",
    ):
        assert launches[name] == frames
    if bloom:
        assert launches["bloom_downsample"] == launches["bloom_upsample_add"] == frames


@pytest.mark.parametrize(
    ("height", "width", "factor"),
    [(384, 384, 8), (256, 192, 4), (96, 160, 2), (50, 70, 1)],
)
def test_fused_bloom_matches_numpy(height, width, factor):
    rng = np.random.default_rng(height)
    light = (creature_world(height, width, 2) * 3.0 + rng.random((height, width)) * 0.2).astype(
        np.float32
    )
    reference, fused = light.copy(), light.copy()
    numpy_bloom = Bloom(numpy_backend(1), height, width)
    fused_bloom = Bloom(host_fused_backend(), height, width)
    assert fused_bloom._factor == factor
    numpy_bloom.apply(reference, strength=1.3, threshold=0.25)
    fused_bloom.apply(fused, strength=1.3, threshold=0.25)
    assert not np.array_equal(reference, light), "the glow must change the light"
    # The kernels add in numpy's order and are bit-identical here in practice; only the
    # strength-scaled tap weights (rounded from float64 on numpy, float32 in the kernel) may
    # differ, by an ulp.
    np.testing.assert_allclose(fused, reference, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("height", "width", "factor"), [(256, 192, 2), (96, 160, 1), (768, 512, 4)]
)
def test_fused_film_smoother_matches_numpy(height, width, factor):
    rng = np.random.default_rng(width)
    coord = (creature_world(height, width, 4) * 512 + rng.random((height, width)) * 64).astype(
        np.float32
    )
    reference, fused = coord.copy(), coord.copy()
    numpy_smoother = FilmSmoother(numpy_backend(1), height, width)
    fused_smoother = FilmSmoother(host_fused_backend(), height, width)
    assert fused_smoother._factor == factor
    numpy_smoother.apply(reference)
    fused_smoother.apply(fused)
    assert np.abs(np.diff(reference, axis=1)).mean() < 0.5 * np.abs(np.diff(coord, axis=1)).mean()
    np.testing.assert_allclose(fused, reference, rtol=2e-6, atol=1e-4)


def test_fused_gated_bloom_matches_numpy():
    height, width = 256, 192
    light = (creature_world(height, width, 5) * 3.0).astype(np.float32)
    density = creature_world(height, width, 5)
    reference, fused = light.copy(), light.copy()
    Bloom(numpy_backend(1), height, width).apply(reference, 1.3, 0.25, density, 0.1)
    Bloom(host_fused_backend(), height, width).apply(fused, 1.3, 0.25, density, 0.1)
    np.testing.assert_allclose(fused, reference, rtol=2e-6, atol=1e-6)
    empty = density == 0
    assert empty.any() and np.array_equal(reference[empty], light[empty]), "no glow on nothing"


def test_thickening_is_two_launches_per_frame():
    backend = host_fused_backend()
    renderer = IridescentRenderer(backend, SIZE, SIZE, settings={"thickness": 5.0, "bloom": 0.7})
    frames = 3
    for seed in range(frames):
        renderer.render(creature_world(SIZE, SIZE, seed))
    launches = backend.kernel_compiler.launches
    assert launches["thicken_upsample_max"] == frames
    # The box mean serves the thickener and the film smoother: two a frame.
    assert launches["thicken_downsample"] == 2 * frames
    assert launches.pop("render_colour_table") == 1
    # display, shade, colour, the film smoother's two, bloom's two, these two
    assert sum(launches.values()) == 9 * frames


# The host build (-ffp-contract=off) runs the numpy sequence's float32 operations in its order:
# box sums as BoxDownsampler adds them, the same ndimage calls on identical small grids, tap
# weights exact for factors 1, 2 and 4 and each product and sum rounded as numpy rounds it. So
# the thickened fields are bit-identical here (NaN where numpy has NaN); the GPU contracts
# products into FMAs, and test_render_gpu.py's frame tolerance covers that.
@pytest.mark.parametrize(
    ("height", "width", "factor"), [(SIZE, SIZE, 4), (96, 160, 2), (48, 80, 1)]
)
def test_fused_thickener_matches_numpy(height, width, factor):
    numpy_thickener = StrandThickener(numpy_backend(1), height, width)
    fused_thickener = StrandThickener(host_fused_backend(), height, width)
    assert fused_thickener._factor == factor
    scratch = np.empty((height, width), np.float32)
    # Thickness / factor rounds below and at or above 2, so both maximum-filter branches run,
    # and one thickener serves them all in turn, as a live thickness change does.
    for seed, thickness in enumerate((1.0, 3.0, 5.0, 9.0, 2.0)):
        display = creature_world(height, width, seed) ** 3  # thin, faint strands
        reference, fused = display.copy(), display.copy()
        numpy_thickener.apply(reference, thickness, scratch)
        fused_thickener.apply(fused, thickness, scratch)
        assert (reference >= display).all() and (reference > display).mean() > 0.05
        np.testing.assert_array_equal(fused, reference)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_fused_thickener_keeps_nan_as_numpy_does():
    display = creature_world(96, 160, 5)
    display[30:34, 50:58] = np.nan
    reference, fused = display.copy(), display.copy()
    StrandThickener(numpy_backend(1), 96, 160).apply(reference, 4.0, np.empty_like(display))
    StrandThickener(host_fused_backend(), 96, 160).apply(fused, 4.0, np.empty_like(display))
    assert np.isnan(reference).any() and not np.isnan(reference).all()
    np.testing.assert_array_equal(fused, reference)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_upsample_max_kernel_keeps_a_nan_from_either_side():
    launch = host_fused_backend().fused_kernel(THICKEN_UPSAMPLE_MAX)
    rng = np.random.default_rng(0)
    small = rng.random((4, 6), dtype=np.float32)
    small[0, 0] = np.nan  # spreads to the pixels around small cell (0, 0), with wrap
    display = rng.random((8, 12), dtype=np.float32)
    display[5, 7] = np.nan  # far from the NaN cell: the upsampled value there is finite
    upsampled = BilinearUpsampler(numpy_backend(1), 4, 6, 2)(small, np.empty_like(display))
    assert np.isfinite(upsampled[5, 7]) and np.isnan(upsampled[-1, -1])
    expected = np.maximum(display, upsampled)
    launch(display.size, display, small, 12, 4, 6, 2)
    assert np.isnan(display[5, 7]) and np.isnan(display[-1, -1])
    np.testing.assert_array_equal(display, expected)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_nan_and_infinite_input_render_as_clipped_density():
    world = creature_world(SIZE, SIZE, 4)
    broken = world.copy()
    broken[40:60, 40:60] = np.nan
    broken[80:90, :] = -np.inf
    broken[:, 100:104] = np.inf
    cleaned = np.nan_to_num(broken, nan=0.0, posinf=1.0, neginf=0.0)
    settings = {"smoothing": 0.4, "thickness": 3.0}
    first = IridescentRenderer(host_fused_backend(), SIZE, SIZE, settings=settings)
    second = IridescentRenderer(host_fused_backend(), SIZE, SIZE, settings=settings)
    for _ in range(2):
        np.testing.assert_array_equal(first.render(broken), second.render(cleaned))


def test_colour_kernel_never_reads_outside_the_table():
    launch = host_fused_backend().fused_kernel(RENDER_COLOUR)
    rows = VALUE_BINS * COORD_BINS
    lut = np.arange(rows * 3, dtype=np.int64).astype(np.uint8).reshape(rows, 3)
    lut[0], lut[-1] = (1, 2, 3), (7, 8, 9)
    coord = np.array([np.nan, -1e30, 1e30, np.inf, 0.0, 0.0], np.float32)
    light = np.array([np.nan, -np.inf, 1e30, np.inf, -5.0, 0.0], np.float32)
    dither = np.array([0.5, np.nan, 0.5, 0.5, -1e30, 1e30], np.float32)
    rgb = np.zeros((coord.size, 3), np.uint8)
    limits = (COORD_BINS - 1.0, (VALUE_BINS - 2.0) ** 2, float(COORD_BINS), rows - 1.0)
    launch(coord.size, rgb, coord, light, dither, lut, *limits)
    top_in_range = lut[(VALUE_BINS - 2) * COORD_BINS + COORD_BINS - 1]
    expected = [lut[0], lut[0], top_in_range, top_in_range, lut[0], lut[-1]]
    np.testing.assert_array_equal(rgb, expected)


@pytest.mark.parametrize("name", PALETTE_NAMES)
def test_colour_table_kernel_builds_the_numpy_table(name):
    """The device's table against build_color_lut, over hues and brightnesses. The kernel works
    in float32 (the host rotates in float64) and g++'s tanhf is not numpy's, so a byte sitting on
    a rounding edge may flip by one: 4.2e-6 of the bytes over all palettes when measured. A wrong
    channel, row or rotation moves most bytes by far more."""
    launch = host_fused_backend().fused_kernel(RENDER_COLOUR_TABLE)
    colours = palette_colours(PALETTES[name]).astype(np.float32)
    for hue in (0.0, 0.13, 0.77):
        for brightness in (0.3, 1.0, 2.7):
            reference = build_color_lut(PALETTES[name], hue, brightness)
            table = np.zeros_like(reference)
            rotation = hue_rotation_matrix(hue).ravel().tolist()
            exposure = EXPOSURE * brightness
            launch(
                VALUE_BINS * COORD_BINS,
                table,
                colours,
                *rotation,
                exposure,
                VALUE_SQRT_SCALE,
                COORD_BINS,
            )
            difference = np.abs(reference.astype(np.int16) - table)
            assert difference.max() <= 1, (hue, brightness)
            assert (difference > 0).mean() < 1e-4, (hue, brightness)


def test_a_hue_and_brightness_drag_rebuilds_the_table_on_the_device():
    """Every frame of a drag gets a table for its own hue and brightness, one launch each."""
    backend = host_fused_backend()
    fused = IridescentRenderer(backend, SIZE, SIZE, seed=5)
    reference = IridescentRenderer(numpy_backend(1), SIZE, SIZE, seed=5)
    world = creature_world(SIZE, SIZE, 2)
    steps = [{"hue": 0.05 * step, "brightness": 1.0 + 0.1 * step} for step in range(6)]
    for change in steps:
        fused.update(change)
        reference.update(change)
        assert_frames_agree(reference.render(world), fused.render(world))
    assert backend.kernel_compiler.launches["render_colour_table"] == len(steps)
