"""Engines grow structures, not pixel-scale moiré: a regression test for the 256 px checkerboard.

At 256 px the MNCA presets and Lenia `heartbeat` used to turn into checkerboards and period-2
flicker: their res-scaled kernels (MNCA discs of 1.5-3 px, heartbeat R = 5) put the rules'
pattern wavelength at 2-4 px, and MNCA's hard thresholds flipped most cells every step.

Measure: the share of the world's spectral power (mean removed) at frequencies whose larger
component is >= 3/8 cycle per pixel, i.e. periods under 2.7 px — what a checkerboard is made of.
Bands, bare engine, 256 px, 150 steps from the preset's seed (measured; two seeds agree to 0.01):
healthy presets (amoeba, jellyfish, sl_gliders, sl_chaos) 0.02-0.06; the fixed MNCA presets,
whose sharp-edged binary stripes and spots put some edge power up there, 0.07-0.09; heartbeat
0.07. Before the fix: 0.12-0.14 (mnca_mitosis, mnca_hunt, mnca_coral), 0.19-0.20 (heartbeat,
mnca_soliton) and 0.90 (mnca_worm). The bound 0.11 sits between the two groups.
Flicker: the fraction of cells whose change reverses sign from one step to the next (and is above
round-off). Fixed MNCA: 0.000; before: 0.04 (mitosis) to 0.89 (soliton). Bound 0.02.
"""

from __future__ import annotations

import numpy as np
import pytest

from ca_server.engines import create_engine
from ca_server.presets import load_preset
from ca_server.xp import numpy_backend

BACKEND = numpy_backend(fft_workers=1)
SIZE_PX = 256
STEPS = 150
MOIRE_PRESETS = [
    "heartbeat",
    "mnca_soliton",
    "mnca_mitosis",
    "mnca_worm",
    "mnca_hunt",
    "mnca_coral",
]
MNCA_PRESETS = [name for name in MOIRE_PRESETS if name.startswith("mnca")]
MAX_NYQUIST_SHARE = 0.11
MAX_FLICKER = 0.02


def grown_engine(name: str, steps: int = STEPS):
    preset = load_preset(name)
    engine = create_engine(preset.engine, BACKEND, SIZE_PX, SIZE_PX, preset.engine_params)
    engine.seed(np.random.default_rng(0), preset.seed_kind, preset.seed_density)
    for _ in range(steps):
        engine.step()
    return engine


def nyquist_share(world: np.ndarray) -> float:
    """Share of spectral power (mean removed) with max(|fy|, |fx|) >= 3/8 cycle per pixel."""
    field = np.asarray(world, np.float64)
    power = np.abs(np.fft.fft2(field - field.mean())) ** 2
    fy = np.abs(np.fft.fftfreq(field.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(field.shape[1]))[None, :]
    return float(power[np.maximum(fy, fx) >= 0.375].sum() / max(power.sum(), 1e-30))


def test_nyquist_share_tells_a_checkerboard_from_a_smooth_pattern():
    y, x = np.mgrid[:SIZE_PX, :SIZE_PX]
    stripes = (np.sin(2 * np.pi * x / 16) > 0).astype(np.float32)  # sharp 8 px stripes
    checker = ((x + y) % 2).astype(np.float32)
    assert nyquist_share(stripes) < 0.05
    assert nyquist_share(checker) > 0.99
    assert nyquist_share(0.5 * stripes + 0.5 * checker) > MAX_NYQUIST_SHARE


@pytest.mark.parametrize("name", MOIRE_PRESETS)
def test_no_pixel_scale_texture_after_growth(name):
    engine = grown_engine(name)
    world = np.asarray(engine.world)
    assert world.std() > 0.05, "the world went flat; the texture test would be meaningless"
    share = nyquist_share(world)
    assert share < MAX_NYQUIST_SHARE, f"{name}: {share:.3f} of the power is at periods < 2.7 px"


@pytest.mark.parametrize("name", MNCA_PRESETS)
def test_mnca_does_not_flicker_with_period_two(name):
    engine = grown_engine(name)
    before = np.array(engine.world)
    engine.step()
    middle = np.array(engine.world)
    engine.step()
    change_1, change_2 = middle - before, np.asarray(engine.world) - middle
    flicker = float(((change_1 * change_2 < 0) & (np.abs(change_1) > 1e-4)).mean())
    assert flicker < MAX_FLICKER, f"{name}: {flicker:.2f} of cells reverse every step"
