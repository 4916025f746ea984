"""One running preset: its engine, flow, keep-moving extras, LFO breathing, health and renderer.

The Simulation holds one `Organism` on screen and, during a preset change, a second one warming up
or fading in. An organism steps its engine, advects every state field along the preset's flow mix,
applies the keep-moving extras, and once per video frame updates its LFO parameters, queues its
health statistics (`queue_health`) and, once the device has finished the frame, acts on the verdict
(`settle`). On screen (`on_screen`), a failing world (dead, invisible, collapsed, non-finite) or a
call for a full reseed is never answered in place, which would cut through black or to a raw seed:
the organism instead holds its picture (the current world if still visible, else its keepsake, a
copy of the last visible state taken every few frames), keeps it drifting along the flow, and raises
`wants_regrowth` so the Simulation grows a fresh seed off screen and crossfades to it. All
randomness comes from a numpy Generator seeded from the simulation seed, so a seed reproduces the
same world on the same backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ca_server.engines import create_engine
from ca_server.engines.base import Breathing, wrapped_distance2
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
# Lenia's mu LFO (+-15% of mu) is capped at this many sigmas: a narrow growth band (coral, mycelium:
# sigma 0.009-0.015, i.e. 15% of mu is ~1.2-2 sigma) cannot follow a larger swing. At a cap of one
# sigma coral still swung with the LFO from filling the frame to a small blob (alive 0.5 -> 0.06 at
# 256-512 px) and back every minute or two; at half a sigma it held 0.45-0.54 at 256 px.
LENIA_MU_SWING_SIGMAS = 0.5


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
        self.keep_moving = KeepMoving(backend, preset.engine, height, width, noise)
        pixels_per_step = max(0.2, FLOW_PIXELS_PER_STEP_AT_BASE * self.engine.res_scale)
        self.flow = flow_factory(backend, height, width, pixels_per_step=pixels_per_step)
        self.flow.set_strengths(dict(preset.flow))
        self.breathing = BreathingLFO(_bounded_breathing(self.engine), self.engine.params)
        hi_res = preset.engine == "lenia" and min(height, width) >= 768
        floor = float(preset.render.get("floor", 0.0))
        gain = float(preset.render.get("gain", 1.0))
        self.monitor = HealthMonitor(
            backend,
            height,
            width,
            policy_for(preset.engine, hi_res),
            visible_peak=floor + VISIBLE_DISPLAY_PEAK / gain,
        )
        self.renderer: Any = None
        self.steps = 0
        self.on_screen = False  # set by the Simulation: failures then hold and regrow
        self.holding = False
        self.wants_regrowth = False
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

        On screen, a failing world or a call for a reseed or revive holds the picture and sets
        `wants_regrowth` instead; while holding nothing else is done. Returns True when the
        world was replaced by its keepsake, i.e. a frame rendered since `queue_health` showed a
        picture that must not go out and has to be rendered again.
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
        """Pause the engine and keep showing the last visible picture; ask for a regrowth.

        Returns True when the world was invisible and its keepsake replaced it.
        """
        if not self.holding:
            self.monitor.counters.regrowths += 1
        self.holding = self.wants_regrowth = True
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
        world = self.engine.world
        world *= keep_device
        if self.preset.engine == "gray_scott":  # empty GS is U = 1, V = 0
            u = self.engine.fields[0]
            u *= keep_device
            u += 1.0 - keep_device

    def load_from(self, smaller: Organism) -> None:
        """Take over a warmed-up organism's state from a grid `factor` times smaller."""
        if (smaller.height, smaller.width) == (self.height, self.width):
            self.engine.load_fields(smaller.engine.fields)
        else:
            self.engine.load_upscaled(smaller.engine.fields)
        self.breathing.phases[:] = smaller.breathing.phases
        self.keep_moving.stir_phase = smaller.keep_moving.stir_phase
        self.steps = smaller.steps


def _bounded_breathing(engine: Any) -> tuple[Breathing, ...]:
    """The engine's LFO specs, with Lenia's mu swing capped to LENIA_MU_SWING_SIGMAS x sigma."""
    specs = tuple(engine.breathing())
    if engine.name != "lenia":
        return specs
    limit = LENIA_MU_SWING_SIGMAS * float(engine.params["sigma"])
    return tuple(
        replace(spec, amplitude=min(spec.amplitude, limit)) if spec.parameter == "mu" else spec
        for spec in specs
    )
