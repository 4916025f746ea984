"""Every preset stays alive and moving with the real flow and renderer.

Bands (justified): after warm-up and 100 frames at 256 px (speed 1, so 100-156 engine steps;
at 128 px the Lenia radii hit the prototype's floor of 5 cells and big kernels fill the frame),
  * every value finite and in [0, 1], the frame (H, W, 3) uint8;
  * not dead: alive (> 0.01) on at least 0.2% of the frame in >= 80% of the frames; the health
    monitor may reseed, but a world that is black most of the time fails;
  * not exploded: mean alive <= 0.9 (MNCA without its rim reached 1.0 in the prototype);
  * moving: median activity (mean |change| per step on the health view) >= 1e-5, an order of
    magnitude below the slowest preset measured (Gray-Scott drift, ~1e-4 at 256-512 px), yet far
    above a frozen world (exactly 0 without flow or extras).
The slow variant runs 512 px for 900 frames (30 s at 30 fps) with the same bands.
"""

from __future__ import annotations

import numpy as np
import pytest

from ca_server.presets import preset_names
from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend

BACKEND = numpy_backend(fft_workers=1)


def run_and_check(name: str, size: int, frames: int) -> None:
    sim = Simulation(BACKEND, width=size, height=size, preset=name, seed=1)
    alive, activity = [], []
    for _ in range(frames):
        sim.tick()
        health = sim.health()
        alive.append(health["alive"])
        activity.append(health["activity"])
    world = sim.world
    assert np.isfinite(world).all() and world.min() >= 0 and world.max() <= 1
    frame = sim.render()
    assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
    alive_array = np.array(alive)
    assert (alive_array > 0.002).mean() >= 0.8, f"{name} dark too often: {health}"
    assert alive_array.mean() <= 0.9, f"{name} fills the frame: {health}"
    assert np.nanmedian(activity) >= 1e-5, f"{name} frozen: {health}"


# mycelium (sigma 0.008) dies from its own seed within ~20 frames with or without the extras;
# the prototype lost it too (§6.6). Open: it needs a seed recipe or parameters that sustain it.
KNOWN_FRAGILE = {"mycelium"}


def with_known_fragile(names: list[str]) -> list:
    reason = "open: dies from its own seed recipe (as in the prototype)"
    return [
        pytest.param(name, marks=pytest.mark.xfail(reason=reason, strict=False))
        if name in KNOWN_FRAGILE
        else name
        for name in names
    ]


@pytest.mark.parametrize("name", with_known_fragile(preset_names()))
def test_preset_alive_and_moving_at_256(name):
    run_and_check(name, 256, 100)


@pytest.mark.slow
@pytest.mark.parametrize("name", with_known_fragile(preset_names()))
def test_preset_alive_and_moving_at_512_for_30_seconds(name):
    run_and_check(name, 512, 900)
