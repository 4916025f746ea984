"""The daemon's beat clock: tempo, beat position and bar, extrapolated to any moment.

A beat position is a float counted in beats (its fraction is the phase within the beat; modulo
`beats_per_bar`, the position in the bar). The clock is a line, position = anchor + (t − t₀) ·
bpm / 60, re-anchored whenever something tells it the tempo: `set_tempo` (`ctl tempo 128`, a
change of rate that keeps the position continuous), `tap` (tap tempo: the tap is a beat), and
`lock` (Scope's tempo sync or Ableton Link: "at time t the position was b at this bpm"). A lock
that disagrees by a little is corrected smoothly, slewed in over `correction_s`, so the picture
never jumps on a jittery source; a disagreement larger than `jump_beats` (a new source, the
transport restarted) is taken at once. Errors are measured modulo one bar, so the clock follows
the source's downbeat without caring how it numbers its bars.

Everything takes the time as an argument (seconds on `time.monotonic`'s clock, which is shared
by every process on the host, so the Scope plugin can stamp its locks): the daemon passes each
frame's due time, tests pass simulated time. Not thread-safe; `BeatControl` holds the lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_BPM, MAX_BPM = 20.0, 400.0
DEFAULT_BEATS_PER_BAR = 4
CORRECTION_S = 0.5  # a small phase error is slewed in over this long
JUMP_BEATS = 0.25  # a larger one is taken at once
TAP_GAP_S = 2.0  # a longer pause between taps starts a new tap sequence
TAP_HISTORY = 8  # taps averaged for the tempo


@dataclass(frozen=True)
class BeatState:
    """The clock at one moment. `bpm` is 0 when no tempo is set (then nothing moves with the
    beat); `beat` is the continuous position in beats; `source` says who set the tempo."""

    bpm: float
    beat: float
    beats_per_bar: int
    source: str

    @property
    def running(self) -> bool:
        return self.bpm > 0

    @property
    def phase(self) -> float:
        """Position within the beat, [0, 1): 0 on the beat."""
        return self.beat % 1.0

    @property
    def bar_position(self) -> float:
        """Position within the bar in beats, [0, beats_per_bar): 0 on the downbeat."""
        return self.beat % self.beats_per_bar


class BeatClock:
    """Tempo and beat position as a function of time; see the module docstring."""

    def __init__(
        self, *, correction_s: float = CORRECTION_S, jump_beats: float = JUMP_BEATS
    ) -> None:
        self.correction_s, self.jump_beats = correction_s, jump_beats
        self.bpm = 0.0
        self.beats_per_bar = DEFAULT_BEATS_PER_BAR
        self.source = "off"
        self._anchor_s = 0.0
        self._anchor_beat = 0.0
        self._error_beats = 0.0  # still to be slewed in, from _error_since_s on
        self._error_since_s = 0.0
        self._taps: list[float] = []

    def beat_at(self, t_s: float) -> float:
        """The beat position at time `t_s` (0 while no tempo is set)."""
        if self.bpm <= 0:
            return 0.0
        base = self._anchor_beat + (t_s - self._anchor_s) * self.bpm / 60.0
        done = min(1.0, max(0.0, (t_s - self._error_since_s) / self.correction_s))
        return base + self._error_beats * done

    def state(self, t_s: float) -> BeatState:
        return BeatState(self.bpm, self.beat_at(t_s), self.beats_per_bar, self.source)

    def set_tempo(
        self, bpm: float, t_s: float, *, source: str = "ctl", beats_per_bar: int | None = None
    ) -> None:
        """Change the tempo from `t_s` on, the position continuous (0 bpm stops the clock)."""
        if bpm <= 0:
            self.bpm, self.source, self._taps = 0.0, "off", []
            return
        self._rebase(t_s)
        self.bpm, self.source = _checked_bpm(bpm), source
        if beats_per_bar is not None:
            self.beats_per_bar = int(beats_per_bar)

    def lock(
        self,
        bpm: float,
        beat: float,
        t_s: float,
        *,
        source: str,
        beats_per_bar: int | None = None,
    ) -> float:
        """An outside clock's reading: at `t_s` the position was `beat` at `bpm`. Returns the
        error it corrected, in beats (ours minus theirs, modulo a bar)."""
        if beats_per_bar is not None:
            self.beats_per_bar = int(beats_per_bar)
        bpm = _checked_bpm(bpm)
        if self.bpm <= 0 or self.source != source:  # a new source: take its position
            error = self.beat_at(t_s) - beat if self.bpm > 0 else 0.0
            self._jump(bpm, beat, t_s, source)
            return error
        self._rebase(t_s)
        self.bpm = bpm
        bar = self.beats_per_bar
        error = (self._anchor_beat + self._error_beats - beat + bar / 2) % bar - bar / 2
        if abs(error) > self.jump_beats:
            self._jump(bpm, beat, t_s, source)
        else:  # slewed in from t_s (where _rebase left the correction still to come)
            self._error_beats -= error
        return error

    def tap(self, t_s: float) -> float | None:
        """A tap on the beat at `t_s`. The first tap of a sequence puts the beat there (if a
        tempo is set); later ones set the tempo from the average interval. Returns the tempo
        the taps gave, or None after the first."""
        if self._taps and not 0 < t_s - self._taps[-1] <= TAP_GAP_S:
            self._taps = []
        self._taps = [*self._taps[-(TAP_HISTORY - 1) :], t_s]
        bpm = self.bpm
        if len(self._taps) >= 2:
            interval_s = (self._taps[-1] - self._taps[0]) / (len(self._taps) - 1)
            bpm = min(MAX_BPM, max(MIN_BPM, 60.0 / interval_s))
        if bpm <= 0:
            return None
        on_beat = round(self.beat_at(t_s)) if self.bpm > 0 else 0.0
        if self.source != "tap" or len(self._taps) == 1:  # a deliberate nudge: at once
            self._jump(bpm, on_beat, t_s, "tap")
        else:
            self.lock(bpm, on_beat, t_s, source="tap")
        return bpm if len(self._taps) >= 2 else None

    def _rebase(self, t_s: float) -> None:
        """Re-anchor at `t_s`, keeping the position and the correction still to come."""
        if self.bpm <= 0:
            self._anchor_s, self._anchor_beat, self._error_beats = t_s, 0.0, 0.0
            return
        done = min(1.0, max(0.0, (t_s - self._error_since_s) / self.correction_s))
        position = self.beat_at(t_s)
        remaining = self._error_beats * (1.0 - done)
        self._anchor_s, self._anchor_beat = t_s, position
        self._error_beats, self._error_since_s = remaining, t_s  # over a fresh correction_s

    def _jump(self, bpm: float, beat: float, t_s: float, source: str) -> None:
        self.bpm, self.source = bpm, source
        self._anchor_s, self._anchor_beat = t_s, float(beat)
        self._error_beats, self._error_since_s = 0.0, t_s


def _checked_bpm(bpm: float) -> float:
    if not (math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
        raise ValueError(f"tempo {bpm!r} bpm: choose from {MIN_BPM:g} to {MAX_BPM:g}")
    return float(bpm)
