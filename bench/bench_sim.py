"""Benchmark the simulation on numpy: per preset and size, step ms, render ms and full-loop fps.

`python bench/bench_sim.py [--sizes 256 512 1024] [--presets coral medusa ...] [--frames 40]`
Each (preset, size) is built and warmed up (the warm-up time is reported), then timed over
`--frames` frames after 5 discarded ones: "step" is `Simulation.tick()` at speed 1 (one engine
step plus flow, keep-moving extras, LFO and health), "render" is `Simulation.render()`, and the
full loop is their sum, the same definition as the prototype's "full loop" (1 step + render) in
research/peer-plugin.md §6.2. Medians are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

from ca_server.presets import preset_names
from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend

# The prototype's full-loop fps on this class of machine (peer-plugin.md §6.2), per engine.
PROTOTYPE_FPS = {
    512: {"lenia": 45.5, "smoothlife": 27.0, "mnca": 39.1, "gray_scott": 39.2},
    1024: {"lenia": 10.9, "smoothlife": 6.7, "mnca": 9.4, "gray_scott": 9.7},
}


def bench_one(name: str, size: int, frames: int) -> dict[str, float | str]:
    backend = numpy_backend()
    started = time.perf_counter()
    sim = Simulation(backend, width=size, height=size, preset=name, seed=0)
    warmup_s = time.perf_counter() - started
    engine = sim._current.preset.engine
    step_ms, render_ms = [], []
    for index in range(frames + 5):
        t0 = time.perf_counter()
        sim.tick()
        t1 = time.perf_counter()
        sim.render()
        t2 = time.perf_counter()
        if index >= 5:
            step_ms.append((t1 - t0) * 1e3)
            render_ms.append((t2 - t1) * 1e3)
    step, render = statistics.median(step_ms), statistics.median(render_ms)
    fps = 1e3 / (step + render)
    baseline = PROTOTYPE_FPS.get(size, {}).get(engine)
    return {
        "preset": name,
        "engine": engine,
        "size": size,
        "warmup_s": warmup_s,
        "step_ms": step,
        "render_ms": render,
        "fps": fps,
        "vs_prototype": f"{fps / baseline:.1f}x" if baseline else "-",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--presets", nargs="+", default=None)
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    names = args.presets or preset_names()
    print("| preset | engine | size | warm-up s | step ms | render ms | full-loop fps | vs proto |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for name in names:
            row = bench_one(name, size, args.frames)
            print(
                f"| {row['preset']} | {row['engine']} | {row['size']} | {row['warmup_s']:.2f} | "
                f"{row['step_ms']:.2f} | {row['render_ms']:.2f} | {row['fps']:.1f} | "
                f"{row['vs_prototype']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
