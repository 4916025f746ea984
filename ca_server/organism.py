"""One running preset: its engine, flow, keep-moving extras, LFO breathing, health and renderer.

The Simulation holds one `Organism` on screen and, during a preset change, a second one warming up
or fading in. An organism steps its engine, advects every state field along the preset's flow mix,
applies the keep-moving extras, and once per video frame updates its LFO parameters, queues its
health statistics (`queue_health`) and, once the device has finished the frame, acts on the verdict
(`settle`). On screen (`on_screen`), a failing world (dead, invisible, collapsed, non-finite) or a
call for a full reseed is never answered in place, which would cut through black or to a raw seed:
the organism instead holds its picture (the current world if still visible, else its keepsake, a
copy of the last visible state taken every few frames) and keeps it drifting along the flow; the
preset change (`ca_server.preset_change`) sees it `holding`, grows a fresh seed off screen and
crossfades to it. All randomness comes from a numpy Generator seeded from the simulation seed, so
a seed reproduces the same world on the same backend. `OrganismFactory` makes organisms for one
frame size, each grid's noise table shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ca_server.engines import create_engine
from ca_server.engines.base import wrapped_distance2
from ca_server.engines.keep_moving import KeepMoving, NoisePool
from ca_server.health import (
    VISIBLE_DISPLAY_PEAK,
    Action,
    BreathingLFO,
    HealthMonitor,
    policy_for,
)
from ca_server.presets import Preset
from ca_server.xp import Backend

FLOW_PIXELS_PER_STEP_AT_BASE = 0.8  # the prototype's tuned drift at 512 px
REVIVE_CLUSTERS = 8
KEEPSAKE_EVERY_FRAMES = 4  # a restored keepsake is at most this many frames old


class Organism:
    """A preset running on an (height, width) grid of the backend's device."""

    def __init__(
        self,
        backend: Backend,
        preset: Preset,
        height: int,
        width: int,
        *,
        seed: int,
        noise: NoisePool,
        flow_factory: Callable[..., Any],
    ):
        self.backend, self.preset = backend, preset
        self.height, self.width, self.seed = height, width, seed
        self.rng = np.random.default_rng([seed, 0x5EED])
        self.engine = create_engine(preset.engine, backend, height, width, preset.engine_params)
        self.keep_moving = KeepMoving(backend, self.engine.keep_moving, height, width, noise)
        pixels_per_step = max(0.2, FLOW_PIXELS_PER_STEP_AT_BASE * self.engine.res_scale)
        self.flow = flow_factory(backend, height, width, pixels_per_step=pixels_per_step)
        self.flow.set_strengths(dict(preset.flow))
        self.breathing = BreathingLFO(self.engine.breathing(), self.engine.params)
        floor = float(preset.render.get("floor", 0.0))
        gain = float(preset.render.get("gain", 1.0))
        self.monitor = HealthMonitor(
            backend,
            height,
            width,
            policy_for(preset.engine, min(height, width)),
            visible_peak=floor + VISIBLE_DISPLAY_PEAK / gain,
        )
        self.renderer: Any = None
        self.steps = 0
        self.on_screen = False  # set by the Simulation: failures then hold and regrow
        self.holding = False
        self._keepsake: list[Any] | None = None
        self._frames = 0
        self._queued_steps = 0  # engine steps behind the statistics `queue_health` queued

    @property
    def world(self) -> Any:
        return self.engine.world

    def seed_world(self) -> None:
        """Fresh seed with the preset's recipe; LFO phases and health streaks restart."""
        self.engine.seed(self.rng, self.preset.seed_kind, self.preset.seed_density)
        self.breathing.reset()
        self.monitor.reset()

    def step(self, shaped: bool = True) -> None:
        """One engine step; `shaped` adds flow, containment and the keep-moving extras.

        While holding, the engine is paused and the held picture only drifts along the flow.
        """
        if self.holding:
            if self.flow.active:
                for field in self.engine.fields:
                    self.flow.advect(field, out=field)
            return
        if shaped and self.keep_moving.wants_previous:
            self.keep_moving.remember(self.engine.world)
        self.engine.step()
        self.steps += 1
        if not shaped:
            return
        if self.flow.active:
            for field in self.engine.fields:
                self.flow.advect(field, out=field)
        self.keep_moving.apply(self.engine.world)

    def queue_health(self, steps: int) -> None:
        """Once per video frame, after its steps: breathe the parameters, queue the health
        statistics on the device. `settle` acts on them once the device has finished."""
        if steps and not self.holding:
            self.engine.set_live(self.breathing.advance(steps))
        self.monitor.queue_measure(self.engine.world)
        self._queued_steps = steps

    def settle(self) -> bool:
        """Act on the statistics `queue_health` queued (the device must have finished them).

        On screen, a failing world or a call for a reseed or revive holds the picture instead
        (the preset change then regrows it); while holding nothing else is done. Returns True
        when the world was replaced by its keepsake, i.e. a frame rendered since `queue_health`
        showed a picture that must not go out and has to be rendered again.
        """
        steps, monitor = self._queued_steps, self.monitor
        monitor.read_measurement(steps)
        if self.holding:
            if monitor.failing():  # the held picture itself went bad (or was zeroed)
                return self._restore_keepsake()
            return False
        if self.on_screen and monitor.failing():
            return self.hold()
        action = monitor.decide(steps)
        if self.on_screen and action in (Action.RESEED, Action.REVIVE):
            return self.hold()
        self.apply(action)
        self._frames += 1
        if self._frames % KEEPSAKE_EVERY_FRAMES == 0 and monitor.visible:
            self.take_keepsake()
        return False

    def end_frame(self, steps: int) -> None:
        """`queue_health` and `settle` with a wait between them (off screen, during warm-up)."""
        self.queue_health(steps)
        self.backend.synchronize()
        self.settle()

    def take_keepsake(self) -> None:
        """Copy every state field, the picture a hold falls back on."""
        xp = self.backend.xp
        if self._keepsake is None:
            self._keepsake = [xp.empty_like(field) for field in self.engine.fields]
        for saved, field in zip(self._keepsake, self.engine.fields, strict=True):
            xp.copyto(saved, field)

    def hold(self) -> bool:
        """Pause the engine and keep showing the last visible picture (until a regrowth lands).

        Returns True when the world was invisible and its keepsake replaced it.
        """
        self.holding = True
        return not self.monitor.visible and self._restore_keepsake()

    def _restore_keepsake(self) -> bool:
        """Put the keepsake back into the state fields; False when there is none yet."""
        if self._keepsake is None:
            return False
        for field, saved in zip(self.engine.fields, self._keepsake, strict=True):
            self.backend.xp.copyto(field, saved)
        return True

    def apply(self, action: Action) -> None:
        engine = self.engine
        if action is Action.CLUSTER:
            engine.drop_cluster(self.rng)
        elif action is Action.REVIVE:
            for _ in range(REVIVE_CLUSTERS):
                engine.drop_cluster(self.rng)
        elif action is Action.RESEED:
            self.seed_world()
        elif action is Action.ERODE:
            policy = self.monitor.policy
            world = engine.world
            self.keep_moving.contain(world, policy.erode_containment_passes)
            world *= policy.erode_factor
        elif action is Action.PERTURB:
            self._erase_disc()
            engine.drop_cluster(self.rng)

    def _erase_disc(self) -> None:
        """Clear a disc 10-20% of the short side across somewhere near the centre."""
        xp, h, w = self.backend.xp, self.height, self.width
        side = min(h, w)
        radius = side * self.rng.uniform(0.05, 0.10)
        cy = h / 2 + self.rng.uniform(-0.25, 0.25) * side
        cx = w / 2 + self.rng.uniform(-0.25, 0.25) * side
        # Drawn on the device: no full-frame mask made on the host and uploaded (4 MB at 1024²).
        distance2 = wrapped_distance2(h, w, cy % h, cx % w, xp)
        keep_device = 1.0 - xp.exp(-((distance2 / radius**2) ** 4))
        self.engine.erase(keep_device)

    def load_from(self, smaller: Organism) -> None:
        """Take over a warmed-up organism's state from a grid `factor` times smaller."""
        if (smaller.height, smaller.width) == (self.height, self.width):
            self.engine.load_fields(smaller.engine.fields)
        else:
            self.engine.load_upscaled(smaller.engine.fields)
        self.breathing.phases[:] = smaller.breathing.phases
        self.keep_moving.stir_phase = smaller.keep_moving.stir_phase
        self.steps = smaller.steps


class OrganismFactory:
    """Makes organisms for an (height, width) frame, at full size or a warm-up grid `factor`
    times coarser, and gives a grown one its renderer. A grid's keep-moving noise table is made
    on its first organism, from `seed` (the preset change keeps it at its newest request's seed,
    which renderers are made with too), and shared after."""

    def __init__(
        self,
        backend: Backend,
        height: int,
        width: int,
        *,
        flow_factory: Callable[..., Any],
        prepare_renderer: Callable[[Organism], None],
    ):
        self.backend, self.height, self.width = backend, height, width
        self._flow_factory = flow_factory
        self.prepare_renderer = prepare_renderer
        self.seed = 0
        self._noise_pools: dict[tuple[int, int], NoisePool] = {}

    def new(self, preset: Preset, seed: int, factor: int) -> Organism:
        """A zero-state organism of `preset` on the grid `factor` times coarser than the frame."""
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

    def forget_warmup_grids(self) -> None:
        """Let the warm-up grids' noise tables go: only the frame-sized one serves the screen."""
        size = (self.height, self.width)
        self._noise_pools = {size: self._noise_pools[size]} if size in self._noise_pools else {}
