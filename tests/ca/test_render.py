"""The iridescent renderer on numpy: contract, determinism, controls, bloom, settings validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ca_server.render import PALETTE_NAMES, IridescentRenderer, RenderSettings
from ca_server.render.bloom import Bloom
from ca_server.render.iridescent import film_offset_field
from ca_server.render.palettes import COORD_BINS
from ca_server.xp import numpy_backend

SIZE = 128


@pytest.fixture(scope="module")
def backend():
    return numpy_backend(fft_workers=1)


def rings_world(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """A few soft donuts with cores, like Lenia creatures: (size, size) float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    world = np.zeros((size, size), np.float32)
    for _ in range(5):
        cy, cx = rng.uniform(0.25, 0.75, 2) * size
        radius = rng.uniform(0.05, 0.1) * size
        dist = np.hypot(y - cy, x - cx)
        world += np.exp(-(((dist - radius) / (0.35 * radius)) ** 2))
        world += 0.5 * np.exp(-((dist / (0.4 * radius)) ** 2))
    return np.clip(world, 0, 1)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])


def hue_angle(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., k].astype(np.float64) for k in range(3))
    return np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b)


def test_frame_has_the_promised_shape_dtype_and_lands_in_out(backend):
    renderer = IridescentRenderer(backend, SIZE, SIZE)
    frame = renderer.render(rings_world())
    assert frame.shape == (SIZE, SIZE, 3) and frame.dtype == np.uint8
    out = np.zeros((SIZE, SIZE, 3), np.uint8)
    assert renderer.render(rings_world(), out=out) is out
    np.testing.assert_array_equal(out, frame)
    assert frame.max() > 150, "a lit creature should reach bright colours"


def test_non_square_frames_render(backend):
    world = rings_world(192)[:96, :]
    frame = IridescentRenderer(backend, 96, 192).render(world)
    assert frame.shape == (96, 192, 3)


@pytest.mark.parametrize(
    "world",
    [
        np.zeros((SIZE, SIZE), np.float32),
        np.ones((SIZE, SIZE), np.float32),
        (np.indices((SIZE, SIZE)).sum(axis=0) % 2).astype(np.float32),  # the steepest edges
        rings_world() * 9.0 - 4.0,  # far outside [0, 1]
    ],
    ids=["empty", "full", "checkerboard", "out_of_range"],
)
def test_float_stages_stay_finite_and_indices_in_range(backend, world):
    renderer = IridescentRenderer(backend, SIZE, SIZE, settings={"thickness": 6, "smoothing": 0.5})
    for _ in range(2):
        frame = renderer.render(world)
    # White-box: the full-frame float buffers are where a NaN would hide. After a frame, `_coord`
    # holds clipped film-coordinate bins and `_light` the float flat table index of every pixel.
    for stage in (renderer._display, renderer._coord, renderer._light):
        assert np.isfinite(stage).all()
    assert renderer._coord.min() >= 0 and renderer._coord.max() <= COORD_BINS - 1
    lut_rows = renderer._color_lut(renderer.settings).shape[0]
    assert renderer._light.min() >= 0 and renderer._light.max() < lut_rows
    assert frame.dtype == np.uint8


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")
def test_nan_input_does_not_crash(backend):
    world = rings_world()
    world[40:60, 40:60] = np.nan
    frame = IridescentRenderer(backend, SIZE, SIZE).render(world)
    assert frame.shape == (SIZE, SIZE, 3)


def test_empty_space_is_black(backend):
    frame = IridescentRenderer(backend, SIZE, SIZE).render(np.zeros((SIZE, SIZE), np.float32))
    assert frame.max() <= 2


def test_same_seed_settings_and_inputs_give_identical_frames(backend):
    settings = {"palette": "cuttlefish", "smoothing": 0.6, "thickness": 5.0}
    first = IridescentRenderer(backend, SIZE, SIZE, seed=7, settings=settings)
    second = IridescentRenderer(backend, SIZE, SIZE, seed=7, settings=settings)
    for step in range(3):
        world = rings_world(seed=step)
        np.testing.assert_array_equal(first.render(world), second.render(world))
    other_seed = IridescentRenderer(backend, SIZE, SIZE, seed=8, settings=settings)
    assert not np.array_equal(other_seed.render(rings_world()), first.render(rings_world()))


