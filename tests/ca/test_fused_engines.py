"""The SmoothLife, MNCA and Gray-Scott fused kernels against their numpy paths, beyond 4 steps.

The fused path runs on the CPU through tests/host_cuda.py (g++, no FMA contraction), so it
differs from numpy only where glibc's expf differs from numpy's exp (SmoothLife) or not at all
(MNCA's and Gray-Scott's arithmetic is the numpy sequence's, operation for operation).
test_fused.py checks every preset for 4 steps; here: Gray-Scott over many steps and an odd
substep count, the rules' thresholds and extremes fed to the kernels directly, and a short
Simulation run per engine with the real flow and keep-moving extras on the fused path.
"""

from __future__ import annotations

import numpy as np
import pytest
from host_cuda import compiler_available, host_fused_backend

from ca_server.engines import create_engine
from ca_server.engines.mnca import MNCA_UPDATE
from ca_server.engines.smoothlife import SMOOTHLIFE_UPDATE, _interval_constants
from ca_server.presets import load_preset
from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend

pytestmark = pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")


def engine_pair(preset_name: str, size: int = 128, **overrides):
    """(numpy engine, fused engine, fused backend), both seeded alike."""
    preset = load_preset(preset_name)
    params = {**preset.engine_params, **overrides}
    fused_backend = host_fused_backend()
    engines = [
        create_engine(preset.engine, backend, size, size, params)
        for backend in (numpy_backend(fft_workers=1), fused_backend)
    ]
    for engine in engines:
        engine.seed(np.random.default_rng(5), preset.seed_kind, preset.seed_density)
    return engines[0], engines[1], fused_backend


@pytest.mark.parametrize("preset_name", ["medusa", "labyrinth"])
def test_gray_scott_agrees_over_many_steps(preset_name):
    reference, fused, backend = engine_pair(preset_name)
    for _ in range(60):
        reference.step()
        fused.step()
    assert backend.kernel_compiler.launches["gray_scott_substep"] == 60 * fused.substeps
    for expected, actual in zip(reference.fields, fused.fields, strict=True):
        assert float(np.abs(expected - actual).max()) < 1e-5
    assert float(fused.world.max()) > 0.05  # something is there to disagree about


@pytest.mark.parametrize("substeps", [1, 3])
def test_gray_scott_odd_substeps_keep_the_field_arrays(substeps):
    reference, fused, backend = engine_pair("reef", substeps=substeps)
    u, v = fused.fields
    for _ in range(5):
        reference.step()
        fused.step()
    assert fused.fields[0] is u and fused.fields[1] is v and fused.world is v
    assert backend.kernel_compiler.launches["gray_scott_substep"] == 5 * substeps
    for expected, actual in zip(reference.fields, fused.fields, strict=True):
        assert float(np.abs(expected - actual).max()) < 1e-5


def test_gray_scott_stencil_wraps_at_every_edge_of_a_non_square_frame():
    # random fields differ across every seam, so a clamped or mirrored edge, or height and width
    # swapped, shows up along the border
    params = load_preset("reef").engine_params
    rng = np.random.default_rng(4)
    u = rng.uniform(0.3, 1, (24, 40)).astype(np.float32)
    v = rng.uniform(0, 0.4, (24, 40)).astype(np.float32)
    engines = [
        create_engine("gray_scott", backend, 24, 40, params)
        for backend in (numpy_backend(fft_workers=1), host_fused_backend())
    ]
    for engine in engines:
        engine.load_fields([u, v])
        engine.step()
    for expected, actual in zip(engines[0].fields, engines[1].fields, strict=True):
        np.testing.assert_allclose(actual, expected, atol=1e-7)


def smoothlife_reference(state, inner, outer, params, b1, b2):
    """f + dt (2 S(n, m) - 1), clipped, in float64 from the sigmoids' definitions."""

    def sigma(x, a, alpha):
        return 1.0 / (1.0 + np.exp(-(x - a) / alpha))

    m, n = np.clip(inner, 0, 1).astype(np.float64), np.clip(outer, 0, 1).astype(np.float64)
    alpha_n = params["alpha_n"]
    mix = sigma(m, 0.5, params["alpha_m"])
    birth = sigma(n, b1, alpha_n) * (1 - sigma(n, b2, alpha_n))
    survive = sigma(n, params["d1"], alpha_n) * (1 - sigma(n, params["d2"], alpha_n))
    alive = birth * (1 - mix) + survive * mix
    return np.clip(state + params["dt"] * (2 * alive - 1), 0, 1)


