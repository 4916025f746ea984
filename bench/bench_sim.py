"""Benchmark the simulation per preset and size: step ms, render ms, copy ms and full-loop fps.

`python bench/bench_sim.py [--backend numpy|cupy] [--sizes 256 512 1024] [--presets coral ...]
[--frames 40] [--repeats 1] [--fft-workers N]`
Each (preset, size) is built and warmed up (the warm-up time is reported), then timed over
`--frames` frames after 5 discarded ones, `--repeats` times in the same process (the median of the
per-repeat medians is printed). "step" is `Simulation.tick()` at speed 1 divided by the engine steps
it took (one engine step plus flow, keep-moving extras, LFO and health, whose verdict the next tick
settles; presets with a speed above 1 take two steps on some ticks), "render" is
`Simulation.render()` and "copy" the one device-to-host copy of the frame into a preallocated host
buffer, page-locked as the daemon's ring slots are (a no-op on numpy). The full loop is step +
render (+ copy), the same definition as the prototype's "full loop" (1 step + render) in
docs/prototype.md (Measured speed), whose per-engine fps is the `vs proto` baseline. On numpy
the stages are timed with `perf_counter`; on CuPy with CUDA events on the current stream around
each stage (the host clock is read only after synchronising), and the table adds the memory
pool's bytes in use. "free-running fps" is the issue-6 goal's measure:
the same frames run back to back (`Simulation.next_frame`, the daemon's frame: tick, render, copy,
settle, all at the preset's speed) with no events in between, on the wall clock, so it includes the
Python dispatch that bounds a GPU loop.
Output is a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np

from ca_server.presets import load_preset, preset_names
from ca_server.simulation import Simulation
from ca_server.xp import Backend, BackendUnavailableError, cupy_backend, numpy_backend

# The prototype's full-loop fps on this class of machine (docs/prototype.md), per engine.
PROTOTYPE_FPS = {
    512: {"lenia": 45.5, "smoothlife": 27.0, "mnca": 39.1, "gray_scott": 39.2},
    1024: {"lenia": 10.9, "smoothlife": 6.7, "mnca": 9.4, "gray_scott": 9.7},
}
DISCARDED_FRAMES = 5


class StageTimer:
    """Times consecutive stages of one frame: host clock on numpy, CUDA events on CuPy."""

    def __init__(self, backend: Backend, stages: int):
        self.backend = backend
        if backend.is_gpu:
            cuda = backend.xp.cuda
            self._events = [cuda.Event() for _ in range(stages + 1)]
        self._marks: list[float] = []

    def start(self) -> None:
        self._marks = []
        self.mark()

    def mark(self) -> None:
        """End the current stage (and start the next)."""
        if self.backend.is_gpu:
            self._events[len(self._marks)].record()
            self._marks.append(0.0)
        else:
            self._marks.append(time.perf_counter())

    def stage_ms(self) -> list[float]:
        """Milliseconds of each stage since `start` (synchronises the device first)."""
        if self.backend.is_gpu:
            self._events[len(self._marks) - 1].synchronize()
            elapsed = self.backend.xp.cuda.get_elapsed_time
            return [
                float(elapsed(self._events[i], self._events[i + 1]))
                for i in range(len(self._marks) - 1)
            ]
        return [(b - a) * 1e3 for a, b in zip(self._marks, self._marks[1:], strict=False)]


def bench_one(backend: Backend, name: str, size: int, frames: int, repeats: int) -> dict[str, Any]:
    """Time one preset at `size`²: medians of step/render/copy ms and fps, warm-up s, memory."""
    backend.synchronize()
    started = time.perf_counter()
    sim = Simulation(backend, width=size, height=size, preset=name, seed=0)
    backend.synchronize()
    warmup_s = time.perf_counter() - started
    engine = load_preset(name).engine
    host_frame = np.empty((size, size, 3), np.uint8)
    unpin = backend.pin_host_memory(host_frame)  # page-locked, as the daemon's ring slots are
    try:
        step, render, copy, wall_fps = _time_frames(backend, sim, host_frame, frames, repeats)
    finally:
        unpin()
    fps = 1e3 / (step + render)
    baseline = PROTOTYPE_FPS.get(size, {}).get(engine)
    return {
        "preset": name,
        "engine": engine,
        "size": size,
        "warmup_s": warmup_s,
        "step_ms": step,
        "render_ms": render,
        "copy_ms": copy,
        "fps": fps,
        "fps_with_copy": 1e3 / (step + render + copy),
        "wall_fps": wall_fps,
        "prototype_fps": baseline,
        "vs_prototype": f"{fps / baseline:.2f}x" if baseline else "-",
        "memory_mib": backend.memory_in_use_bytes() / 2**20,
    }


def _time_frames(
    backend: Backend, sim: Simulation, host_frame: np.ndarray, frames: int, repeats: int
) -> tuple[float, float, float, float]:
    """Step, render and copy ms (medians over `repeats` of per-frame medians) and free-running
    fps of `sim`'s frames, each copied into `host_frame`."""
    size = host_frame.shape[0]
    frame_buffer = backend.xp.empty((size, size, 3), backend.xp.uint8)
    timer = StageTimer(backend, 3)
    per_repeat: list[tuple[float, float, float]] = []
    for _ in range(repeats):
        step_ms, render_ms, copy_ms = [], [], []
        for index in range(frames + DISCARDED_FRAMES):
            timer.start()
            steps = sim.tick()
            timer.mark()
            sim.render(out=frame_buffer)
            timer.mark()
            backend.to_host(frame_buffer, out=host_frame)
            timer.mark()
            tick, render, copy = timer.stage_ms()
            if index >= DISCARDED_FRAMES and steps > 0:
                step_ms.append(tick / steps)
                render_ms.append(render)
                copy_ms.append(copy)
        per_repeat.append(
            (statistics.median(step_ms), statistics.median(render_ms), statistics.median(copy_ms))
        )
    # Free-running: the daemon's frame (`next_frame`: tick, render, copy to the host, settle)
    # with no timing events in it, on the wall clock; on the GPU the copy's wait ends each frame,
    # as it does in the daemon.
    backend.synchronize()
    started = time.perf_counter()
    for _ in range(frames):
        sim.next_frame(frame_buffer, host_frame)
    wall_fps = frames / (time.perf_counter() - started)
    step = statistics.median(r[0] for r in per_repeat)
    render = statistics.median(r[1] for r in per_repeat)
    copy = statistics.median(r[2] for r in per_repeat)
    return step, render, copy, wall_fps


