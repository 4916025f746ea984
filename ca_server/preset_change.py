"""A preset change from request to landing: warm-up off screen, crossfade, drop, regrowth.

A change (`request`: a preset change or a reseed) never stalls the frame stream: the incoming
preset is grown off screen a slice per tick (`ca_server.warmup`: after the preset on screen has
stepped, `warmup_budget_s`, or as long as the frame's own work took if that is longer) while the
old one keeps running, then the two crossfade over `crossfade_frames` (~1 s). A warm-up under way is
never replaced: requests that arrive meanwhile wait, the newest of them wins, and it starts warming
up during the previous one's crossfade. A change that runs out of memory (on the GPU: past the
daemon's --max-vram-mb) is dropped, and the preset on screen goes on as before it began. An
organism on screen that fails holds its last visible picture (`Organism.holding`); once no change
is under way, a fresh seed of its preset is grown off screen the same way and crossfades in
(a regrowth, by a step count per frame: it lands within REGROWTH_WARMUP_FRAMES, at a frame the
seed decides), so the stream never passes through black. The Simulation owns the screen: it steps
and renders `current` (and `incoming`, blended by `crossfade`) and asks this module the rest.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from ca_server.crossfade import Crossfade
from ca_server.organism import Organism, OrganismFactory
from ca_server.presets import Preset
from ca_server.warmup import WarmUp

log = logging.getLogger("ca_server.simulation")

# After the device ran out of memory for a regrowth, the held picture goes on drifting this many
# frames (≈ 5 s at 30 fps) before the next try, instead of failing again every frame.
REGROWTH_RETRY_FRAMES = 150
# A regrowth warms up by a fixed share of its steps per tick, not by the time budget, so it lands
# this many frames after it started (plus a frame or two of builds, and again for each new seed
# when one grew invisible), whatever the machine's load: frames after a death are reproducible
# from the seed, and the held picture, often a few dim fragments, is not shown for the 13-18 s a
# Gray-Scott warm-up took in budget slices at 512² on a 2-core CPU. The price on a CPU: the
# warm-up's whole compute falls in these frames, which take longer than a period each (at 512²,
# ≈ 0.1 s for Gray-Scott's ≈ 2 s warm-up; BENCHMARKS.md, "Simulation per preset").
REGROWTH_WARMUP_FRAMES = 20


class PresetChange:
    """The organism on screen, the one warming up or fading in, and the request waiting.

    `preset_name` and `seed` are the newest request's (what the screen is heading for);
    `current.preset.name` is what it shows. `regrowths` counts the regrowths started.
    """

    def __init__(
        self,
        factory: OrganismFactory,
        preset: Preset,
        seed: int,
        *,
        warmup_budget_s: float,
        warmup_steps_per_tick: int | None,
        crossfade_frames: int,
    ):
        self.factory, self.backend = factory, factory.backend
        self.warmup_budget_s = warmup_budget_s
        self.warmup_steps_per_tick = warmup_steps_per_tick
        self.crossfade_frames = crossfade_frames
        self.preset_name, self.seed = preset.name, seed
        warm = WarmUp(factory, preset, seed)
        warm.advance(math.inf, None)  # synchronous: no frame is due yet
        assert warm.result is not None
        self.current: Organism = warm.result
        self.warmup: WarmUp | None = None
        self._waiting: tuple[Preset, int] | None = None  # the newest request while one warms up
        self.incoming: Organism | None = None
        self.fade_frame = 0
        self.incoming_accumulator = 0.0
        self.crossfade = Crossfade(self.backend, factory.height, factory.width)
        self.regrowths = 0
        self._before_change = (self.preset_name, self.seed)
        self._regrowth_not_before = 0  # a frame number
        self.change_error: str | None = None  # why the last change was dropped, until one lands
        self._free_cached_memory = False

    @property
    def seed(self) -> int:
        """The newest request's seed; new noise tables and renderers are made from it."""
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._seed = self.factory.seed = value

    @property
    def fade_weight(self) -> int:
        """How far the crossfade is, in [0, 256] (256: all the incoming picture)."""
        return round(256 * self.fade_frame / self.crossfade_frames)

    def request(self, preset: Preset, seed: int) -> None:
        """Warm `preset` up now, or, while a warm-up is under way, once that one has landed.

        A warm-up under way always lands (crossfades in): replaced by each new request, the
        slow ones never reached the screen of a VJ switching every 5 s. Requests that arrive
        meanwhile wait, the newest of them wins, and it starts warming up as soon as that one
        lands, during its crossfade. `preset_name` is always the newest request.
        """
        if self.warmup is not None:
            self._waiting = (preset, seed)
        else:
            if self.incoming is not None:  # a fade in progress: land it now, then start over
                self._finish_fade()
            self._before_change = (self.preset_name, self.seed)  # put back on a drop
            self._waiting = None
            self.warmup = WarmUp(self.factory, preset, seed)
        self.preset_name, self.seed = preset.name, seed
        self.change_error = None

    def advance(
        self,
        started: float,
        speed: float,
        accumulator: float,
        stage_s: dict[str, float],
        unsettled: list[Organism],
    ) -> None:
        """One tick of the change: the incoming organism's steps (appended to `unsettled`, whose
        health the caller settles), the crossfade's progress and the warm-up's slice.

        `started`: perf_counter at the tick's start; `speed`: the live speed; `accumulator`: the
        screen's fractional steps (the incoming one's start from it); `stage_s`: the last frame's
        stage times.
        """
        if self.incoming is not None:
            self.incoming_accumulator += speed * self.incoming.preset.speed
            incoming_steps = int(self.incoming_accumulator)
            self.incoming_accumulator -= incoming_steps
            for _ in range(incoming_steps):
                self.incoming.step()
            self.incoming.queue_health(incoming_steps)
            unsettled.append(self.incoming)
            self.fade_frame += 1
            if self.fade_frame >= self.crossfade_frames:
                self._finish_fade()
        # Only a request that waited for a warm-up starts warming up during that one's fade.
        if self.warmup is None:
            return
        # A fixed step count per tick (tests, benchmarks; a regrowth's own) replaces the time
        # budget, which makes the frame at which the change lands reproducible.
        steps_per_tick = self.warmup_steps_per_tick or self.warmup.steps_per_tick
        by_count = steps_per_tick is not None
        now = time.perf_counter()
        # The budget is the warm-up's own, counted from here: counted from the tick's start,
        # the preset on screen used it up (at 1024² on a CPU one step of it did), leaving the
        # warm-up one step a frame. And at least the on-screen frame's own work (this tick's
        # steps, the last render and copy), so a change gets half the time even where a frame's
        # work fills its period: it lands within about twice its warm-up's compute time, and a
        # frame takes at most about twice its usual time meanwhile.
        shown_work_s = now - started + stage_s["render"] + stage_s["copy"]
        deadline = now + max(self.warmup_budget_s, shown_work_s)
        self.warmup.advance(math.inf if by_count else deadline, steps_per_tick)
        if not self.warmup.finished:
            return
        if self.incoming is not None:  # the one before it has faded in long enough
            self._finish_fade()
        self.incoming = self.warmup.result
        self.warmup = None
        self.fade_frame = 0
        self.incoming_accumulator = accumulator
        if self._waiting is not None:  # asked for while this one warmed up: next
            self._before_change = (self.current.preset.name, self.current.seed)
            self.warmup = WarmUp(self.factory, *self._waiting)
            self._waiting = None

    def dropped_for(self, error: Exception, frame: int) -> bool:
        """Whether `error`, raised in frame `frame`'s work, dropped the change under way: running
        out of memory (CuPy's pool past the daemon's --max-vram-mb, or the device full) while a
        change is under way drops it, and the organism on screen goes on as before it began.
        False (the caller re-raises) with no change under way, or for any other error. The
        callers catch in plain try blocks, which cost nothing on the frame's path."""
        changing = self.incoming or self.warmup
        if changing is None or not self.backend.ran_out_of_memory(error):
            return False
        self._drop(changing.preset.name, str(error), frame)
        return True

    def _drop(self, name: str, reason: str, frame: int) -> None:
        self.warmup = self.incoming = self._waiting = None
        self.crossfade.release()
        self.preset_name, self.seed = self._before_change
        self.factory.forget_warmup_grids()
        self._regrowth_not_before = frame + REGROWTH_RETRY_FRAMES
        # Freed in `settled`: until the frame's work has returned, the error's traceback still
        # holds the dropped change's arrays.
        self._free_cached_memory = True
        fix = "raise --max-vram-mb" if self.backend.is_gpu else "free host memory"
        self.change_error = (
            f"out of memory for {name!r} ({reason}); still showing "
            f"{self.current.preset.name!r}: {fix} or lower the resolution"
        )
        log.warning("%s", self.change_error)

    def settled(self, frame: int) -> None:
        """After frame `frame`'s health was settled: free what a drop left, and start a
        regrowth of a held organism on screen when no change is under way."""
        if self._free_cached_memory:
            self.backend.free_cached_memory()
            self._free_cached_memory = False
        idle = self.warmup is None and self.incoming is None
        if self.current.holding and idle and frame >= self._regrowth_not_before:
            self._start_regrowth()

    def _start_regrowth(self) -> None:
        """Grow a fresh seed of the held preset off screen; it crossfades in when ready."""
        organism = self.current
        seed = int(organism.rng.integers(0, 2**31 - 1))
        self._before_change = (self.preset_name, self.seed)
        self.warmup = WarmUp(self.factory, organism.preset, seed)
        steps = self.warmup.grow_steps + self.warmup.shape_steps
        self.warmup.steps_per_tick = math.ceil(steps / REGROWTH_WARMUP_FRAMES)
        self.regrowths += 1

    def _finish_fade(self) -> None:
        assert self.incoming is not None
        self.current, self.incoming = self.incoming, None
        self.crossfade.release()
        self.change_error = None  # a change landed

    def shows(self, organism: Any) -> bool:
        """Whether `organism` is on screen (alone or in the crossfade)."""
        return organism is self.current or organism is self.incoming
