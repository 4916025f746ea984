"""Fused flow advection and keep-moving extras compute what their numpy passes do, in one launch.

The fused path runs on the CPU here (tests/host_cuda.py compiles the kernels with g++); with FMA
contraction off the host result follows numpy's rounding, so the tolerances only leave room for
libm differences.
"""

from __future__ import annotations

import numpy as np
import pytest
from host_cuda import compiler_available, host_fused_backend

from ca_server.engines import ENGINE_CLASSES
from ca_server.engines.keep_moving import PERTURB_EVERY_STEPS, KeepMoving, NoisePool
from ca_server.render import FlowAdvector
from ca_server.xp import numpy_backend

pytestmark = pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")

MIXES = {
    "rotate": {"rotate": 0.8},
    "mixed_signs": {"radial": -0.3, "rotate": 0.35, "swirl": 0.5, "bubble": 0.2, "ring": -0.2},
    "negative": {"vortex": -1.0, "vertical": -0.7, "swirl": -0.4},
}
SHAPES = [(96, 160), (160, 96), (128, 128)]


def smooth_field(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth periodic random field, (height, width) float32 in [0, 1], host."""
    rng = np.random.default_rng(seed)
    spectrum = rng.standard_normal((height, width)) + 1j * rng.standard_normal((height, width))
    ky = np.fft.fftfreq(height)[:, None]
    kx = np.fft.fftfreq(width)[None, :]
    spectrum *= np.exp(-(ky**2 + kx**2) / (2 * 0.04**2))
    field = np.fft.ifft2(spectrum).real
    return ((field - field.min()) / (field.max() - field.min())).astype(np.float32)


def flow_pair(height, width, strengths, pixels_per_step=0.8):
    backend = host_fused_backend()
    flows = []
    for each in (numpy_backend(fft_workers=1), backend):
        flow = FlowAdvector(each, height, width, pixels_per_step=pixels_per_step)
        flow.set_strengths(strengths)
        flows.append(flow)
    return (*flows, backend.kernel_compiler.launches)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: f"{shape[0]}x{shape[1]}")
@pytest.mark.parametrize("mix", MIXES, ids=str)
@pytest.mark.parametrize("in_place", [True, False], ids=["in_place", "new_array"])
def test_flow_advect_matches_numpy(shape, mix, in_place):
    reference, fused, launches = flow_pair(*shape, MIXES[mix])
    expected = smooth_field(*shape, seed=1)
    actual = expected.copy()
    for _ in range(25):
        if in_place:
            assert reference.advect(expected, out=expected) is expected
            assert fused.advect(actual, out=actual) is actual
        else:
            expected, actual = reference.advect(expected), fused.advect(actual)
    assert launches == {"flow_advect": 25}
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


def test_flow_advect_wraps_displacements_of_several_pixels():
    # 3.3 px per step: integer offsets up to ±4, so taps cross every edge by more than one cell.
    strengths = {"rotate": -0.9, "ring": 0.6, "vertical": 0.5}
    reference, fused, _ = flow_pair(96, 160, strengths, pixels_per_step=3.3)
    field = smooth_field(96, 160, seed=2)
    field[:, -3:] = 2.0  # hard edges at the seam show a wrong wrap at once
    expected, actual = field.copy(), field.copy()
    for _ in range(6):
        reference.advect(expected, out=expected)
        fused.advect(actual, out=actual)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


def test_fused_flow_writes_out_and_leaves_field_alone():
    _, fused, launches = flow_pair(96, 160, MIXES["mixed_signs"])
    field = smooth_field(96, 160, seed=3)
    before = field.copy()
    out = np.full_like(field, np.nan)
    assert fused.advect(field, out=out) is out
    np.testing.assert_array_equal(field, before)
    assert np.isfinite(out).all() and launches == {"flow_advect": 1}


def test_fused_flow_holds_only_displacement_and_scratch():
    height, width = 96, 160
    _, fused, _ = flow_pair(height, width, {})
    assert not fused.active and array_bytes(fused) == 0  # an idle flow holds nothing
    fused.set_strengths(MIXES["rotate"])
    assert array_bytes(fused) == 12 * height * width  # (2, H, W) + (H, W) float32


def array_bytes(flow: FlowAdvector) -> int:
    """Bytes of the arrays `flow` keeps."""
    held = list(vars(flow).values()) + list(vars(flow._trace).values())
    held += [item for value in held if isinstance(value, list) for item in value]
    return sum(value.nbytes for value in held if isinstance(value, np.ndarray))


def keep_moving_pair(engine: str, height: int, width: int):
    backend = host_fused_backend()
    extras = []
    for each in (numpy_backend(fft_workers=1), backend):
        noise = NoisePool(each, height, width, seed=11)
        profile = ENGINE_CLASSES[engine].keep_moving
        extras.append(KeepMoving(each, profile, height, width, noise))
    return (*extras, backend.kernel_compiler.launches)


def stand_in_engine_step(world: np.ndarray, step: int) -> None:
    """Changes the left half of `world` in place and leaves the right half still."""
    width = world.shape[1]
    world[:, : width // 2] += 0.02 * np.sin(0.7 * step + world[:, : width // 2] * 6)
    np.clip(world, 0.0, 1.0, out=world)


@pytest.mark.parametrize("engine", ["lenia", "smoothlife", "mnca"])
def test_keep_moving_matches_numpy(engine):
    height, width, steps = 96, 160, 2 * PERTURB_EVERY_STEPS + 1
    reference, fused, launches = keep_moving_pair(engine, height, width)
    start = smooth_field(height, width, seed=4)
    expected, actual = start.copy(), start.copy()
    for step in range(1, steps + 1):
        for extras, world in ((reference, expected), (fused, actual)):
            if extras.wants_previous:
                extras.remember(world)
            stand_in_engine_step(world, step)
            extras.apply(world)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5, err_msg=f"step {step}")
    # Two perturbation steps ran, on a world with still, dense pixels for them to act on.
    assert steps // PERTURB_EVERY_STEPS == 2 and (expected[:, width // 2 :] > 0.03).mean() > 0.2
    assert launches == {"keep_moving_apply": steps}
    assert fused.stir_phase == reference.stir_phase
    assert expected.min() >= 0.0 and expected.max() <= 1.0


def test_keep_moving_perturbation_changes_still_pixels():
    # Guards the test above: on a 4th step the fused result differs from the same step without
    # the stillness-gated perturbation, so a kernel that skipped it would fail the comparison.
    _, fused, _ = keep_moving_pair("lenia", 96, 160)
    _, skipping, _ = keep_moving_pair("lenia", 96, 160)
    world = smooth_field(96, 160, seed=5)
    results = []
    for extras in (fused, skipping):
        copy = world.copy()
        for _ in range(PERTURB_EVERY_STEPS):
            if extras.wants_previous and extras is fused:
                extras.remember(copy)
            elif extras.wants_previous:
                extras.remember(copy + 1.0)  # nothing is still: no perturbation
            extras.apply(copy)
        results.append(copy)
    assert np.abs(results[0] - results[1]).max() > 1e-3


def test_gray_scott_has_no_extras_and_launches_nothing():
    _, fused, launches = keep_moving_pair("gray_scott", 64, 64)
    world = smooth_field(64, 64, seed=6)
    before = world.copy()
    for _ in range(PERTURB_EVERY_STEPS):
        fused.apply(world)
    np.testing.assert_array_equal(world, before)
    assert launches == {}