def select(backend_name: str, fft_workers: int | None) -> Backend:
    if backend_name == "numpy":
        return numpy_backend(fft_workers)
    try:
        return cupy_backend(0)
    except BackendUnavailableError as exc:
        sys.exit(f"bench_sim: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--presets", nargs="+", default=None, help="default: every preset")
    parser.add_argument("--frames", type=int, default=40, help="timed frames per repeat")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs; medians reported")
    parser.add_argument("--fft-workers", type=int, default=None, help="numpy: scipy.fft threads")
    args = parser.parse_args()
    if args.frames < 1 or args.repeats < 1:
        parser.error("--frames and --repeats must be at least 1")
    backend = select(args.backend, args.fft_workers)
    names = args.presets or preset_names()
    print(f"backend {backend.name} on {backend.device_name}; fft workers {backend.fft_workers}")
    print(
        "| preset | engine | size | warm-up s | step ms | render ms | copy ms | full-loop fps "
        "| proto fps | vs proto | free-running fps | GPU MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for name in names:
            row = bench_one(backend, name, size, args.frames, args.repeats)
            proto = f"{row['prototype_fps']:.1f}" if row["prototype_fps"] else "-"
            print(
                f"| {row['preset']} | {row['engine']} | {row['size']} | {row['warmup_s']:.2f} | "
                f"{row['step_ms']:.3f} | {row['render_ms']:.3f} | {row['copy_ms']:.3f} | "
                f"{row['fps']:.1f} | {proto} | {row['vs_prototype']} | {row['wall_fps']:.1f} | "
                f"{row['memory_mib']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
