"""The Simulation's controls: speed accumulation, non-blocking preset changes, crossfade, reseed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ca_server.engines import ENGINE_CLASSES, create_engine
from ca_server.presets import UnknownPresetError, load_preset, preset_names
from ca_server.simulation import Simulation
from ca_server.warmup import WarmUp, warmup_factor
from ca_server.xp import numpy_backend

BACKEND = numpy_backend(fft_workers=1)


def small(logic_only, preset="coral", seed=0, **kwargs):
    return Simulation(
        BACKEND, width=96, height=96, preset=preset, seed=seed, **logic_only, **kwargs
    )


def test_fractional_speed_accumulates(logic_only):
    sim = small(logic_only)
    sim.speed = 0.5
    assert [sim.tick() for _ in range(6)] == [0, 1, 0, 1, 0, 1]
    sim.speed = 2.5
    assert sum(sim.tick() for _ in range(4)) == 10
    sim.speed = 0
    assert sim.tick() == 0
    assert sim.sim_step == 13


def test_preset_speed_multiplies(logic_only):
    sim = small(logic_only, preset="amoeba")  # the prototype's speed override 1.56
    assert sum(sim.tick() for _ in range(100)) in (155, 156)


BAD_VALUES = [("speed", 9), ("speed", -1), ("hue_shift", 1.5), ("brightness", float("nan")),
              ("speed", "fast")]  # fmt: skip


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_bad_control_values_are_rejected(logic_only, name, value):
    sim = small(logic_only)
    with pytest.raises(ValueError, match=name):
        setattr(sim, name, value)


def test_unknown_preset_is_rejected_synchronously(logic_only):
    sim = small(logic_only)
    with pytest.raises(UnknownPresetError, match="coral"):
        sim.set_preset("nope")
    assert sim.preset_name == "coral" and not sim.health()["warming"]


def test_set_preset_warms_up_in_slices_then_crossfades(logic_only):
    sim = small(logic_only, warmup_steps_per_tick=40, crossfade_frames=10)
    sim.set_preset("sl_gliders")
    assert sim.showing == "coral" and sim.preset_name == "sl_gliders"
    grow, shape = ENGINE_CLASSES["smoothlife"].warmup_steps
    ticks_to_warm = -(-(grow + shape) // 40)
    for _ in range(ticks_to_warm):
        assert sim.health()["warming"]
        assert sim.tick() == 1  # the old preset keeps running every frame
    for _ in range(2):
        sim.tick()
    health = sim.health()
    assert not health["warming"] and health["crossfading"]
    frame = sim.render()
    assert frame.shape == (96, 96, 3) and frame.dtype == np.uint8
    for _ in range(10):
        sim.tick()
    assert sim.showing == "sl_gliders" and not sim.health()["crossfading"]


def test_crossfade_blends_between_the_two_frames(logic_only):
    sim = small(logic_only, warmup_steps_per_tick=1000, crossfade_frames=4)
    sim.set_preset("mnca_worm")
    while not sim.health()["crossfading"]:
        sim.tick()
    sim.tick()  # fade 1/4 of the way
    blended = sim.render().astype(int)  # also creates both renderers
    old = sim.change.current.renderer.render(sim.change.current.world).astype(int)
    new = sim.change.incoming.renderer.render(sim.change.incoming.world).astype(int)
    low, high = np.minimum(old, new), np.maximum(old, new)
    assert ((blended >= low - 1) & (blended <= high + 1)).all()
    assert not np.array_equal(blended, old) and not np.array_equal(blended, new)


def test_a_death_in_the_frame_a_fade_ends_asks_for_no_redo(logic_only):
    # The outgoing world dies in the tick that ends its fade: it is no longer shown, so its
    # keepsake coming back must not make the daemon render and copy the frame twice.
    sim = small(logic_only, warmup_steps_per_tick=1000, crossfade_frames=4)
    for _ in range(8):
        sim.next_frame()  # keepsakes taken
    sim.set_preset("mnca_worm")
    while not sim.health()["crossfading"]:
        sim.next_frame()
    for _ in range(3):
        sim.next_frame()
    outgoing = sim.change.current
    outgoing.world[...] = 0.0
    sim.tick()
    sim.render()
    assert sim.change.current is not outgoing and sim.showing == "mnca_worm"
    assert not sim.settle()
    assert outgoing.holding  # it did fail and hold: the redo was withheld, not the verdict


def test_a_second_change_during_a_fade_lands_the_first(logic_only):
    sim = small(logic_only, warmup_steps_per_tick=1000, crossfade_frames=50)
    sim.set_preset("mnca_worm")
    while not sim.health()["crossfading"]:
        sim.tick()
    sim.set_preset("medusa")
    assert sim.showing == "mnca_worm" and sim.health()["warming"]


def test_same_seed_same_world_and_reseed_is_deterministic(logic_only):
    # A fixed warm-up step count: a health regrowth (like any change) lands at a frame that
    # depends on the time budget otherwise.
    first, second = (small(logic_only, seed=11, warmup_steps_per_tick=500) for _ in range(2))
    for sim in (first, second):
        for _ in range(20):
            sim.tick()
    np.testing.assert_array_equal(first.world, second.world)
    other = small(logic_only, seed=12)
    assert not np.array_equal(first.world, other.world)
    used = [sim.reseed() for sim in (first, second)]
    assert used[0] == used[1] == first.seed
    assert first.reseed(5) == 5 and second.reseed(5) == 5
    for sim in (first, second):
        for _ in range(40):
            sim.tick()
    assert first.showing == "coral" and not first.health()["warming"]
    np.testing.assert_array_equal(first.world, second.world)


def test_non_square_frames_and_health_report(logic_only):
    sim = Simulation(BACKEND, width=160, height=96, preset="medusa", **logic_only)
    for _ in range(5):
        sim.tick()
    assert sim.world.shape == (96, 160)
    assert sim.render().shape == (96, 160, 3)
    health = sim.health()
    for key in ("mass", "alive", "activity", "reseeds", "perturbs", "warming", "sim_step"):
        assert key in health
    assert 0 < health["mass"] < 1 and 0 < health["alive"] <= 1


def test_warmup_runs_on_a_smaller_grid():
    assert warmup_factor(load_preset("coral"), 1024, 1024) == 4
    assert warmup_factor(load_preset("sl_worms"), 512, 768) == 2
    assert warmup_factor(load_preset("coral"), 256, 256) == 1
    # Gray-Scott at half size at most (its diffusion scaled by 1/4): 750 full-size steps were
    # 13-24 s at 512² on a loaded 2-core CPU, longer than a live set's 5 s between changes.
    assert warmup_factor(load_preset("labyrinth"), 1024, 1024) == 2
    assert warmup_factor(load_preset("labyrinth"), 512, 512) == 2
    assert warmup_factor(load_preset("labyrinth"), 384, 384) == 1
    # odd halves cannot be upsampled exactly
    assert warmup_factor(load_preset("sl_worms"), 1000, 1002) == 2


def test_gray_scott_warms_up_the_same_pde_on_a_coarser_grid(logic_only):
    sim = Simulation(BACKEND, width=512, height=512, preset="medusa", **logic_only)
    params = load_preset("medusa").engine_params
    warm = WarmUp(sim.change.factory, load_preset("medusa"), seed=1)
    warm.advance(math.inf, 1)
    assert warm.small is not None and warm.small.height == 256
    assert warm.small.engine.params["Du"] == params["Du"] / 4
    assert warm.small.engine.params["Dv"] == params["Dv"] / 4


def built_radii_px(engine) -> list[float]:
    """The kernel radii a real engine built, in px of its own grid."""
    if engine.name == "lenia":
        return [engine.radius]
    if engine.name == "smoothlife":
        return [engine.inner_radius, engine.outer_radius]
    if engine.name == "mnca":
        return [outer for _, outer in engine.rings]
    return []  # Gray-Scott's Laplacian does not scale with the grid


def warmup_and_full_engines(name, height, width):
    preset = load_preset(name)
    factor = warmup_factor(preset, height, width)
    small, full = (
        create_engine(preset.engine, BACKEND, height // f, width // f, preset.engine_params)
        for f in (factor, 1)
    )
    return factor, small, full


@pytest.mark.parametrize("name", ["heartbeat", "mnca_mitosis", "mnca_hunt", "coral"])
@pytest.mark.parametrize("size", [512, 1024])
def test_warmup_kernel_scale_matches_the_full_size(name, size):
    # A radius floor that lifts the warm-up kernel (heartbeat's R = 10 is 5 px at 256, floored
    # to 8) grows a pattern at another scale, which re-forms after the upsample.
    factor, small, full = warmup_and_full_engines(name, size, size)
    for small_px, full_px in zip(built_radii_px(small), built_radii_px(full), strict=True):
        assert small_px / small.height == pytest.approx(full_px / full.height, rel=0.02)
    if name == "coral":  # no floor bites: the warm-up stays cheap
        assert factor == size // 256


@pytest.mark.parametrize(("height", "width"), [(512, 512), (720, 1280), (1024, 1024)])
def test_every_preset_warms_up_at_its_full_size_scale(height, width):
    """Real engines' radii, warm-up x factor vs full size, differ by whole-pixel rounding only."""
    for name in preset_names():
        factor, small, full = warmup_and_full_engines(name, height, width)
        slack_px = 0.5 * (factor + 1)
        for small_px, full_px in zip(built_radii_px(small), built_radii_px(full), strict=True):
            assert abs(small_px * factor - full_px) <= slack_px, (name, factor)
