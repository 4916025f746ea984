"""FFT threads on the CPU: simulation ticks with 1 vs N scipy.fft workers, interleaved.

`python bench/bench_fft_workers.py [--sizes 512 1024] [--workers 1 2] [--ticks 5] [--rounds 6]
[--presets amoeba sl_gliders mnca_worm]`
For each preset and size one `Simulation` per worker count (numpy backend, same seed) is built and
warmed up; then, round by round, each runs `--ticks` ticks (steps only, no render) in turn, so
all see the same machine load. Prints the median ms per tick per worker count and its speed-up
over the first. The numpy backend's default `fft_workers` is picked from this table
(BENCHMARKS.md, "FFT workers").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend


def tick_ms(sim: Simulation, ticks: int) -> float:
    started = time.perf_counter()
    for _ in range(ticks):
        sim.tick()
    return (time.perf_counter() - started) * 1000.0 / ticks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--presets", nargs="+", default=["amoeba", "sl_gliders", "mnca_worm"])
    args = parser.parse_args()
    print(f"cores {os.cpu_count()}; load average at start {os.getloadavg()[0]:.1f}")
    header = " | ".join(f"{w} worker{'s' if w > 1 else ''} ms/tick" for w in args.workers)
    speedups = " | ".join(f"×{w}" for w in args.workers[1:])
    print(f"| preset | size | {header} | {speedups} |")
    print("|---|---|" + "---|" * (2 * len(args.workers) - 1))
    for size in args.sizes:
        for name in args.presets:
            sims = []
            for workers in args.workers:
                backend = numpy_backend(fft_workers=workers)
                sim = Simulation(
                    backend,
                    width=size,
                    height=size,
                    preset=name,
                    seed=0,
                    warmup_steps_per_tick=4096,
                )
                sim.next_frame()  # lands the warm-up
                sims.append(sim)
            samples: list[list[float]] = [[] for _ in sims]
            for _ in range(args.rounds):
                for index, sim in enumerate(sims):
                    samples[index].append(tick_ms(sim, args.ticks))
            medians = [statistics.median(times) for times in samples]
            ratios = " | ".join(f"{medians[0] / m:.2f}" for m in medians[1:])
            cells = " | ".join(f"{m:.1f}" for m in medians)
            print(f"| {name} | {size} | {cells} | {ratios} |", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