def test_smoothing_blends_frames_and_reset_forgets_them(backend):
    fresh = IridescentRenderer(backend, SIZE, SIZE)
    smoothed = IridescentRenderer(backend, SIZE, SIZE, settings={"smoothing": 0.8})
    before, after = rings_world(seed=1), rings_world(seed=2)
    smoothed.render(before)
    blended = smoothed.render(after)
    unsmoothed = fresh.render(after)
    assert np.abs(blended.astype(int) - unsmoothed).mean() > 5
    smoothed.reset()
    np.testing.assert_array_equal(smoothed.render(after), unsmoothed)


def test_hue_shift_changes_colour_but_not_structure(backend):
    renderer = IridescentRenderer(backend, SIZE, SIZE)
    world = rings_world()
    base = renderer.render(world)
    renderer.hue_shift = 1 / 3
    shifted = renderer.render(world)
    lit = base.max(axis=2) > 60
    assert lit.mean() > 0.05
    # Structure: the grey-axis rotation keeps R+G+B, so brightness maps stay nearly the same.
    value_base, value_shifted = base.mean(axis=2), shifted.mean(axis=2)
    assert np.corrcoef(value_base.ravel(), value_shifted.ravel())[0, 1] > 0.97
    assert np.abs(value_base - value_shifted)[lit].mean() < 12
    # Colour: the hue of lit pixels turns by about a third of a circle.
    turn = np.angle(np.exp(1j * (hue_angle(shifted) - hue_angle(base))))[lit]
    assert np.abs(np.median(turn)) > np.pi / 3


def test_hue_shift_wraps(backend):
    renderer = IridescentRenderer(backend, SIZE, SIZE)
    renderer.hue_shift = 1.25
    assert renderer.hue_shift == pytest.approx(0.25)
    wrapped = renderer.render(rings_world())
    direct = IridescentRenderer(backend, SIZE, SIZE, settings={"hue": 0.25})
    np.testing.assert_array_equal(wrapped, direct.render(rings_world()))


def test_brightness_is_monotonic_and_zero_is_black(backend):
    renderer = IridescentRenderer(backend, SIZE, SIZE)
    world = rings_world()
    means = []
    for brightness in (0.0, 0.25, 0.5, 1.0, 2.0, 3.0):
        renderer.brightness = brightness
        means.append(luminance(renderer.render(world)).mean())
    assert means[0] == 0.0
    assert all(low < high for low, high in itertools.pairwise(means))


def test_every_palette_renders_and_they_differ(backend):
    world = rings_world()
    frames = {}
    for name in PALETTE_NAMES:
        frames[name] = IridescentRenderer(backend, SIZE, SIZE, palette=name).render(world)
        assert frames[name].max() > 120, name
    names = list(frames)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            difference = np.abs(frames[first].astype(int) - frames[second]).mean()
            assert difference > 3, (first, second)


def test_settings_palette_wins_over_the_argument(backend):
    by_settings = IridescentRenderer(
        backend, SIZE, SIZE, palette="nacre", settings={"palette": "scarab"}
    )
    assert by_settings.settings.palette == "scarab"


def test_thickness_fattens_thin_strands(backend):
    world = np.zeros((SIZE, SIZE), np.float32)
    world[:, 60:62] = 1.0
    thin = IridescentRenderer(backend, SIZE, SIZE, settings={"bloom": 0}).render(world)
    thick = IridescentRenderer(backend, SIZE, SIZE, settings={"bloom": 0, "thickness": 8}).render(
        world
    )
    lit_thin = (thin.max(axis=2) > 30).sum()
    lit_thick = (thick.max(axis=2) > 30).sum()
    assert lit_thick > 1.5 * lit_thin


