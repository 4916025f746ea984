"""The Simulation: the preset on screen, speed and colour controls, and non-blocking preset changes.

The daemon calls `tick()` once per video frame and `render()` to colour it. `tick` turns `speed`
(times the preset's own speed) into whole engine steps with a fractional accumulator, so 0.5 is one
step every other frame. A preset change (`set_preset`, or `reseed`) never stalls the frame stream.
On a 2-core CPU a background thread would compete with the frame loop for the same cores, so the
incoming preset is instead warmed up in slices: each tick spends at most `warmup_budget_s` (about
half a CPU frame) on it while the old preset keeps running and rendering. Lenia, SmoothLife and MNCA
warm up at a reduced grid (the short side 256-511 px, with their radii scaled like every other size)
and are upsampled once at the end, which makes warm-up 4-16x cheaper than at full size, unless an
engine's radius floor would lift a kernel on the smaller grid: the pattern would then grow at
another scale relative to the frame and visibly re-form after the upsample, so such a preset warms
up on the smallest grid that keeps its scale (heartbeat and every MNCA preset at full size at 512
px). Gray-Scott, whose diffusion is not resolution-scaled, warms up at full size. When it is ready
the new preset is rendered alongside the old one and the RGB frames crossfade over
`crossfade_frames` (~1 s). On a GPU the same budget covers hundreds of steps, so a switch completes
within a few frames. The first preset is warmed up synchronously in the constructor, before any
frame is due. The same path answers the health monitor: when the world on screen fails (dead,
invisible, collapsed) or needs a full reseed, its organism holds the last visible picture drifting
along the flow while a fresh seed regrows off screen, then crossfades in, so the stream never passes
through black. A warm-up only hands over a visible world.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ca_server.engines.base import BASE_RESOLUTION
from ca_server.engines.keep_moving import NoisePool
from ca_server.engines.lenia import MIN_RADIUS_PX
from ca_server.engines.mnca import MIN_SMALLEST_RING_PX
from ca_server.organism import Organism
from ca_server.presets import DEFAULT_PRESET, Preset, load_preset
from ca_server.xp import Backend

MAX_SPEED = 8.0
MAX_STEPS_PER_TICK = 32
# (grow steps without flow or extras, shape steps with them), as in the prototype's run_warmup,
# except Gray-Scott, whose 1 000 grow steps ran 31-35 s at 1024 px on the CPU.
WARMUP_STEPS: dict[str, tuple[int, int]] = {
    "lenia": (600, 200),
    "smoothlife": (100, 50),
    "mnca": (100, 50),
    "gray_scott": (600, 150),
}
WARMUP_MIN_SIDE_PX = 256
DEAD_DURING_WARMUP = 0.002
# A warm-up that ends with an invisible world starts over with a new seed, at most this often.
WARMUP_ATTEMPTS = 3


# SmoothLife's floors, written into its constructor: inner radius and annulus width >= 3 px.
SMOOTHLIFE_MIN_INNER_PX = 3
SMOOTHLIFE_MIN_ANNULUS_PX = 3
# Whole-pixel rounding moves a radius by up to half a pixel on each grid; a warm-up radius, scaled
# back up, may differ from the full-size one by that much (times the factor on the small grid)
# before the difference counts as a change of scale.
ROUNDING_SLACK_PX = 0.5


def kernel_radii_px(engine: str, params: Mapping[str, Any], side: int) -> tuple[float, ...]:
    """The kernel radii in px that `engine` builds on a grid with short side `side`, floors in.

    Follows the engines' constructors: Lenia's R; SmoothLife's inner and outer radius; every MNCA
    ring's outer radius. Empty for Gray-Scott, whose Laplacian does not scale with the grid.
    """
    scale = side / BASE_RESOLUTION
    if engine == "lenia":
        return (max(MIN_RADIUS_PX, round(params["R"] * scale)),)
    if engine == "smoothlife":
        inner = max(SMOOTHLIFE_MIN_INNER_PX, round(params["ri"] * scale))
        outer = max(inner + SMOOTHLIFE_MIN_ANNULUS_PX, round(params["ra"] * scale))
        return (inner, outer)
    if engine == "mnca":
        smallest_outer = min(float(outer) for _, outer in params["rings"])
        ring_scale = max(scale, MIN_SMALLEST_RING_PX / smallest_outer)
        return tuple(
            max(outer * ring_scale, inner * ring_scale + 1.0) for inner, outer in params["rings"]
        )
    if engine == "gray_scott":
        return ()
    raise ValueError(f"unknown engine {engine!r}; use lenia, smoothlife, mnca or gray_scott")


def warmup_factor(preset: Preset, height: int, width: int) -> int:
    """The integer downscale (1, 2 or 4) for warming `preset` up on an (height, width) frame.

    The largest factor that divides both sides, keeps the short side >= WARMUP_MIN_SIDE_PX and
    keeps every kernel radius at the frame's relative scale: a radius floor that lifts a kernel
    on the small grid but not at full size (heartbeat at 256 px, MNCA's smallest ring) would grow
    a pattern of another scale, which re-forms visibly after the upsample.
    """
    if preset.engine == "gray_scott":
        return 1
    side = min(height, width)
    full_radii = kernel_radii_px(preset.engine, preset.engine_params, side)
    for factor in (4, 2):
        if side // factor < WARMUP_MIN_SIDE_PX or height % factor or width % factor:
            continue
        small_radii = kernel_radii_px(preset.engine, preset.engine_params, side // factor)
        slack_px = ROUNDING_SLACK_PX * (factor + 1)
        if all(
            abs(small * factor - full) <= slack_px
            for small, full in zip(small_radii, full_radii, strict=True)
        ):
            return factor
    return 1


def _default_flow_factory(*args: Any, **kwargs: Any) -> Any:
    from ca_server.render import FlowAdvector

    return FlowAdvector(*args, **kwargs)


def _default_renderer_factory(*args: Any, **kwargs: Any) -> Any:
    from ca_server.render import IridescentRenderer

    return IridescentRenderer(*args, **kwargs)


class _WarmUp:
    """An incoming preset being grown off screen, a slice of steps per tick."""

    def __init__(self, simulation: Simulation, preset: Preset, seed: int):
        self.simulation, self.preset, self.seed = simulation, preset, seed
        self.grow_steps, self.shape_steps = WARMUP_STEPS[preset.engine]
        self.small: Organism | None = None
        self.done_steps = 0
        self.attempts = 1
        self.result: Organism | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None

    def advance(self, deadline: float, max_steps: int | None) -> None:
        """Work until `deadline` (perf_counter) or `max_steps`; each call does at least one unit."""
        sim, steps_this_call = self.simulation, 0
        while not self.finished:
            if self.small is None:
                factor = warmup_factor(self.preset, sim.height, sim.width)
                self.small = sim.new_organism(self.preset, self.seed, factor)
                self.small.seed_world()
            elif self.done_steps < self.grow_steps + self.shape_steps:
                shaped = self.done_steps >= self.grow_steps
                self.small.step(shaped=shaped)
                self.done_steps += 1
                steps_this_call += 1
                if self.done_steps % 2 == 0:
                    self._check_health(shaped)
            elif self._failed() and self.attempts < WARMUP_ATTEMPTS:
                self.attempts += 1
                self.done_steps = 0
                self.small.seed_world()
            else:
                self.result = self._full_size()
            out_of_steps = max_steps is not None and steps_this_call >= max_steps
            if out_of_steps or time.perf_counter() >= deadline:
                return

    def _check_health(self, shaped: bool) -> None:
        small = self.small
        assert small is not None
        if shaped:
            small.end_frame(2)
        elif self.done_steps % 20 == 0 and float(small.world.mean()) < DEAD_DURING_WARMUP:
            small.seed_world()

    def _failed(self) -> bool:
        small = self.small
        assert small is not None
        small.monitor.measure(small.world, 0)
        return small.monitor.failing()

    def _full_size(self) -> Organism:
        """The grown organism at the frame size, calibrated and put on screen."""
        sim, small = self.simulation, self.small
        assert small is not None
        organism = small
        if (small.height, small.width) != (sim.height, sim.width):
            organism = sim.new_organism(self.preset, self.seed, 1)
            organism.load_from(small)
        monitor = organism.monitor
        monitor.measure(organism.world, 0)
        monitor.reset()
        monitor.calibrate()
        if monitor.visible:
            organism.take_keepsake()
        organism.on_screen = True
        return organism


class Simulation:
    """The running CA: one preset on screen, live controls, warm-up and crossfade on changes."""

    def __init__(
        self,
        backend: Backend,
        *,
        width: int,
        height: int,
        preset: str = DEFAULT_PRESET,
        seed: int = 0,
        presets_dir: Path | None = None,
        warmup_budget_s: float = 0.015,
        warmup_steps_per_tick: int | None = None,  # if set, replaces warmup_budget_s
        crossfade_frames: int = 30,
        flow_factory: Callable[..., Any] | None = None,
        renderer_factory: Callable[..., Any] | None = None,
    ):
        if width < 32 or height < 32:
            raise ValueError(f"simulation size {width}x{height} is too small; use at least 32x32")
        self.backend, self.width, self.height = backend, int(width), int(height)
        self.presets_dir = presets_dir
        self.warmup_budget_s = warmup_budget_s
        self.warmup_steps_per_tick = warmup_steps_per_tick
        self.crossfade_frames = max(1, int(crossfade_frames))
        self._flow_factory = flow_factory or _default_flow_factory
        self._renderer_factory = renderer_factory or _default_renderer_factory
        self._noise_pools: dict[tuple[int, int], NoisePool] = {}
        self._speed, self._hue_shift, self._brightness = 1.0, 0.0, 1.0
        self._accumulator = self._incoming_accumulator = 0.0
        self.sim_step = 0
        self.frame = 0
        self.seed = int(seed)
        self._seed_sequence = np.random.default_rng([self.seed, 0x5EED5])
        target = load_preset(preset, presets_dir)
        self.preset_name = target.name
        warm = _WarmUp(self, target, self.seed)
        warm.advance(math.inf, None)  # synchronous: no frame is due yet
        assert warm.result is not None
        self._current: Organism = warm.result
        self._warmup: _WarmUp | None = None
        self._incoming: Organism | None = None
        self._fade_frame = 0
        self._blend: tuple[Any, Any, Any, Any] | None = None
        self.regrowths = 0

    # -- live controls ---------------------------------------------------------------------
    @property
    def speed(self) -> float:
        """Engine steps per frame, times the preset's own speed; 0..8, fractions accumulate."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        self._speed = _checked("speed", value, 0.0, MAX_SPEED)

    @property
    def hue_shift(self) -> float:
        """Hue rotation in turns (0..1), added to the preset's own hue."""
        return self._hue_shift

    @hue_shift.setter
    def hue_shift(self, value: float) -> None:
        self._hue_shift = _checked("hue_shift", value, 0.0, 1.0)

    @property
    def brightness(self) -> float:
        """Brightness multiplier (0..3) on the preset's own brightness, capped at 3."""
        return self._brightness

    @brightness.setter
    def brightness(self, value: float) -> None:
        self._brightness = _checked("brightness", value, 0.0, 3.0)

    @property
    def showing(self) -> str:
        """The preset on screen (differs from `preset_name` while a change warms up)."""
        return self._current.preset.name

    # -- preset changes ----------------------------------------------------------------------
    def set_preset(self, name: str) -> None:
        """Switch to preset `name`: validated now, warmed up over the next ticks, crossfaded in.

        Raises UnknownPresetError (listing the valid names) or PresetFileError at once.
        """
        preset = load_preset(name, self.presets_dir)
        self._start_change(preset, self.seed)

    def reseed(self, seed: int | None = None) -> int:
        """Regrow the current preset from `seed` (default: the next of a seeded sequence).

        Returns the seed used. Like a preset change it warms up off screen and crossfades in.
        """
        if seed is None:
            seed = int(self._seed_sequence.integers(0, 2**31 - 1))
        self.seed = int(seed)
        self._start_change(load_preset(self.preset_name, self.presets_dir), self.seed)
        return self.seed

    def _start_change(self, preset: Preset, seed: int) -> None:
        if self._incoming is not None:  # a fade in progress: land it now, then start over
            self._finish_fade()
        self.preset_name = preset.name
        self._warmup = _WarmUp(self, preset, seed)

    def new_organism(self, preset: Preset, seed: int, factor: int) -> Organism:
        height, width = self.height // factor, self.width // factor
        if (height, width) not in self._noise_pools:
            self._noise_pools[(height, width)] = NoisePool(self.backend, height, width, self.seed)
        return Organism(
            self.backend,
            preset,
            height,
            width,
            seed=seed,
            noise=self._noise_pools[(height, width)],
            flow_factory=self._flow_factory,
        )

    # -- the frame ----------------------------------------------------------------------------
    def tick(self) -> int:
        """Advance one video frame; returns the engine steps taken by the preset on screen."""
        started = time.perf_counter()
        self._accumulator = min(
            self._accumulator + self._speed * self._current.preset.speed, MAX_STEPS_PER_TICK
        )
        steps = int(self._accumulator)
        self._accumulator -= steps
        for _ in range(steps):
            self._current.step()
        self._current.end_frame(steps)
        self.sim_step += steps
        if self._incoming is not None:
            self._incoming_accumulator += self._speed * self._incoming.preset.speed
            incoming_steps = int(self._incoming_accumulator)
            self._incoming_accumulator -= incoming_steps
            for _ in range(incoming_steps):
                self._incoming.step()
            self._incoming.end_frame(incoming_steps)
            self._fade_frame += 1
            if self._fade_frame >= self.crossfade_frames:
                self._finish_fade()
        elif self._warmup is not None:
            # A fixed step count per tick (tests, benchmarks) replaces the time budget, which
            # makes the frame at which the change lands reproducible.
            by_count = self.warmup_steps_per_tick is not None
            deadline = math.inf if by_count else started + self.warmup_budget_s
            self._warmup.advance(deadline, self.warmup_steps_per_tick)
            if self._warmup.finished:
                self._incoming = self._warmup.result
                self._warmup = None
                self._fade_frame = 0
                self._incoming_accumulator = self._accumulator
        if self._current.holding and self._warmup is None and self._incoming is None:
            self._start_regrowth()
        self.frame += 1
        return steps

    def _start_regrowth(self) -> None:
        """Grow a fresh seed of the held preset off screen; it crossfades in when ready."""
        organism = self._current
        organism.wants_regrowth = False
        seed = int(organism.rng.integers(0, 2**31 - 1))
        self._warmup = _WarmUp(self, organism.preset, seed)
        self.regrowths += 1

    def _finish_fade(self) -> None:
        assert self._incoming is not None
        self._current, self._incoming = self._incoming, None
        self._blend = None

    def render(self, out: Any = None) -> Any:
        """Colour the frame: (H, W, 3) uint8 on the backend's device (into `out` if given)."""
        if self._incoming is None:
            return self._render_organism(self._current, out)
        xp = self.backend.xp
        if self._blend is None:
            shape = (self.height, self.width, 3)
            self._blend = (
                xp.empty(shape, xp.uint8),
                xp.empty(shape, xp.uint8),
                xp.empty(shape, xp.uint16),
                xp.empty(shape, xp.uint16),
            )
        old_rgb, new_rgb, mix, scratch = self._blend
        self._render_organism(self._current, old_rgb)
        self._render_organism(self._incoming, new_rgb)
        weight = round(256 * self._fade_frame / self.crossfade_frames)
        xp.copyto(mix, old_rgb, casting="unsafe")
        mix *= 256 - weight
        xp.copyto(scratch, new_rgb, casting="unsafe")
        scratch *= weight
        mix += scratch
        mix >>= 8
        if out is None:
            out = xp.empty((self.height, self.width, 3), xp.uint8)
        xp.copyto(out, mix, casting="unsafe")
        return out

    def _render_organism(self, organism: Organism, out: Any) -> Any:
        render_table = organism.preset.render
        if organism.renderer is None:
            organism.renderer = self._renderer_factory(
                self.backend,
                self.height,
                self.width,
                palette=render_table.get("palette", "oil_slick"),
                seed=self.seed,
                settings=dict(render_table),
            )
        renderer = organism.renderer
        hue = (render_table.get("hue", 0.0) + self._hue_shift) % 1.0
        brightness = min(3.0, render_table.get("brightness", 1.0) * self._brightness)
        if renderer.hue_shift != hue:
            renderer.hue_shift = hue
        if renderer.brightness != brightness:
            renderer.brightness = brightness
        return renderer.render(organism.world, out=out)

    # -- status -------------------------------------------------------------------------------
    @property
    def world(self) -> Any:
        """The on-screen world: (H, W) float32 in [0, 1] on the backend's device."""
        return self._current.world

    def health(self) -> dict[str, Any]:
        """The on-screen world's latest statistics and the health monitor's counters."""
        monitor = self._current.monitor
        counters = monitor.counters
        return {
            "preset": self.preset_name,
            "showing": self.showing,
            "mass": monitor.mass,
            "alive": monitor.alive,
            "activity": monitor.activity,
            "reseeds": counters.reseeds,
            "regrowths": self.regrowths,
            "holding": self._current.holding,
            "revives": counters.revives,
            "clusters": counters.clusters,
            "erosions": counters.erosions,
            "perturbs": counters.perturbs,
            "warming": self._warmup is not None,
            "crossfading": self._incoming is not None,
            "sim_step": self.sim_step,
        }


def _checked(name: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return float(value)
