"""Sparkle and black backgrounds, measured against the prototype's renderer on the same world.

Issue 25 item 1: our edges fizzed (pixel-scale colour change every frame, 2-4x the prototype's)
and a frame full of creatures sat on a coloured haze. bench/bench_sparkle.py measures every
preset at any size; this runs its measurement at a small size on a few presets whose margins are
clear there (at 128² the smallest creatures are only a few pixels wide, so presets whose
picture is mostly pixel-scale structure are left to the bench).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_sparkle import measure

SIZE = 128
FRAMES, SETTLE = 6, 12


@pytest.mark.parametrize("preset", ["amoeba", "coral", "nebula"])
def test_fine_scale_change_is_no_more_than_the_prototypes(preset):
    ours, prototype = measure(preset, SIZE, FRAMES, SETTLE, seed=0)
    assert ours.fine <= prototype.fine, (
        f"{preset}: fine-scale (< 5 px) frame-to-frame change {ours.fine:.2f}/255 RMS, "
        f"prototype's {prototype.fine:.2f} ({100 * ours.fine_share:.0f}% of our change)"
    )


@pytest.mark.parametrize("preset", ["mnca_worm", "labyrinth", "sl_gliders"])
def test_empty_space_is_black(preset):
    ours, _ = measure(preset, SIZE, FRAMES, SETTLE, seed=0)
    # Pixels with no matter within 4 px: no glow, no haze, no dither.
    assert ours.black_p99 == 0 and ours.black < 0.05, (
        f"{preset}: background mean {ours.black:.2f}/255, 99th percentile {ours.black_p99:.0f}"
    )
