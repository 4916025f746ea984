"""Sparkle: how much of the frame-to-frame change is pixel-scale, ours vs the prototype's renderer.

`python bench/bench_sparkle.py [--size 256] [--frames 16] [--settle 30] [--seed 0] [--presets ...]`
Each preset runs in `Simulation` on numpy (warm-up, then `--settle` frames); over the next
`--frames` frames the same world is coloured by our renderer and by the prototype's
(bench/prototype_render.py, fed every frame from the start so its smoothed maxima settle), so the
two differ only in the renderer. Per preset and renderer, frames as float RGB in /255 units:

* fine: RMS of (d − box5(d)), d = frame − previous frame, box5 a periodic 5×5 mean — the
  frame-to-frame change finer than 5 px (the fizz); `fine %` is its share of the energy of d;
* coarse: RMS of box5(d), the change the eye reads as motion;
* rough: mean |frame[x+1] − frame[x]| over lit pixels (max channel ≥ 16), side-to-side roughness;
* black: mean max channel over empty pixels (world < 0.01 in a 9×9 neighbourhood), the
  background level (0 is true black); `black p99` its 99th percentile.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from prototype_render import PrototypeRenderer

from ca_server.presets import load_preset, preset_names
from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend

LIT_LEVEL = 16
EMPTY_DENSITY = 0.01
EMPTY_NEIGHBOURHOOD_PX = 9


@dataclass
class SparkleStats:
    """Per preset and renderer; all in /255 units except `fine_share` (0-1)."""

    fine: float
    coarse: float
    fine_share: float
    rough: float
    black: float
    black_p99: float


def sparkle_stats(frames: list[np.ndarray], worlds: list[np.ndarray]) -> SparkleStats:
    """Stats over consecutive frames ((N, N, 3) uint8) and the worlds ((N, N) float32) they show."""
    fine_energy = coarse_energy = total_energy = 0.0
    rough, black = [], []
    for index, frame in enumerate(frames):
        current = frame.astype(np.float64)
        if index:
            change = current - frames[index - 1]
            coarse = ndimage.uniform_filter(change, (5, 5, 0), mode="wrap")
            fine_energy += float(np.mean((change - coarse) ** 2))
            coarse_energy += float(np.mean(coarse**2))
            total_energy += float(np.mean(change**2))
        step = np.abs(np.roll(current, -1, 1) - current).mean(axis=2)
        lit = frame.max(axis=2) >= LIT_LEVEL
        lit |= np.roll(lit, -1, 1)
        rough.append(step[lit])
        near = ndimage.maximum_filter(worlds[index], EMPTY_NEIGHBOURHOOD_PX, mode="wrap")
        black.append(frame.max(axis=2)[near < EMPTY_DENSITY])
    pairs = max(1, len(frames) - 1)
    rough_all = np.concatenate(rough) if rough else np.zeros(1)
    black_all = np.concatenate(black)
    if black_all.size == 0:
        black_all = np.zeros(1)
    return SparkleStats(
        fine=float(np.sqrt(fine_energy / pairs)),
        coarse=float(np.sqrt(coarse_energy / pairs)),
        fine_share=fine_energy / total_energy if total_energy else 0.0,
        rough=float(rough_all.mean()) if rough_all.size else 0.0,
        black=float(black_all.mean()),
        black_p99=float(np.percentile(black_all, 99)),
    )


def measure(
    name: str, size: int, frames: int, settle: int, seed: int
) -> tuple[SparkleStats, SparkleStats]:
    """(ours, prototype's renderer) for preset `name` on the same numpy world."""
    backend = numpy_backend(fft_workers=1)
    preset = load_preset(name)
    sim = Simulation(
        backend, width=size, height=size, preset=name, seed=seed, warmup_steps_per_tick=4096
    )
    reference = PrototypeRenderer(size, preset.engine, dict(preset.render), seed)
    ours, theirs, worlds = [], [], []
    host = np.empty((size, size, 3), np.uint8)
    for index in range(settle + frames):
        sim.next_frame(host_out=host)
        world = backend.to_host(sim.world).copy()
        prototype_frame = reference.render(world)
        if index >= settle:
            ours.append(host.copy())
            theirs.append(prototype_frame)
            worlds.append(world)
    return sparkle_stats(ours, worlds), sparkle_stats(theirs, worlds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--settle", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--presets", nargs="*", default=None)
    args = parser.parse_args()
    names = args.presets or list(preset_names())
    print(
        "| preset | fine ours / proto | fine % ours / proto | coarse ours / proto "
        "| rough ours / proto | black ours / proto | black p99 ours / proto |\n"
        "|---|---|---|---|---|---|---|"
    )
    worse = 0
    for name in names:
        ours, proto = measure(name, args.size, args.frames, args.settle, args.seed)
        worse += ours.fine > proto.fine
        print(
            f"| {name} | {ours.fine:.2f} / {proto.fine:.2f} "
            f"| {100 * ours.fine_share:.0f} / {100 * proto.fine_share:.0f} "
            f"| {ours.coarse:.2f} / {proto.coarse:.2f} | {ours.rough:.1f} / {proto.rough:.1f} "
            f"| {ours.black:.2f} / {proto.black:.2f} "
            f"| {ours.black_p99:.0f} / {proto.black_p99:.0f} |",
            flush=True,
        )
    print(f"presets whose fine-scale change exceeds the prototype's: {worse} of {len(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
