"""Count the device operations a frame issues, per preset: numpy's chain against the fused path.

`python bench/bench_launches.py [--presets coral ...] [--size 128] [--frames 20]`
On CuPy each array operation is one kernel launch (or a few, for an FFT) plus its Python dispatch,
and at 1024² those launches, not bandwidth, bound the GPU loop (docs/architecture.md, GPU time).
This counts them on the CPU, where no GPU is needed, with the counter tests/ca/test_launch_budget.py
asserts on (tests/device_boundary.py: the GPU branches behind CuPy's rules; every ufunc call,
array function that writes, assignment, copy, FFT, filter and fused launch counts one). "numpy"
is the reference chain; "fused" is the same frames with the fused kernels, compiled for the CPU
by the tests' host harness (tests/host_cuda.py: g++, no GPU). Counts are per video frame at
speed 1 in steady state (after the warm-up, no preset change, seed 0), the frame's copy to the
host included, averaged over `--frames`; an FFT counts once although cuFFT may split it into two
or three kernels. The last
column is the host's own time per frame on the fused path: wall time per frame minus the time
inside fused launches (their argument conversion too, part of a launch's dispatch on CuPy as
well), FFTs and filters, i.e. the Python of tick and render plus the few remaining numpy
operations (a few µs each at 128²), over `--host-frames` frames. A GPU frame pays this on top of
CuPy's dispatch per operation.
Output is a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ca_server.presets import load_preset, preset_names
from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from device_boundary import DEVICE_OPERATIONS, device_boundary_backend
from host_cuda import HostKernelCompiler, compiler_available


def operations_per_frame(name: str, size: int, frames: int, fused: bool) -> tuple[float, float]:
    """(device operations, of which fused launches) per steady frame for preset `name`, counted
    by tests/device_boundary.py on the GPU branches, the frame copied into a page-locked slot as
    the daemon does."""
    backend = device_boundary_backend()
    if not fused:
        backend = dataclasses.replace(backend, kernel_compiler=None)
    sim = Simulation(backend, width=size, height=size, preset=name, seed=0)
    slot = np.empty((size, size, 3), np.uint8)
    unpin = backend.pin_host_memory(slot)
    try:
        for _ in range(3):
            sim.next_frame(host_out=slot)
        launches = backend.kernel_compiler.launches if fused else {}
        before_ops, before_launches = DEVICE_OPERATIONS.total, sum(launches.values())
        for _ in range(frames):
            sim.next_frame(host_out=slot)
    finally:
        unpin()
    fused_launches = sum(launches.values()) - before_launches
    return (DEVICE_OPERATIONS.total - before_ops) / frames, fused_launches / frames


class TimedLibrary:
    """Wraps scipy.fft or scipy.ndimage: each call's wall time is added to `seconds[0]`."""

    def __init__(self, module: Any, seconds: list[float]) -> None:
        self._module, self._seconds = module, seconds

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._module, name)
        if not callable(attribute) or isinstance(attribute, type):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return attribute(*args, **kwargs)
            finally:
                self._seconds[0] += time.perf_counter() - started

        return call


class TimedKernelCompiler(HostKernelCompiler):
    """Host-compiled fused kernels whose launches add their wall time to `seconds[0]`."""

    def __init__(self, seconds: list[float], check_order: bool) -> None:
        super().__init__(check_order=check_order)
        self._seconds = seconds

    def compile(self, source: Any) -> Any:
        launch, seconds = super().compile(source), self._seconds

        def timed_launch(*args: Any) -> None:
            started = time.perf_counter()
            launch(*args)
            seconds[0] += time.perf_counter() - started

        return timed_launch


def host_microseconds_per_frame(name: str, size: int, frames: int) -> float:
    """Wall µs per frame outside fused launches, FFTs and filters (fused path, `size`²)."""
    import scipy.fft
    import scipy.ndimage

    in_operations = [0.0]
    backend = dataclasses.replace(
        numpy_backend(1),
        fft=TimedLibrary(scipy.fft, in_operations),
        ndimage=TimedLibrary(scipy.ndimage, in_operations),
        kernel_compiler=TimedKernelCompiler(in_operations, check_order=False),
    )
    sim = Simulation(backend, width=size, height=size, preset=name, seed=0)
    frame = np.empty((size, size, 3), np.uint8)
    for _ in range(10):
        sim.next_frame(frame)
    in_operations[0] = 0.0
    started = time.perf_counter()
    for _ in range(frames):
        sim.next_frame(frame)
    elapsed = time.perf_counter() - started
    return (elapsed - in_operations[0]) / frames * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=None, help="default: every preset")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--host-frames", type=int, default=300)
    args = parser.parse_args()
    if not compiler_available():
        sys.exit("bench_launches: g++ is needed to build the fused kernels for the CPU")
    print(f"device operations per frame at {args.size}², speed 1, steady state")
    print(
        "| preset | engine | numpy ops/frame | fused path ops/frame | of which fused kernels "
        "| host µs/frame outside operations (fused) |"
    )
    print("|---|---|---|---|---|---|")
    for name in args.presets or preset_names():
        reference, _ = operations_per_frame(name, args.size, args.frames, fused=False)
        fused, kernels = operations_per_frame(name, args.size, args.frames, fused=True)
        host_us = host_microseconds_per_frame(name, args.size, args.host_frames)
        engine = load_preset(name).engine
        counts = f"{reference:.1f} | {fused:.1f} | {kernels:.1f}"
        print(f"| {name} | {engine} | {counts} | {host_us:.0f} |", flush=True)


if __name__ == "__main__":
    main()
