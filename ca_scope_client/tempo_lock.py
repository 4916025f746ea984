"""Scope's tempo sync into occasional timestamped `beat_lock` ops for the daemon's beat clock.

With tempo sync on (Ableton Link or MIDI clock in Scope), Scope adds `bpm`, `beat_phase` (0–1),
`beat_count` and `bar_position` to every call's parameters. Forwarding them on every call would
flood the daemon and still arrive late; instead `TempoLock` stamps each reading with
`time.monotonic_ns()` (the same clock the daemon reads, on the same host) and yields a lock only
when it says something new: the first reading, a tempo change, a phase that strays from the
last lock's extrapolation by more than `STRAY_BEATS`, or `REFRESH_S` after the last one. The
daemon extrapolates between locks and slews small errors in. No I/O; tests drive it with dicts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

REFRESH_S = 1.0
STRAY_BEATS = 0.03  # about 15 ms at 120 bpm
MIN_BPM, MAX_BPM = 20.0, 400.0


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class TempoLock:
    """Turns Scope's per-call beat parameters into occasional `beat_lock` arguments."""

    def __init__(self, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock_ns = clock_ns
        self._last: tuple[float, float, int] | None = None  # bpm, beat, t_ns of the last lock

    def observe(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The `beat_lock` args to send for this call, or None (nothing new, or no tempo)."""
        bpm, phase = _number(params.get("bpm")), _number(params.get("beat_phase"))
        if bpm is None or phase is None or not MIN_BPM <= bpm <= MAX_BPM:
            return None
        if params.get("is_playing") is False:
            return None
        count = params.get("beat_count")
        beat = phase % 1.0
        if isinstance(count, int) and not isinstance(count, bool) and abs(count) < 10**9:
            beat += count
        now_ns = self._clock_ns()
        if self._last is not None:
            last_bpm, last_beat, last_ns = self._last
            expected = last_beat + (now_ns - last_ns) / 1e9 * last_bpm / 60.0
            stray = (beat - expected + 0.5) % 1.0 - 0.5
            fresh = (now_ns - last_ns) / 1e9 < REFRESH_S
            if bpm == last_bpm and abs(stray) <= STRAY_BEATS and fresh:
                return None
        self._last = (bpm, beat, now_ns)
        return {"bpm": bpm, "beat": beat, "t_ns": now_ns, "source": "scope"}

    def reset(self) -> None:
        """Send the next reading whatever it says (a restarted daemon knows no tempo)."""
        self._last = None
