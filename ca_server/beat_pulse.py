"""How a preset moves with the beat: the gains the Simulation applies to one frame.

On every beat, brightness and bloom flash and decay (an exponential envelope over the beat); on
every bar, the organism surges (its speed jumps and decays over the bar's first beat). How much is
the preset's own `beat` amount (`[preset] beat` in its file, else its engine's default below)
times the live `beat` control (`ctl beat`, Scope's "Beat", the page's slider; 1 = the preset's
own amount, 0 = off). With no tempo set, or an amount of 0, the pulse is exactly `NO_PULSE`, and
the frames are byte-identical to a daemon without a beat clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ca_server.beat_clock import BeatState
from ca_server.presets import Preset

BRIGHTNESS_FLASH = 0.45  # brightness × (1 + this) on the beat, at amount 1
BLOOM_FLASH = 1.5  # bloom × (1 + this) on the beat, at amount 1
SPEED_SURGE = 1.5  # speed × (1 + this) on the downbeat, at amount 1
BEAT_DECAY = 0.18  # the flash falls to 1/e this far into the beat (fraction of a beat)
BAR_DECAY_BEATS = 0.6  # the surge falls to 1/e this many beats into the bar
# Brightness is baked into the renderer's colour table, rebuilt whenever it changes (~10 ms on a
# CPU at any size, a launch on a GPU): in steps of 1/32 the flash changes the table a few times a
# beat and the rest of the beat reuses the plain one.
BRIGHTNESS_STEP = 1 / 32


@dataclass(frozen=True)
class Pulse:
    """Gains for one frame: brightness and bloom multiply the preset's, speed the live speed."""

    brightness: float = 1.0
    bloom: float = 1.0
    speed: float = 1.0


NO_PULSE = Pulse()


def preset_beat_amount(preset: Preset) -> float:
    """The preset's own beat amount, [0, 1]: its file's `[preset] beat`, else its engine's."""
    from ca_server.engines import ENGINE_CLASSES  # the engines' own defaults (`beat_amount`)

    own = getattr(preset, "beat", None)
    return ENGINE_CLASSES[preset.engine].beat_amount if own is None else float(own)


def pulse_for(state: BeatState, amount: float) -> Pulse:
    """The gains at clock state `state` for a total amount `amount` (preset's × control's)."""
    if not state.running or amount <= 0:
        return NO_PULSE
    flash = math.exp(-state.phase / BEAT_DECAY)
    surge = math.exp(-state.bar_position / BAR_DECAY_BEATS)
    return Pulse(
        brightness=1.0
        + round(BRIGHTNESS_FLASH * amount * flash / BRIGHTNESS_STEP) * BRIGHTNESS_STEP,
        bloom=1.0 + BLOOM_FLASH * amount * flash,
        speed=1.0 + SPEED_SURGE * amount * surge,
    )
