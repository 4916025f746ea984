"""The Simulation: the preset on screen, speed and colour controls, and non-blocking preset changes.

The daemon calls `next_frame()` once per video frame: `tick()` steps, `render()` colours and, once
the frame is copied to the host, `settle()` acts on the health verdicts `tick` queued on the device
(so a frame costs one wait, the copy's), rendering again in the rare frame that asks. `tick` turns
`speed` (times the preset's own speed) into whole engine steps with a fractional accumulator, so 0.5
is one step every other frame. A preset change (`set_preset`, or `reseed`) never stalls the frame
stream: the incoming preset is grown off screen a slice per tick (`ca_server.warmup`: after the
preset on screen has stepped, `warmup_budget_s`, 60% of a 30 fps frame, or as long as the frame's
own work took if that is longer) while the old one keeps running, then the two RGB frames
crossfade over `crossfade_frames` (~1 s; one fused launch per frame on the GPU). On a GPU the same
budget covers hundreds of steps, so a switch completes within a few frames. The first preset is
warmed up synchronously in the constructor, before any frame is due. The same path answers the
health monitor: when the world on screen fails (dead, invisible, collapsed) or needs a full reseed,
its organism holds the last visible picture drifting along the flow while a fresh seed regrows off
screen, then crossfades in, so the stream never passes through black. A change that runs out of
memory (on the GPU: past the daemon's --max-vram-mb) is dropped, and the preset on screen goes on.
A request that arrives while a warm-up runs waits for it to land; the newest waiting one is next.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ca_server.beat_pulse import NO_PULSE, Pulse
from ca_server.config import MIN_FRAME_SIDE
from ca_server.crossfade import Crossfade
from ca_server.engines.keep_moving import NoisePool
from ca_server.fused import KERNEL_SOURCES
from ca_server.organism import Organism
from ca_server.presets import DEFAULT_PRESET, Preset, load_preset
from ca_server.render import FlowAdvector, IridescentRenderer, build_flow_fields
from ca_server.render.settings import RenderSettings
from ca_server.warmup import WarmUp, warmup_grids
from ca_server.wire.protocol import op_range
from ca_server.xp import Backend

log = logging.getLogger("ca_server.simulation")

SPEED_RANGE, HUE_RANGE, BRIGHTNESS_RANGE = (op_range(op) for op in ("speed", "hue", "brightness"))
MAX_STEPS_PER_TICK = 32
# After the device ran out of memory for a regrowth, the held picture goes on drifting this many
# frames (≈ 5 s at 30 fps) before the next try, instead of failing again every frame.
REGROWTH_RETRY_FRAMES = 150


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
        self.warmup_budget_s = warmup_budget_s
        self.warmup_steps_per_tick = warmup_steps_per_tick
        self.crossfade_frames = max(1, int(crossfade_frames))
        self._flow_factory = flow_factory or FlowAdvector
        self._renderer_factory = renderer_factory or IridescentRenderer
        self._noise_pools: dict[tuple[int, int], NoisePool] = {}
        self._speed, self._hue_shift, self._brightness = 1.0, 0.0, 1.0
        self.pulse: Pulse = NO_PULSE  # the beat's gains for the next frame (ca_server.beat_pulse)
        self._accumulator = self._incoming_accumulator = 0.0
        self.sim_step = 0
        self.frame = 0
        self.seed = int(seed)
        self._seed_sequence = np.random.default_rng([self.seed, 0x5EED5])
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
        target = load_preset(preset, presets_dir)
        self.preset_name = target.name
        warm = WarmUp(self, target, self.seed)
        warm.advance(math.inf, None)  # synchronous: no frame is due yet
        assert warm.result is not None
        self._current: Organism = warm.result
        self._warmup: WarmUp | None = None
        self._waiting: tuple[Preset, int] | None = None  # the newest request while one warms up
        self._incoming: Organism | None = None
        self._fade_frame = 0
        self._crossfade = Crossfade(backend, self.height, self.width)
        self.regrowths = 0
        self._before_change = (self.preset_name, self.seed)
        self._regrowth_not_before = 0  # a frame number
        self.change_error: str | None = None  # why the last change was dropped, until one lands
        self._free_cached_memory = False
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
    def showing(self) -> str:
        """The preset on screen (differs from `preset_name` while a change warms up)."""
        return self._current.preset.name

    @property
    def showing_preset(self) -> Preset:
        """The Preset on screen (its `beat` amount sets the pulse)."""
        return self._current.preset

    @property
    def arriving(self) -> str | None:
        """The preset crossfading in (it has reached the screen), or None."""
        return self._incoming.preset.name if self._incoming is not None else None

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
        self._start_change(load_preset(self.preset_name, self.presets_dir), int(seed))
        return self.seed

    def _start_change(self, preset: Preset, seed: int) -> None:
        """Warm `preset` up now, or, while a warm-up is under way, once that one has landed.

        A warm-up under way always lands (crossfades in): replaced by each new request, the
        slow ones never reached the screen of a VJ switching every 5 s. Requests that arrive
        meanwhile wait, the newest of them wins, and it starts warming up as soon as that one
        lands, during its crossfade. `preset_name` is always the newest request.
        """
        if self._warmup is not None:
            self._waiting = (preset, seed)
        else:
            if self._incoming is not None:  # a fade in progress: land it now, then start over
                self._finish_fade()
            self._before_change = (self.preset_name, self.seed)  # put back on a drop
            self._waiting = None
            self._warmup = WarmUp(self, preset, seed)
        self.preset_name, self.seed = preset.name, seed
        self.change_error = None

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
        """Advance one video frame; returns the engine steps taken by the preset on screen.

        The frame's health statistics are only queued: render it, then `settle()` (after the
        frame's copy to the host, whose wait covers them) before the frame goes out; `next_frame`
        does all three. A tick whose predecessor was not settled settles it first.
        """
        if self._unsettled:
            self.settle()
        started = time.perf_counter()
        speed = self._speed * self._current.preset.speed * self.pulse.speed
        self._accumulator = min(self._accumulator + speed, MAX_STEPS_PER_TICK)
        steps = int(self._accumulator)
        self._accumulator -= steps
        try:
            for _ in range(steps):
                self._current.step()
            self._current.queue_health(steps)
            self._unsettled.append(self._current)
            self._advance_change(started)
        except Exception as error:
            if not self._dropped_change_for(error):
                raise
        self.sim_step += steps
        self.frame += 1
        return steps

    def _advance_change(self, started: float) -> None:
        """The incoming organism's steps and the crossfade's progress, and the warm-up's slice."""
        if self._incoming is not None:
            self._incoming_accumulator += self._speed * self._incoming.preset.speed
            incoming_steps = int(self._incoming_accumulator)
            self._incoming_accumulator -= incoming_steps
            for _ in range(incoming_steps):
                self._incoming.step()
            self._incoming.queue_health(incoming_steps)
            self._unsettled.append(self._incoming)
            self._fade_frame += 1
            if self._fade_frame >= self.crossfade_frames:
                self._finish_fade()
        # Only a request that waited for a warm-up starts warming up during that one's fade.
        if self._warmup is not None:
            # A fixed step count per tick (tests, benchmarks) replaces the time budget, which
            # makes the frame at which the change lands reproducible.
            by_count = self.warmup_steps_per_tick is not None
            now = time.perf_counter()
            # The budget is the warm-up's own, counted from here: counted from the tick's start,
            # the preset on screen used it up (at 1024² on a CPU one step of it did), leaving
            # the warm-up one step a frame. And at least the on-screen frame's own work (this
            # tick's steps, the last render and copy), so a change gets half the time even
            # where a frame's work fills its period: it lands within about twice its warm-up's
            # compute time, and a frame takes at most about twice its usual time meanwhile.
            shown_work_s = now - started + self.stage_s["render"] + self.stage_s["copy"]
            deadline = now + max(self.warmup_budget_s, shown_work_s)
            self._warmup.advance(math.inf if by_count else deadline, self.warmup_steps_per_tick)
            if self._warmup.finished:
                if self._incoming is not None:  # the one before it has faded in long enough
                    self._finish_fade()
                self._incoming = self._warmup.result
                self._warmup = None
                self._fade_frame = 0
                self._incoming_accumulator = self._accumulator
                if self._waiting is not None:  # asked for while this one warmed up: next
                    self._before_change = (self._current.preset.name, self._current.seed)
                    self._warmup = WarmUp(self, *self._waiting)
                    self._waiting = None

    def _dropped_change_for(self, error: Exception) -> bool:
        """Whether `error`, raised in a frame's work, dropped the change under way: running out
        of memory (CuPy's pool past the daemon's --max-vram-mb, or the device full) while a
        change is under way drops it, and the organism on screen goes on as before it began.
        False (the caller re-raises) with no change under way, or for any other error. The
        callers catch in plain try blocks, which cost nothing on the frame's path."""
        changing = self._incoming or self._warmup
        if changing is None or not self.backend.ran_out_of_memory(error):
            return False
        self._drop_change(changing.preset.name, str(error))
        return True

    def _drop_change(self, name: str, reason: str) -> None:
        self._unsettled = [organism for organism in self._unsettled if organism is self._current]
        self._warmup = self._incoming = self._waiting = None
        self._crossfade.release()
        self.preset_name, self.seed = self._before_change
        # Noise tables for a warm-up grid: only the frame-sized one serves the organism on screen.
        size = (self.height, self.width)
        self._noise_pools = {size: self._noise_pools[size]} if size in self._noise_pools else {}
        self._regrowth_not_before = self.frame + REGROWTH_RETRY_FRAMES
        # Freed at the end of settle: until the frame's work has returned, the error's
        # traceback still holds the dropped change's arrays.
        self._free_cached_memory = True
        fix = "raise --max-vram-mb" if self.backend.is_gpu else "free host memory"
        self.change_error = (
            f"out of memory for {name!r} ({reason}); still showing {self.showing!r}: {fix} "
            "or lower the resolution"
        )
        log.warning("%s", self.change_error)

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
                if restored and organism in (self._current, self._incoming):
                    if organism.renderer is not None:
                        organism.renderer.reset()
                    redo = True
        except Exception as error:
            if not self._dropped_change_for(error):
                raise
        self._unsettled.clear()
        if self._free_cached_memory:
            self.backend.free_cached_memory()
            self._free_cached_memory = False
        idle = self._warmup is None and self._incoming is None
        if self._current.holding and idle and self.frame >= self._regrowth_not_before:
            self._start_regrowth()
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

    def _start_regrowth(self) -> None:
        """Grow a fresh seed of the held preset off screen; it crossfades in when ready."""
        organism = self._current
        organism.wants_regrowth = False
        seed = int(organism.rng.integers(0, 2**31 - 1))
        self._before_change = (self.preset_name, self.seed)
        self._warmup = WarmUp(self, organism.preset, seed)
        self.regrowths += 1

    def _finish_fade(self) -> None:
        assert self._incoming is not None
        self._current, self._incoming = self._incoming, None
        self._crossfade.release()
        self.change_error = None  # a change landed

    def render(self, out: Any = None) -> Any:
        """Colour the frame: (H, W, 3) uint8 on the backend's device (into `out` if given)."""
        try:  # the incoming's renderer and the crossfade's frames are new arrays
            if self._incoming is not None:
                return self._render_crossfade(out)
            return self._render_organism(self._current, out)
        except Exception as error:
            if not self._dropped_change_for(error):
                raise
        return self._render_organism(self._current, out)  # after a drop, alone

    def _render_crossfade(self, out: Any) -> Any:
        assert self._incoming is not None
        old_rgb, new_rgb = self._crossfade.pictures()
        self._render_organism(self._current, old_rgb)
        self._render_organism(self._incoming, new_rgb)
        return self._crossfade.blend(round(256 * self._fade_frame / self.crossfade_frames), out)

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
                seed=self.seed,
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
        return self._current.world

    def health(self) -> dict[str, Any]:
        """The on-screen world's latest statistics and the health monitor's counters.

        Settled figures: between a `tick` and its `settle` they are the previous frame's.
        """
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
            "change_error": self.change_error,
            "sim_step": self.sim_step,
        }


def _checked(name: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return float(value)
