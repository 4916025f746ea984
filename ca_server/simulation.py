"""The Simulation: the preset on screen, speed and colour controls, and the frame's order.

The daemon calls `next_frame()` once per video frame: `tick()` steps, `render()` colours and, once
the frame is copied to the host, `settle()` acts on the health verdicts `tick` queued on the device
(so a frame costs one wait, the copy's), rendering again in the rare frame that asks. `tick` turns
`speed` (times the preset's own speed) into whole engine steps with a fractional accumulator, so 0.5
is one step every other frame. Preset changes, reseeds and regrowths after a failure are the
business of `ca_server.preset_change` (warm-up off screen, crossfade, the waiting request, drop on
out-of-memory): `set_preset` and `reseed` hand it a request, and every tick gives it its slice. The
first preset is warmed up synchronously in the constructor, before any frame is due.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ca_server.beat_pulse import NO_PULSE, Pulse
from ca_server.config import MIN_FRAME_SIDE
from ca_server.fused import KERNEL_SOURCES
from ca_server.organism import Organism, OrganismFactory
from ca_server.preset_change import PresetChange
from ca_server.presets import DEFAULT_PRESET, Preset, load_preset
from ca_server.render import FlowAdvector, IridescentRenderer, build_flow_fields
from ca_server.render.settings import RenderSettings
from ca_server.warmup import warmup_grids
from ca_server.wire.protocol import op_range
from ca_server.xp import Backend

SPEED_RANGE, HUE_RANGE, BRIGHTNESS_RANGE = (op_range(op) for op in ("speed", "hue", "brightness"))
MAX_STEPS_PER_TICK = 32


class Simulation:
    """The running CA: the screen (one preset, two in a crossfade), live controls, the frame."""

    def __init__(
        self,
        backend: Backend,
        *,
        width: int,
        height: int,
        preset: str = DEFAULT_PRESET,
        seed: int = 0,
        presets_dir: Path | None = None,
        warmup_budget_s: float = 0.02,
        warmup_steps_per_tick: int | None = None,  # if set, replaces warmup_budget_s
        crossfade_frames: int = 30,
        flow_factory: Callable[..., Any] | None = None,
        renderer_factory: Callable[..., Any] | None = None,
    ):
        if width < MIN_FRAME_SIDE or height < MIN_FRAME_SIDE:
            raise ValueError(
                f"simulation size {width}x{height} is too small; use at least "
                f"{MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}"
            )
        self.backend, self.width, self.height = backend, int(width), int(height)
        self.presets_dir = presets_dir
        self._renderer_factory = renderer_factory or IridescentRenderer
        self._speed, self._hue_shift, self._brightness = 1.0, 0.0, 1.0
        self.pulse: Pulse = NO_PULSE  # the beat's gains for the next frame (ca_server.beat_pulse)
        self._accumulator = 0.0
        self.sim_step = 0
        self.frame = 0
        self._seed_sequence = np.random.default_rng([int(seed), 0x5EED5])
        # Every fused kernel now, not in the frame that first needs it: on a GPU whose kernel
        # cache is cold (a fresh pod), NVRTC takes a fraction of a second per kernel, and the
        # first change to another engine would freeze the picture that long inside its tick.
        # KERNEL_SOURCES lists the kernels of the modules imported so far: this module imports
        # every module that defines one (the renderer's too), whatever imported it first.
        for source in KERNEL_SOURCES:
            backend.fused_kernel(source)
        # Likewise the flow's unit fields, which every new organism needs on its grid.
        for grid in warmup_grids(self.height, self.width):
            build_flow_fields(*grid)
        self._factory = factory = OrganismFactory(
            backend,
            self.height,
            self.width,
            flow_factory=flow_factory or FlowAdvector,
            prepare_renderer=self.prepare_renderer,
        )
        self.change = PresetChange(
            factory,
            load_preset(preset, presets_dir),
            int(seed),
            warmup_budget_s=warmup_budget_s,
            warmup_steps_per_tick=warmup_steps_per_tick,
            crossfade_frames=max(1, int(crossfade_frames)),
        )
        self._unsettled: list[Organism] = []  # organisms whose health `tick` queued
        self.stage_s = {"step": 0.0, "render": 0.0, "copy": 0.0}  # of the last `next_frame`

    # -- live controls ---------------------------------------------------------------------
    @property
    def speed(self) -> float:
        """Engine steps per frame, times the preset's own speed; SPEED_RANGE, fractions add up."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        self._speed = _checked("speed", value, *SPEED_RANGE)

    @property
    def hue_shift(self) -> float:
        """Hue rotation in turns (`HUE_RANGE`), added to the preset's own hue."""
        return self._hue_shift

    @hue_shift.setter
    def hue_shift(self, value: float) -> None:
        self._hue_shift = _checked("hue_shift", value, *HUE_RANGE)

    @property
    def brightness(self) -> float:
        """Brightness multiplier (`BRIGHTNESS_RANGE`) on the preset's own brightness; the
        product is capped at the range's top."""
        return self._brightness

    @brightness.setter
    def brightness(self, value: float) -> None:
        self._brightness = _checked("brightness", value, *BRIGHTNESS_RANGE)

    @property
    def preset_name(self) -> str:
        """The newest preset asked for (differs from `showing` while a change warms up)."""
        return self.change.preset_name

    @property
    def seed(self) -> int:
        """The newest request's seed."""
        return self.change.seed

    @property
    def showing(self) -> str:
        """The preset on screen (differs from `preset_name` while a change warms up)."""
        return self.change.current.preset.name

    @property
    def showing_preset(self) -> Preset:
        """The Preset on screen (its `beat` amount sets the pulse)."""
        return self.change.current.preset

    @property
    def arriving(self) -> str | None:
        """The preset crossfading in (it has reached the screen), or None."""
        incoming = self.change.incoming
        return incoming.preset.name if incoming is not None else None

    @property
    def change_error(self) -> str | None:
        """Why the last change was dropped (out of memory), until a change lands; else None."""
        return self.change.change_error

    @property
    def regrowths(self) -> int:
        """Fresh seeds grown off screen for a failed organism on screen, since the start."""
        return self.change.regrowths

    # -- preset changes ----------------------------------------------------------------------
    def set_preset(self, name: str) -> None:
        """Switch to preset `name`: validated now, warmed up over the next ticks, crossfaded in.

        Raises UnknownPresetError (listing the valid names) or PresetFileError at once.
        """
        self.change.request(load_preset(name, self.presets_dir), self.seed)

    def reseed(self, seed: int | None = None) -> int:
        """Regrow the current preset from `seed` (default: the next of a seeded sequence).

        Returns the seed used. Like a preset change it warms up off screen and crossfades in.
        """
        if seed is None:
            seed = int(self._seed_sequence.integers(0, 2**31 - 1))
        self.change.request(load_preset(self.preset_name, self.presets_dir), int(seed))
        return self.seed

    # -- the frame ----------------------------------------------------------------------------
    def tick(self) -> int:
        """Advance one video frame; returns the engine steps taken by the preset on screen.

        The frame's health statistics are only queued: render it, then `settle()` (after the
        frame's copy to the host, whose wait covers them) before the frame goes out; `next_frame`
        does all three. A tick whose predecessor was not settled settles it first.
        """
        if self._unsettled:
            self.settle()
        started = time.perf_counter()
        current = self.change.current
        speed = self._speed * current.preset.speed * self.pulse.speed
        self._accumulator = min(self._accumulator + speed, MAX_STEPS_PER_TICK)
        steps = int(self._accumulator)
        self._accumulator -= steps
        try:
            for _ in range(steps):
                current.step()
            current.queue_health(steps)
            self._unsettled.append(current)
            self.change.advance(
                started, self._speed, self._accumulator, self.stage_s, self._unsettled
            )
        except Exception as error:
            if not self._dropped_change_for(error):
                raise
        self.sim_step += steps
        self.frame += 1
        return steps

    def _dropped_change_for(self, error: Exception) -> bool:
        """Whether `error`, raised in a frame's work, dropped the change under way (running out
        of memory: `PresetChange.dropped_for`); the dropped organisms' health is not settled."""
        if not self.change.dropped_for(error, self.frame):
            return False
        current = self.change.current
        self._unsettled = [organism for organism in self._unsettled if organism is current]
        return True

    def settle(self) -> bool:
        """Act on the health verdicts the last `tick` queued; True when the frame must be redone.

        Waits for the device first (free when the frame's copy to the host already waited).
        True means an organism on screen failed and its last visible picture was put back, so
        the frame rendered since the tick shows a world that must not go out: render it again.
        That organism's renderer forgets its smoothing, which already took in the failed picture;
        the redone frame starts from the restored one.
        """
        self.backend.synchronize()
        redo = False
        try:
            for organism in self._unsettled:
                restored = organism.settle()  # an action's seeds are new arrays
                # An organism whose fade ended in this tick is no longer shown: nothing to redo.
                if restored and self.change.shows(organism):
                    if organism.renderer is not None:
                        organism.renderer.reset()
                    redo = True
        except Exception as error:
            if not self._dropped_change_for(error):
                raise
        self._unsettled.clear()
        self.change.settled(self.frame)
        return redo

    def next_frame(self, out: Any = None, host_out: np.ndarray | None = None) -> Any:
        """One video frame in the daemon's order: `tick`, `render`, the copy into `host_out` (if
        given; the frame's one device-to-host copy and its only wait), `settle`, and, in the rare
        frame where settle asks, render and copy again.

        Returns the frame, (H, W, 3) uint8 on the backend's device (into `out` if given); records
        the seconds each stage took in `stage_s` (settling counts as "step").
        """
        t0 = time.perf_counter()
        self.tick()
        t1 = time.perf_counter()
        frame = self.render(out)
        t2 = time.perf_counter()
        if host_out is not None:
            self.backend.to_host(frame, out=host_out)
        t3 = time.perf_counter()
        if self.settle():
            frame = self.render(frame)
            if host_out is not None:
                self.backend.to_host(frame, out=host_out)
        t4 = time.perf_counter()
        self.stage_s = {"step": t1 - t0 + t4 - t3, "render": t2 - t1, "copy": t3 - t2}
        return frame

    def render(self, out: Any = None) -> Any:
        """Colour the frame: (H, W, 3) uint8 on the backend's device (into `out` if given)."""
        change = self.change
        try:  # the incoming's renderer and the crossfade's frames are new arrays
            if change.incoming is None:
                return self._render_organism(change.current, out)
            old_rgb, new_rgb = change.crossfade.pictures()
            self._render_organism(change.current, old_rgb)
            self._render_organism(change.incoming, new_rgb)
            return change.crossfade.blend(change.fade_weight, out)
        except Exception as error:
            if not self._dropped_change_for(error):
                raise
        return self._render_organism(change.current, out)  # after a drop, alone

    def _render_organism(self, organism: Organism, out: Any) -> Any:
        return self._renderer_for(organism).render(organism.world, out=out)

    def prepare_renderer(self, organism: Organism) -> None:
        """Give `organism` its renderer with its colour table built: a warm-up's last unit, so
        the crossfade's first frame costs what any other does (at 1024² on a CPU the two take
        0.1-0.3 s)."""
        self._renderer_for(organism).prepare()

    def _renderer_for(self, organism: Organism) -> Any:
        """`organism`'s renderer (made on first use), set to the live hue and brightness and the
        beat's pulse."""
        render_table = organism.preset.render
        if organism.renderer is None:
            organism.renderer = self._renderer_factory(
                self.backend,
                self.height,
                self.width,
                palette=render_table.get("palette", "oil_slick"),
                seed=self._factory.seed,  # the newest request's, as it is set up
                settings=dict(render_table),
            )
        renderer = organism.renderer
        hue = (render_table.get("hue", 0.0) + self._hue_shift) % 1.0
        brightness = render_table.get("brightness", 1.0) * self._brightness
        brightness = min(BRIGHTNESS_RANGE[1], brightness * self.pulse.brightness)
        bloom = min(2.0, render_table.get("bloom", RenderSettings.bloom) * self.pulse.bloom)
        if renderer.hue_shift != hue:
            renderer.hue_shift = hue
        if renderer.brightness != brightness:
            renderer.brightness = brightness
        if renderer.settings.bloom != bloom:
            renderer.update({"bloom": bloom})
        return renderer

    # -- status -------------------------------------------------------------------------------
    @property
    def world(self) -> Any:
        """The on-screen world: (H, W) float32 in [0, 1] on the backend's device."""
        return self.change.current.world

    def health(self) -> dict[str, Any]:
        """The on-screen world's latest statistics and the health monitor's counters.

        Settled figures: between a `tick` and its `settle` they are the previous frame's.
        """
        change = self.change
        monitor = change.current.monitor
        counters = monitor.counters
        return {
            "preset": self.preset_name,
            "showing": self.showing,
            "mass": monitor.mass,
            "alive": monitor.alive,
            "activity": monitor.activity,
            "reseeds": counters.reseeds,
            "regrowths": change.regrowths,
            "holding": change.current.holding,
            "revives": counters.revives,
            "clusters": counters.clusters,
            "erosions": counters.erosions,
            "perturbs": counters.perturbs,
            "warming": change.warmup is not None,
            "crossfading": change.incoming is not None,
            "change_error": change.change_error,
            "sim_step": self.sim_step,
        }


def _checked(name: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return float(value)
