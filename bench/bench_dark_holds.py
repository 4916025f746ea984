"""Near-black frames per preset: how long the picture stays dark, e.g. while a regrowth warms up.

`python bench/bench_dark_holds.py [--size 256] [--frames 3000] [--presets reef deep_sea]
[--seed 0]`
Runs each preset's Simulation free-running on numpy (the daemon's frame: `next_frame`, its
default warm-up time budget) for `--frames` frames from `--seed`, and counts the near-black frames:
those where fewer than 1% of the pixels are brighter than 48/255 in their brightest channel (a few
dim fragments on black). Prints, per preset, the share of near-black frames, the longest run of
them (frames and seconds at 30 fps), the regrowths started and a sha256 of every frame's bytes
(equal in two runs when the frames are reproducible from the seed). Output is a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np

from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend

BRIGHT_LEVEL = 48
BRIGHT_SHARE = 0.01


def near_black(frame: np.ndarray) -> bool:
    """Whether fewer than BRIGHT_SHARE of the pixels of `frame` ((H, W, 3) uint8) are brighter
    than BRIGHT_LEVEL in their brightest channel."""
    return float((frame.max(axis=2) > BRIGHT_LEVEL).mean()) < BRIGHT_SHARE


def run(preset: str, size: int, frames: int, seed: int) -> dict:
    sim = Simulation(numpy_backend(), width=size, height=size, preset=preset, seed=seed)
    host = np.empty((size, size, 3), np.uint8)
    digest = hashlib.sha256()
    dark = longest = run_length = 0
    for _ in range(frames):
        sim.next_frame(host_out=host)
        digest.update(host.tobytes())
        if near_black(host):
            dark += 1
            run_length += 1
            longest = max(longest, run_length)
        else:
            run_length = 0
    return {
        "preset": preset,
        "dark": dark / frames,
        "longest": longest,
        "regrowths": sim.regrowths,
        "digest": digest.hexdigest()[:16],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--presets", nargs="+", default=["reef", "deep_sea"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"numpy, {args.size}², {args.frames} frames, seed {args.seed}")
    print("| preset | near-black | longest run frames (s at 30 fps) | regrowths | frames sha256 |")
    print("|---|---|---|---|---|")
    for preset in args.presets:
        row = run(preset, args.size, args.frames, args.seed)
        print(
            f"| {row['preset']} | {row['dark']:.1%} | {row['longest']} ({row['longest'] / 30:.1f}) "
            f"| {row['regrowths']} | {row['digest']} |"
        )


if __name__ == "__main__":
    main()