@pytest.mark.parametrize("alpha_n", [0.028, 0.01])  # the default and the schema's floor
def test_smoothlife_kernel_at_the_thresholds(alpha_n):
    params = {**load_preset("sl_gliders").engine_params, "alpha_n": alpha_n}
    b1, b2 = 0.281, 0.36  # breathing values, not the preset's
    thresholds = [b1, b2, params["d1"], params["d2"], 0.5]
    # each interval edge exactly, half-way between, and outside [0, 1] (the clip's job)
    levels = np.array([*thresholds, 0.0, 1.0, -0.02, 1.03, 0.3, 0.4], np.float32)
    outer, inner = (a.ravel().copy() for a in np.meshgrid(levels, levels, indexing="ij"))
    state = np.linspace(0, 1, outer.size, dtype=np.float32)
    expected = smoothlife_reference(state, inner, outer, params, b1, b2)
    launch = host_fused_backend().fused_kernel(SMOOTHLIFE_UPDATE)
    dt = params["dt"]
    launch(
        state.size,
        state,
        inner,
        outer,
        1.0 / alpha_n,
        -1.0 / params["alpha_m"],
        *_interval_constants(b1, b2, alpha_n),
        *_interval_constants(params["d1"], params["d2"], alpha_n),
        2.0 * dt,
        dt,
    )
    assert np.isfinite(state).all()  # exp(50) squared overflows: the quotient must still be 0
    np.testing.assert_allclose(state, expected, atol=2e-6)


def test_smoothlife_follows_breathing_b1_b2():
    reference, fused, _ = engine_pair("sl_worms")
    for engine in (reference, fused):
        engine.set_live({"b1": engine.b1 + 0.01, "b2": engine.b2 - 0.01})
        engine.step()
    assert float(np.abs(reference.world - fused.world).max()) < 1e-5


def mnca_reference(state, averages, rules, delta, edge):
    """clip(A + delta sum_i (2 m_i - 1)) with m_i the max over ring i's interval windows."""
    total = np.zeros(state.shape)
    for average, intervals in zip(averages.astype(np.float64), rules, strict=True):
        member = np.zeros(state.shape)
        for low, high in intervals:
            rise = np.clip((average - low) / edge + 0.5, 0, 1)
            fall = np.clip((high - average) / edge + 0.5, 0, 1)
            member = np.maximum(member, np.minimum(rise, fall))
        total += 2 * member - 1
    return np.clip(state + delta * total, 0, 1)


def test_mnca_kernel_at_the_thresholds_with_several_intervals():
    rules = [[[0.1, 0.2], [0.6, 0.7]], [[0.3, 0.45]], [[0.0, 0.05], [0.2, 0.3], [0.9, 1.0]]]
    params = {**load_preset("mnca_hunt").engine_params, "rings": [[0, 4], [6, 9], [10, 14]]}
    engine = create_engine("mnca", host_fused_backend(), 32, 32, {**params, "rules": rules})
    edge = engine.edge
    # every threshold, a ramp's ends (threshold +- edge/2), gap and interval centres
    thresholds = sorted({bound for ring in rules for interval in ring for bound in interval})
    levels = [t + s * edge / 2 for t in thresholds for s in (-1, 0, 1)] + [0.4, 0.8, 1.2]
    levels = np.array(levels, np.float32)
    size = levels.size
    grid = np.meshgrid(np.arange(size), np.arange(size), np.arange(size), indexing="ij")
    averages = np.stack([levels[index.ravel()] for index in grid])  # (3, size^3), every combination
    state = np.random.default_rng(0).uniform(0, 1, size**3).astype(np.float32)
    delta = 0.037  # a breathing value: the ramps' width stays 2 x the preset's delta
    expected = mnca_reference(state, averages, rules, delta, edge)
    launch = host_fused_backend().fused_kernel(MNCA_UPDATE)
    centres, offsets, first, count = (np.asarray(array) for array in engine._update.rule_arrays)
    launch(state.size, state, averages, centres, offsets, first, count, 3, -1.0 / edge,
           2.0 * delta, 3 * delta)  # fmt: skip
    np.testing.assert_allclose(state, expected, atol=1e-6)


def test_mnca_multi_interval_rule_matches_numpy():
    rules = [[[0.1, 0.2], [0.3, 0.4]], [[0.05, 0.35]]]
    reference, fused, backend = engine_pair("mnca_hunt", rules=rules)
    for engine in (reference, fused):
        engine.set_live({"delta": 0.04})
    for _ in range(4):
        reference.step()
        fused.step()
    assert backend.kernel_compiler.launches["mnca_update"] == 4
    difference = np.abs(reference.world - fused.world)
    assert (difference > 1e-4).mean() < 0.002 and difference.max() < 0.2


@pytest.mark.parametrize("preset_name", ["sl_gliders", "mnca_soliton", "medusa"])
def test_simulation_runs_on_the_fused_engines(preset_name):
    # warm-up, flow advection, keep-moving extras, keepsakes and health all act on the fields
    backend = host_fused_backend()
    sim = Simulation(backend, width=128, height=128, preset=preset_name, seed=1)
    engine = sim.change.current.engine
    fields = engine.fields
    for _ in range(30):
        sim.tick()
    kernel = {"smoothlife": "smoothlife_update", "mnca": "mnca_update"}.get(
        engine.name, "gray_scott_substep"
    )
    assert backend.kernel_compiler.launches[kernel] > 30
    # no regrowth replaced it: the same arrays, stepped in place
    if sim.change.current.engine is engine:
        assert all(a is b for a, b in zip(fields, engine.fields, strict=True))
    world = sim.world
    assert np.isfinite(world).all() and world.min() >= 0 and world.max() <= 1
    assert float(world.max()) > 0.05