def disk(size: int, radius: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return (np.hypot(y - size / 2, x - size / 2) < radius).astype(np.float32)


def test_bloom_glows_on_faint_tissue_around_bright_bodies_not_on_empty_space(backend):
    size = 256
    y, x = np.mgrid[0:size, 0:size]
    radius = np.hypot(y - size / 2, x - size / 2)
    skirt = np.where(radius < 48, 0.15, 0.0).astype(np.float32)  # faint tissue out to 48 px
    world = np.maximum(disk(size, 30), skirt)
    plain = IridescentRenderer(backend, size, size, settings={"bloom": 0}).render(world)
    glowing = IridescentRenderer(backend, size, size, settings={"bloom": 2}).render(world)
    glow = luminance(glowing) - luminance(plain)
    outside = glow[size // 2, size // 2 + 33 : size // 2 + 47]
    assert outside[0] > 5 and outside[0] > 2 * max(outside[-1], 0.1)
    assert glow.min() >= -1  # bloom only adds light
    # Issue 25: the glow lights matter only; empty space (past the rim pixel) stays black
    # however bright the body (the glow used to reach 40+/255 there).
    assert glowing[radius > 50].max() == 0


def test_bloom_is_smooth_not_blocky(backend):
    size = 256
    light = disk(size, 20) * 3.0
    before = light.copy()
    Bloom(backend, size, size).apply(light, strength=1.0, threshold=0.25)
    glow = (light - before)[size // 2, size // 2 + 22 : size // 2 + 60]
    assert glow.min() > 0
    # Nearest-neighbour upsampling from the ×8 grid would leave runs of equal values (7 of every
    # 8 steps zero); the bilinear ramp keeps changing from pixel to pixel.
    assert (np.abs(np.diff(glow)) < 1e-6).mean() < 0.05
    assert (np.diff(glow) < 1e-6).all()  # and falls off monotonically away from the disk


def test_floor_and_gain_shape_the_density(backend):
    faint = np.full((SIZE, SIZE), 0.01, np.float32)
    frame = IridescentRenderer(backend, SIZE, SIZE, settings={"floor": 0.015, "gain": 3.5})
    assert frame.render(faint).max() == 0


def test_film_offset_is_seeded_and_periodic():
    first, again = film_offset_field(64, 96, seed=3), film_offset_field(64, 96, seed=3)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, film_offset_field(64, 96, seed=4))
    assert np.abs(first).max() < 1.0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"colour": 1}, "unknown render setting 'colour'"),
        ({"palette": "plaid"}, "choose one of oil_slick"),
        ({"brightness": 4}, "'brightness' is 4"),
        ({"thickness": -1}, "'thickness'"),
        ({"smoothing": 1.0}, "'smoothing'"),
        ({"bloom": "lots"}, "'bloom' must be a finite number"),
        ({"relief": True}, "'relief' must be a finite number"),
        ({"hue": float("nan")}, "'hue' must be a finite number"),
    ],
)
def test_bad_settings_are_clear_value_errors(backend, settings, message):
    with pytest.raises(ValueError, match=message):
        IridescentRenderer(backend, SIZE, SIZE, settings=settings)


def test_bad_live_values_and_arrays_are_rejected(backend):
    renderer = IridescentRenderer(backend, SIZE, SIZE)
    with pytest.raises(ValueError, match="brightness"):
        renderer.brightness = -0.5
    with pytest.raises(ValueError, match="palette"):
        IridescentRenderer(backend, SIZE, SIZE, palette="nope")
    with pytest.raises(ValueError, match=r"world has shape \(64, 64\)"):
        renderer.render(np.zeros((64, 64), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        renderer.render(rings_world(), out=np.zeros((SIZE, SIZE, 4), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        IridescentRenderer(backend, 8, 8)


def test_every_preset_render_table_is_accepted(backend):
    from ca_server.presets import load_preset, preset_names

    for name in preset_names():
        settings = RenderSettings.from_mapping(load_preset(name).render)
        assert settings.palette in PALETTE_NAMES


def test_row_bands_do_not_change_the_picture(backend, monkeypatch):
    import ca_server.render.iridescent as iridescent

    settings = {"thickness": 5.0, "smoothing": 0.5}
    monkeypatch.setattr(iridescent, "CPU_BAND_PIXELS", 10**9)
    whole = IridescentRenderer(backend, SIZE, SIZE, settings=settings)
    monkeypatch.setattr(iridescent, "CPU_BAND_PIXELS", 5 * SIZE)  # 5-row bands, one ragged
    banded = IridescentRenderer(backend, SIZE, SIZE, settings=settings)
    assert len(whole._stages.bands) == 1 and len(banded._stages.bands) > 20
    for seed in range(2):
        np.testing.assert_array_equal(
            banded.render(rings_world(seed=seed)), whole.render(rings_world(seed=seed))
        )
