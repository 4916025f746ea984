"""Engine update rules against direct reference implementations, plus shape/dtype/determinism."""

from __future__ import annotations

import numpy as np
import pytest

from ca_server.engines import ENGINE_CLASSES, create_engine
from ca_server.engines.base import StampMaxKernel, StampMaxPasses, wrapped_distance2
from ca_server.engines.kernels import lenia_kernel, logistic_disc, logistic_ring, torus_distance
from ca_server.presets import load_preset
from ca_server.xp import numpy_backend

BACKEND = numpy_backend(fft_workers=1)
ONE_PER_ENGINE = {"lenia": "coral", "smoothlife": "sl_gliders", "mnca": "mnca_worm",
                  "gray_scott": "medusa"}  # fmt: skip


def make(preset_name: str, size: int = 64, seed: int = 0):
    preset = load_preset(preset_name)
    engine = create_engine(preset.engine, BACKEND, size, size, preset.engine_params)
    engine.seed(np.random.default_rng(seed), preset.seed_kind, preset.seed_density)
    return engine


def circular_convolve(field: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Direct periodic convolution (float64): sum over kernel offsets of rolled fields."""
    out = np.zeros(field.shape)
    for dy, dx in zip(*np.nonzero(kernel > 1e-12), strict=True):
        out += kernel[dy, dx] * np.roll(field, (dy, dx), axis=(0, 1))
    return out


def random_state(shape, seed=1, high=1.0):
    return np.random.default_rng(seed).uniform(0, high, shape).astype(np.float32)


def test_lenia_step_matches_direct_formula():
    engine = make("nebula", 48)
    state = random_state((48, 48), high=0.4)
    engine.load_fields([state])
    kernel = lenia_kernel(torus_distance(48, 48), engine.radius, (0.3, 0.6, 0.9), (0.15, 0.12, 0.1))
    kernel /= kernel.sum()
    potential = circular_convolve(state.astype(np.float64), kernel)
    growth = 2 * np.exp(-0.5 * ((potential - 0.16) / 0.02) ** 2) - 1
    expected = np.clip(state + growth / 12, 0, 1)
    engine.step()
    np.testing.assert_allclose(engine.world, expected, atol=2e-4)


def test_smoothlife_step_matches_direct_formula():
    engine = make("sl_chaos", 48)
    state = random_state((48, 48), seed=2)
    engine.load_fields([state])
    distance = torus_distance(48, 48)
    ri, ra = engine.inner_radius, engine.outer_radius
    disc, ring = logistic_disc(distance, ri), logistic_ring(distance, ri, ra)
    m = circular_convolve(state, disc / disc.sum())
    n = circular_convolve(state, ring / ring.sum())

    def sigma(x, a, alpha):
        return 1 / (1 + np.exp(-(x - a) / alpha))

    p = load_preset("sl_chaos").engine_params
    mix = sigma(m, 0.5, p["alpha_m"])
    birth = sigma(n, p["b1"], p["alpha_n"]) * (1 - sigma(n, p["b2"], p["alpha_n"]))
    survive = sigma(n, p["d1"], p["alpha_n"]) * (1 - sigma(n, p["d2"], p["alpha_n"]))
    s = birth * (1 - mix) + survive * mix
    expected = np.clip(state + p["dt"] * (2 * s - 1), 0, 1)
    engine.step()
    np.testing.assert_allclose(engine.world, expected, atol=2e-4)


def test_mnca_step_matches_direct_rule():
    engine = make("mnca_mitosis", 64)
    state = random_state((64, 64), seed=3, high=0.6)
    engine.load_fields([state])
    distance = torus_distance(64, 64)
    total = np.zeros((64, 64))
    params = load_preset("mnca_mitosis").engine_params
    delta = params["delta"]
    edge = 2.0 * delta  # membership ramps linearly over 2 delta around each threshold
    for (inner, outer), intervals in zip(engine.rings, params["rules"], strict=True):
        kernel = logistic_ring(distance, inner, outer)
        average = circular_convolve(state, kernel / kernel.sum())
        member = np.zeros(average.shape)
        for low, high in intervals:
            rise = np.clip((average - low) / edge + 0.5, 0, 1)
            fall = np.clip((high - average) / edge + 0.5, 0, 1)
            member = np.maximum(member, np.minimum(rise, fall))
        total += delta * (2 * member - 1)
    expected = np.clip(state + total, 0, 1)
    engine.step()
    np.testing.assert_allclose(engine.world, expected, atol=2e-4)


def test_mnca_rings_scale_together_with_a_floor_on_the_smallest():
    params = load_preset("mnca_worm").engine_params  # rings (0,3), (5,10), (12,18) at 512 px
    rings = {
        size: create_engine("mnca", BACKEND, size, size, params).rings for size in (256, 512, 2048)
    }
    # the smallest disc never drops under 6 px; all rings keep their ratios
    assert rings[256] == rings[512] == [(0.0, 6.0), (10.0, 20.0), (24.0, 36.0)]
    assert rings[2048] == [(0.0, 12.0), (20.0, 40.0), (48.0, 72.0)]


def test_mnca_multi_interval_ring_is_a_member_in_either_interval():
    params = dict(load_preset("mnca_hunt").engine_params)
    params["rules"] = [[[0.1, 0.2], [0.6, 0.7]], [[0.0, 1.0]]]
    engine = create_engine("mnca", BACKEND, 64, 64, params)
    for level, grows in ((0.15, True), (0.65, True), (0.4, False)):
        engine.load_fields([np.full((64, 64), level, np.float32)])
        engine.step()
        # ring 1 always a member; ring 0 a member inside either interval: +2 delta, else 0
        change = float(engine.world.mean()) - level
        assert change == pytest.approx(2 * params["delta"] if grows else 0.0, abs=1e-5), level


def test_gray_scott_substeps_match_rolled_stencil():
    engine = make("reef", 40)
    rng = np.random.default_rng(4)
    u = rng.uniform(0.3, 1, (40, 40)).astype(np.float32)
    v = rng.uniform(0, 0.4, (40, 40)).astype(np.float32)
    engine.load_fields([u, v])
    params = load_preset("reef").engine_params
    feed = engine._feed.astype(np.float64)

    def lap(x):
        edges = sum(np.roll(x, s, a) for s in (1, -1) for a in (0, 1))
        corners = sum(np.roll(x, (sy, sx), (0, 1)) for sy in (1, -1) for sx in (1, -1))
        return 0.2 * edges + 0.05 * corners - x

    ref_u, ref_v = u.astype(np.float64), v.astype(np.float64)
    for _ in range(2):
        uvv = ref_u * ref_v * ref_v
        new_u = ref_u + params["Du"] * lap(ref_u) - uvv + feed * (1 - ref_u)
        new_v = ref_v + params["Dv"] * lap(ref_v) + uvv - (feed + params["k"]) * ref_v
        ref_u, ref_v = np.clip(new_u, 0, 1), np.clip(new_v, 0, 1)
    engine.step()
    np.testing.assert_allclose(engine.fields[0], ref_u, atol=1e-5)
    np.testing.assert_allclose(engine.world, ref_v, atol=1e-5)


@pytest.mark.parametrize("preset_name", sorted(ONE_PER_ENGINE.values()))
def test_steps_keep_shape_dtype_range_and_are_deterministic(preset_name):
    first, second, other = (
        make(preset_name, 96, 7),
        make(preset_name, 96, 7),
        make(preset_name, 96, 8),
    )
    for _ in range(20):
        first.step()
        second.step()
        other.step()
    world = first.world
    assert world.shape == (96, 96) and world.dtype == np.float32
    assert np.isfinite(world).all() and world.min() >= 0 and world.max() <= 1
    np.testing.assert_array_equal(world, second.world)
    assert not np.array_equal(world, other.world)


@pytest.mark.parametrize("engine_name", sorted(ENGINE_CLASSES))
def test_seed_recipes_and_cluster_drops_add_mass(engine_name):
    preset = load_preset(ONE_PER_ENGINE[engine_name])
    engine = create_engine(engine_name, BACKEND, 80, 120, preset.engine_params)
    rng = np.random.default_rng(0)
    for kind in ENGINE_CLASSES[engine_name].preset_table.seed_kinds:
        engine.seed(rng, kind, 0.5)
        assert engine.world.shape == (80, 120) and 0 < float(engine.world.mean()) < 0.6, kind
    engine.world[...] = 0
    engine.drop_cluster(rng)
    assert float(engine.world.max()) > 0.2
    with pytest.raises(ValueError, match="unknown"):
        engine.seed(rng, "no_such_seed", 0.5)


def test_unknown_engine_lists_valid_ones():
    with pytest.raises(ValueError, match="gray_scott"):
        create_engine("life", BACKEND, 32, 32, {})


def test_radii_scale_from_the_512_base():
    preset = load_preset("coral")  # R = 20 at 512 px
    sizes = {size: create_engine("lenia", BACKEND, size, size, preset.engine_params).radius
             for size in (128, 256, 1024)}  # fmt: skip
    assert sizes == {128: 8, 256: 10, 1024: 40}  # 8 px floor (heartbeat aliases below)


def geometry_backends():
    """numpy, and the GPU path behind CuPy's host/device rules where g++ can build its kernels."""
    from device_boundary import device_boundary_backend
    from host_cuda import compiler_available

    no_compiler = pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")
    return [
        pytest.param(lambda: BACKEND, id="numpy"),
        pytest.param(device_boundary_backend, id="device", marks=no_compiler),
    ]


@pytest.mark.parametrize("make_backend", geometry_backends())
def test_stamp_max_centres_the_patch_and_wraps_at_the_edges(make_backend):
    backend = make_backend()
    stamp_max = backend.hot_pass(StampMaxKernel, StampMaxPasses)(backend)
    patch = np.arange(1, 10, dtype=np.float32).reshape(3, 3)  # values 1..9, no two alike
    field = backend.xp.zeros((8, 10), np.float32)
    corner = np.arange(20, 40, dtype=np.float32).reshape(4, 5)  # another shape, after it
    # Centred inside: rows 3..5, columns 4..6. Centred on a corner: wraps on both axes.
    stamp_max(field, [(4.0, 5.0, patch), (0.0, 9.0, corner)])
    expected = np.zeros((8, 10), np.float32)
    expected[3:6, 4:7] = patch
    expected[np.ix_([6, 7, 0, 1], [7, 8, 9, 0, 1])] = corner
    np.testing.assert_array_equal(backend.to_host(field), expected)
    stamp_max(field, [(4.0, 5.0, patch[::-1].copy())])  # a maximum, not a replacement
    np.testing.assert_array_equal(backend.to_host(field)[3:6, 4:7], np.maximum(patch, patch[::-1]))


@pytest.mark.parametrize("make_backend", geometry_backends())
def test_wrapped_distance2_is_the_torus_distance_on_either_side(make_backend):
    backend = make_backend()
    distance2 = backend.to_host(wrapped_distance2(12, 20, 1.5, 18.25, backend.xp))
    rows, cols = np.mgrid[0:12, 0:20]
    dy = np.minimum(abs(rows - 1.5), 12 - abs(rows - 1.5))
    dx = np.minimum(abs(cols - 18.25), 20 - abs(cols - 18.25))
    assert distance2.dtype == np.float32
    np.testing.assert_allclose(distance2, dy**2 + dx**2, rtol=1e-6)
    np.testing.assert_array_equal(distance2, wrapped_distance2(12, 20, 1.5, 18.25))


@pytest.mark.parametrize("make_backend", geometry_backends())
def test_a_perturb_erases_a_disc_of_its_drawn_radius_around_its_drawn_centre(make_backend):
    import copy

    from ca_server.simulation import Simulation

    backend = make_backend()
    organism = Simulation(backend, width=96, height=96, preset="coral").change.current
    organism.engine.world[...] = 1.0
    draws = copy.deepcopy(organism.rng)  # the same numbers _erase_disc will draw
    radius = 96 * draws.uniform(0.05, 0.10)
    cy, cx = (48 + draws.uniform(-0.25, 0.25) * 96 for _ in range(2))
    organism._erase_disc()
    world = backend.to_host(organism.engine.world)
    distance = np.sqrt(wrapped_distance2(96, 96, cy % 96, cx % 96))
    assert world[distance < 0.5 * radius].max() < 0.01  # 1 - exp(-(d/r)^8): gone inside r/2
    assert world[distance > 1.5 * radius].min() > 0.99  # untouched beyond 1.5 r
    edge = world[abs(distance - radius) < 0.5]
    assert 0.3 < edge.mean() < 0.9  # 1 - 1/e at the radius itself
