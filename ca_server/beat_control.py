"""The daemon's side of the beat: the clock, its control ops, and each frame's pulse.

`BeatControl` owns the `BeatClock`, the live `beat` amount and, with `serve --link`, the Ableton
Link follower. Its ops (`tempo`, `tap`, `beat_lock`, `beat`) join the daemon's table; the tick
loop asks `pulse_at(frame due time, preset)` before each frame. Times on the wire are
`time.monotonic_ns()` of the sender, the same clock on every process of the host; a stamp that
is far from ours (a sender on another host) is replaced by the time the request arrived.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ca_server.beat_clock import BeatClock
from ca_server.beat_pulse import NO_PULSE, Pulse, preset_beat_amount, pulse_for
from ca_server.presets import Preset
from ca_server.wire.errors import ControlError
from ca_server.wire.protocol import ErrorCode

log = logging.getLogger("ca_server.beat")

MAX_STAMP_SKEW_S = 5.0  # a sender's timestamp further than this from ours is not trusted


class BeatControl:
    """Tempo state for one daemon; thread-safe (the Link follower locks from its own thread)."""

    def __init__(self, *, link: bool = False, now: Callable[[], float] = time.monotonic) -> None:
        self.clock = BeatClock()
        self.amount = 1.0  # the live control: × the preset's own amount
        self._now = now
        self._lock = threading.Lock()
        self.link: Any = None
        if link:
            from ca_server.beat_link import LinkFollower

            self.link = LinkFollower(self)

    # --- ops -------------------------------------------------------------------------------------
    def handlers(self) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
        """The beat's control ops; each returns the value to put in the reply."""
        return {
            "tempo": lambda args: self.set_tempo(args["bpm"], args.get("beats_per_bar")),
            "tap": lambda args: self.tap(self._stamp(args.get("t_ns"))),
            "beat_lock": lambda args: self.lock(
                args["bpm"],
                args["beat"],
                self._stamp(args["t_ns"]),
                args.get("source") or "scope",
                args.get("beats_per_bar"),
            ),
            "beat": lambda args: self.set_amount(args["value"]),
        }

    def set_tempo(self, bpm: float, beats_per_bar: int | None = None) -> float:
        if 0 < bpm < 20:
            raise ControlError(ErrorCode.BAD_ARGS, f"tempo: {bpm:g} bpm; use 20 to 400, or 0 (off)")
        with self._lock:
            self.clock.set_tempo(bpm, self._now(), beats_per_bar=beats_per_bar)
        if self.link is not None and bpm > 0:
            self.link.propose_tempo(bpm)
        log.info("tempo %s", f"{bpm:g} bpm" if bpm > 0 else "off")
        return self.clock.bpm

    def tap(self, t_s: float) -> float:
        with self._lock:
            self.clock.tap(t_s)
            return self.clock.bpm

    def lock(
        self, bpm: float, beat: float, t_s: float, source: str, beats_per_bar: int | None = None
    ) -> float:
        """An outside clock's reading; returns the error corrected, in beats."""
        with self._lock:
            return self.clock.lock(bpm, beat, t_s, source=source, beats_per_bar=beats_per_bar)

    def set_amount(self, value: float) -> float:
        self.amount = float(value)
        return self.amount

    def _stamp(self, t_ns: int | None) -> float:
        now = self._now()
        if t_ns is None or abs(t_ns / 1e9 - now) > MAX_STAMP_SKEW_S:
            return now
        return t_ns / 1e9

    # --- per frame ---------------------------------------------------------------------------
    def pulse_at(self, t_s: float, preset: Preset) -> Pulse:
        """The pulse for a frame due at `t_s` showing `preset` (NO_PULSE without a tempo)."""
        if self.clock.bpm <= 0 or self.amount <= 0:
            return NO_PULSE
        with self._lock:
            state = self.clock.state(t_s)
        return pulse_for(state, self.amount * preset_beat_amount(preset))

    def status(self, preset: Preset | None = None) -> dict[str, Any]:
        with self._lock:
            state = self.clock.state(self._now())
        status = {
            "bpm": round(state.bpm, 3),
            "beat": round(state.beat, 3),
            "phase": round(state.phase, 3),
            "bar_position": round(state.bar_position, 3),
            "beats_per_bar": state.beats_per_bar,
            "source": state.source,
            "amount": self.amount,
            "link": None if self.link is None else self.link.status(),
        }
        if preset is not None:
            status["preset_amount"] = preset_beat_amount(preset)
        return status

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
