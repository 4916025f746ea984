"""Benchmark the simulation's memory per preset and size: steady state and the peak of a change.

`python bench/bench_memory.py [--backend numpy|fused-cpu|cupy] [--sizes 512 1024] [--presets ...]
[--frames 30] [--change-to medusa]`
Each row runs in a fresh process, so caches of an earlier row (FFT plans, noise pools, the CuPy
pool's cached blocks) are not counted against a later one. A row builds the Simulation, runs
`--frames` frames (tick + render, as the daemon does), reads the steady figure, then switches to
`--change-to` (another engine by default) and runs until its crossfade has finished, and reads the
peak. On CuPy "steady" is the pool's bytes in use and "peak" the bytes the pool holds (it keeps
every block it ever needed; cuFFT work areas come from it too). On numpy both come from
tracemalloc, which sees every numpy allocation: the same arrays a GPU run would hold, plus the
CPU path's scratch (scipy.fft's buffers, the renderer's row bands), so it is an upper bound for
the GPU and a guide to what to shrink when no GPU is at hand. "fused-cpu" is the closest stand-in
for a GPU run without one: numpy arrays, but the fused kernels the GPU path runs (compiled for the
CPU by the tests' host harness, tests/host_cuda.py, with g++), so it holds the GPU path's buffers
rather than the numpy path's; its FFTs still allocate like scipy.fft, not cuFFT. "allocated per
frame" checks that the steady loop is allocation-free, over 5 more steady frames: on CuPy the
bytes the frame takes from the pool (every request counted, e.g. each FFT's output), on numpy the
largest rise above the frame's starting memory (tracemalloc). Output is a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from ca_server.presets import load_preset, preset_names
from ca_server.xp import BackendUnavailableError, cupy_backend, numpy_backend

MIB = 2**20
# The preset a row changes to: another engine, so the change builds everything anew.
CHANGE_TO = {"lenia": "medusa", "gray_scott": "coral", "smoothlife": "coral", "mnca": "coral"}


def measure_row(backend_name: str, name: str, size: int, frames: int, change_to: str) -> dict:
    """Run one row in this process; returns steady and peak MiB."""
    if backend_name in ("numpy", "fused-cpu"):
        tracemalloc.start()
        backend = numpy_backend()
        if backend_name == "fused-cpu":
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            from host_cuda import HostKernelCompiler

            backend = dataclasses.replace(backend, kernel_compiler=HostKernelCompiler())
    else:
        try:
            backend = cupy_backend(0)
        except BackendUnavailableError as exc:
            sys.exit(f"bench_memory: {exc}")
    from ca_server.simulation import Simulation  # after tracemalloc.start: count its arrays

    baseline = 0 if backend.is_gpu else tracemalloc.get_traced_memory()[0]
    sim = Simulation(backend, width=size, height=size, preset=name, seed=0)
    frame = backend.xp.empty((size, size, 3), backend.xp.uint8)
    for _ in range(frames):
        sim.next_frame(frame)
    backend.synchronize()
    steady = _in_use(backend, baseline)
    peak_before = 0 if backend.is_gpu else tracemalloc.get_traced_memory()[1] - baseline
    allocated = _allocated_per_frame(backend, sim, frame, frames=5)
    sim.set_preset(change_to)
    changed_frames = 0
    while (sim.health()["warming"] or sim.health()["crossfading"]) and changed_frames < 100_000:
        sim.next_frame(frame)
        changed_frames += 1
    backend.synchronize()
    if backend.is_gpu:
        peak = backend.xp.get_default_memory_pool().total_bytes()
    else:
        peak = max(peak_before, tracemalloc.get_traced_memory()[1] - baseline)
    return {
        "steady_mib": steady / MIB,
        "allocated_kib": allocated / 1024,
        "peak_mib": peak / MIB,
        "change_frames": changed_frames,
    }


def _allocated_per_frame(backend: Any, sim: Any, frame: Any, frames: int) -> float:
    """Bytes one steady frame allocates, the largest over `frames` (see the module docstring)."""
    if not backend.is_gpu:  # tracemalloc is running; its peak is reset here, the caller kept it
        largest = 0
        for _ in range(frames):
            tracemalloc.reset_peak()
            start = tracemalloc.get_traced_memory()[0]
            sim.next_frame(frame)
            largest = max(largest, tracemalloc.get_traced_memory()[1] - start)
        return largest

    class PoolRequests(backend.xp.cuda.MemoryHook):
        """Adds up the bytes of every request to the CuPy memory pool."""

        name = "bench_memory_pool_requests"

        def __init__(self) -> None:
            self.requested = 0

        def malloc_preprocess(self, **kwargs: Any) -> None:
            self.requested += kwargs["mem_size"]

    largest = 0
    for _ in range(frames):
        with PoolRequests() as requests:
            sim.next_frame(frame)
        largest = max(largest, requests.requested)
    return largest


def _in_use(backend: Any, baseline: int) -> int:
    if backend.is_gpu:
        return backend.memory_in_use_bytes()
    return tracemalloc.get_traced_memory()[0] - baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("numpy", "fused-cpu", "cupy"), default="numpy")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--presets", nargs="+", default=None, help="default: one per engine")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--change-to", default=None, help="default: a preset of another engine")
    parser.add_argument("--one", nargs=2, metavar=("PRESET", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        name, size = args.one[0], int(args.one[1])
        change_to = args.change_to or CHANGE_TO[load_preset(name).engine]
        row = measure_row(args.backend, name, size, args.frames, change_to)
        print(json.dumps({**row, "change_to": change_to}))
        return
    names = args.presets or ["coral", "sl_gliders", "mnca_worm", "medusa"]
    unknown = sorted(set(names) - set(preset_names()))
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}")
    print(f"backend {args.backend}; {args.frames} steady frames, then one preset change")
    print(
        "| preset | size | steady MiB | allocated per frame KiB | peak MiB (with a change) "
        "| changed to | change frames |"
    )
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for name in names:
            command = [sys.executable, __file__, "--backend", args.backend, "--one", name]
            command += [str(size), "--frames", str(args.frames)]
            if args.change_to:
                command += ["--change-to", args.change_to]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode:
                sys.exit(f"bench_memory: {name} at {size}: {result.stderr.strip()}")
            row = json.loads(result.stdout.strip().splitlines()[-1])
            print(
                f"| {name} | {size} | {row['steady_mib']:.0f} | {row['allocated_kib']:.0f} | "
                f"{row['peak_mib']:.0f} | "
                f"{row['change_to']} | {row['change_frames']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
