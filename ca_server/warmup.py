"""Warming up an incoming preset off screen: a slice of engine steps per tick, then full size.

A preset change (or a reseed, or a regrowth after a failure) must never stall the frame stream. On
a 2-core CPU a background thread would compete with the frame loop for the same cores, so
`ca_server.preset_change` advances a `WarmUp` by a time budget (or a step count) per tick while the
old preset keeps running and rendering. Lenia, SmoothLife and MNCA warm up at a reduced grid (the
short side 256-511 px, with their radii scaled like every other size) and are upsampled once at the
end, which makes warm-up 4-16x cheaper than at full size, unless an engine's radius floor would
lift a kernel on the smaller grid: the pattern would then grow at another scale relative to the
frame and visibly re-form after the upsample, so such a preset warms up on the smallest grid that
keeps its scale (heartbeat and every MNCA preset at full size at 512 px). Gray-Scott, whose pattern
scale is set by its diffusion, warms up on a grid at most half the size with its diffusion scaled
by 1/4 (the same PDE on a coarser grid: 4-6x quicker, where 750 full-size steps took longer than a
live set's time between changes); the pattern is the same size relative to the frame, its details
are not those a full-size warm-up grows (labyrinth lands more compact). A warm-up only hands over a
visible world: one that ends invisible starts over with a new seed, a few times at most. What
differs per engine (steps, grid factors, parameters on a coarser grid) is declared on its class.
"""

from __future__ import annotations

import dataclasses
import math
import time
from types import MappingProxyType

from ca_server.engines import BASE_RESOLUTION, ENGINE_CLASSES
from ca_server.organism import Organism, OrganismFactory
from ca_server.presets import Preset

WARMUP_MIN_SIDE_PX = 256
DEAD_DURING_WARMUP = 0.002
# A warm-up that ends with an invisible world starts over with a new seed, at most this often.
WARMUP_ATTEMPTS = 3


# Whole-pixel rounding moves a radius by up to half a pixel on each grid; a warm-up radius, scaled
# back up, may differ from the full-size one by that much (times the factor on the small grid)
# before the difference counts as a change of scale.
ROUNDING_SLACK_PX = 0.5


def warmup_factor(preset: Preset, height: int, width: int) -> int:
    """The integer downscale (1, or one of the engine's `warmup_factors`) for warming `preset`
    up on an (height, width) frame.

    The largest factor that divides both sides, keeps the short side >= WARMUP_MIN_SIDE_PX and
    keeps every kernel radius at the frame's relative scale: a radius floor that lifts a kernel
    on the small grid but not at full size (heartbeat at 256 px, MNCA's smallest ring) would grow
    a pattern of another scale, which re-forms visibly after the upsample.
    """
    side = min(height, width)
    engine_class = ENGINE_CLASSES[preset.engine]
    kernel_radii_px = engine_class.kernel_radii_px
    full_radii = kernel_radii_px(preset.engine_params, side / BASE_RESOLUTION)
    for factor in engine_class.warmup_factors:
        if side // factor < WARMUP_MIN_SIDE_PX or height % factor or width % factor:
            continue
        small_radii = kernel_radii_px(preset.engine_params, side // factor / BASE_RESOLUTION)
        slack_px = ROUNDING_SLACK_PX * (factor + 1)
        if all(
            abs(small * factor - full) <= slack_px
            for small, full in zip(small_radii, full_radii, strict=True)
        ):
            return factor
    return 1


def warmup_grids(height: int, width: int) -> list[tuple[int, int]]:
    """Every grid a warm-up on an (height, width) frame may use: the frame and the reduced ones
    `warmup_factor` can pick, for work done once per size before the first frame."""
    side = min(height, width)
    return [(height, width)] + [
        (height // factor, width // factor)
        for factor in (2, 4)
        if side // factor >= WARMUP_MIN_SIDE_PX and not height % factor and not width % factor
    ]


def _on_grid(preset: Preset, factor: int) -> Preset:
    """`preset` for a grid `factor` times coarser (the engine's `params_on_grid`)."""
    params = ENGINE_CLASSES[preset.engine].params_on_grid(preset.engine_params, factor)
    if params is preset.engine_params:
        return preset
    return dataclasses.replace(preset, engine_params=MappingProxyType(dict(params)))


class WarmUp:
    """An incoming preset being grown off screen, a unit of work at a time, some per tick.

    The units: build the organism on its warm-up grid and seed it; each engine step; a health
    check and, if the world ended invisible, a new seed; at a reduced grid, build the full-size
    organism, then fill it from the grown one; build its renderer. Each build is its own unit and
    starts a tick's slice, so a frame waits for at most one of them past its own work (0.03-0.1 s
    at 512² on a 2-core CPU, 0.1-0.4 s at 1024²).
    """

    def __init__(self, factory: OrganismFactory, preset: Preset, seed: int):
        self.factory, self.preset, self.seed = factory, preset, seed
        self.grow_steps, self.shape_steps = ENGINE_CLASSES[preset.engine].warmup_steps
        self.small: Organism | None = None
        self.big: Organism | None = None  # the full-size organism, at a reduced warm-up grid
        self.grown: Organism | None = None  # the grown world at full size, calibrated
        self.done_steps = 0
        self.steps_per_tick: int | None = None  # set: this many a tick, whatever the budget
        self.attempts = 1
        self.result: Organism | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None

    def advance(self, deadline: float, max_steps: int | None) -> None:
        """Work until `deadline` (perf_counter) or `max_steps` engine steps; each call does at
        least one unit."""
        factory, steps_this_call, units = self.factory, 0, 0
        full_size = (factory.height, factory.width)
        while not self.finished:
            units += 1
            building = self.small is None or (self.done_steps >= self.grow_steps + self.shape_steps)
            if building and units > 1 and deadline < math.inf:
                return  # a build starts a tick's slice: the frame waits for one unit past it
            if self.small is None:
                factor = warmup_factor(self.preset, factory.height, factory.width)
                self.small = factory.new(_on_grid(self.preset, factor), self.seed, factor)
                self.small.seed_world()
            elif self.done_steps < self.grow_steps + self.shape_steps:
                shaped = self.done_steps >= self.grow_steps
                self.small.step(shaped=shaped)
                self.done_steps += 1
                steps_this_call += 1
                if self.done_steps % 2 == 0:
                    self._check_health(shaped)
            elif self.grown is self.big is None and self._should_start_over():
                self.attempts += 1
                self.done_steps = 0
                self.small.seed_world()
            elif self.grown is None and (self.small.height, self.small.width) == full_size:
                self.grown = self._calibrated(self.small)
            elif self.big is None:
                self.big = factory.new(self.preset, self.seed, 1)
            elif self.grown is None:
                self.big.load_from(self.small)
                self.grown = self._calibrated(self.big)
            else:
                factory.prepare_renderer(self.grown)
                self.result = self.grown
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

    def _should_start_over(self) -> bool:
        """Whether the grown world ended invisible with attempts left (measures it)."""
        small = self.small
        assert small is not None
        if self.attempts >= WARMUP_ATTEMPTS:
            return False
        small.monitor.measure(small.world, 0)
        return small.monitor.failing()

    @staticmethod
    def _calibrated(organism: Organism) -> Organism:
        """`organism` (at the frame size) measured, calibrated and marked as on screen."""
        monitor = organism.monitor
        monitor.measure(organism.world, 0)
        monitor.reset()
        monitor.calibrate()
        if monitor.visible:
            organism.take_keepsake()
        organism.on_screen = True
        return organism
