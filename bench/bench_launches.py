"""Count the device operations a frame issues, per preset: numpy's chain against the fused path.

`python bench/bench_launches.py [--presets coral ...] [--size 128] [--frames 20]`
On CuPy each array operation is one kernel launch (or a few, for an FFT) plus its Python dispatch,
and at 1024² those launches, not bandwidth, bound the GPU loop (research/ca-engines.md §8). This
counts them on the CPU, where no GPU is needed: the backend's array module, FFT and ndimage are
wrapped so that every ufunc call (functions and in-place operators alike), array function,
slice assignment, FFT and filter on a frame-loop array counts as one operation, and fused kernels
count one each. "numpy" is the reference chain; "fused" is the same frames with the fused kernels,
compiled for the CPU by the tests' host harness (tests/host_cuda.py: g++, no GPU). Counts are
per video frame at speed 1 in steady state (after the warm-up, no preset change), averaged over
`--frames`; an FFT counts once although cuFFT may split it into two or three kernels. The last
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
from ca_server.xp import Backend, numpy_backend

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from host_cuda import HostKernelCompiler, compiler_available

OPERATIONS = [0]
# Array constructors: wrapped so what they build is counted later; filling ones count once.
_FILLING = {"zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "arange"}
_BUILDING = {"empty", "empty_like", "asarray", "array", "ascontiguousarray"}


class CountedArray(np.ndarray):
    """A numpy array whose operations add one to OPERATIONS each."""

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        OPERATIONS[0] += 1
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(value) for value in kwargs["out"])
        result = getattr(ufunc, method)(*(_plain(value) for value in inputs), **kwargs)
        return _counted(result)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        OPERATIONS[0] += 1
        return _counted(func(*_plain(args), **_plain(kwargs)))

    def __setitem__(self, key: Any, value: Any) -> None:
        OPERATIONS[0] += 1
        np.ndarray.__setitem__(self.view(np.ndarray), _plain(key), _plain(value))


def _plain(value: Any) -> Any:
    if isinstance(value, CountedArray):
        return value.view(np.ndarray)
    if isinstance(value, list | tuple):
        return type(value)(_plain(item) for item in value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _counted(value: Any) -> Any:
    if type(value) is np.ndarray:
        return value.view(CountedArray)
    if isinstance(value, tuple | list):
        return type(value)(_counted(item) for item in value)
    return value


class CountingModule:
    """Wraps numpy, scipy.fft or scipy.ndimage: calls count and return CountedArrays."""

    def __init__(self, module: Any, count_calls: bool) -> None:
        self._module, self._count_calls = module, count_calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._module, name)
        if not callable(attribute) or isinstance(attribute, type | np.ufunc):
            return attribute
        counts = self._count_calls or name in _FILLING
        if not counts and name not in _BUILDING:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            if counts:
                OPERATIONS[0] += 1
            return _counted(attribute(*_plain(args), **_plain(kwargs)))

        return call


def counting_backend(fused: bool) -> Backend:
    import scipy.fft
    import scipy.ndimage

    return dataclasses.replace(
        numpy_backend(),
        xp=CountingModule(np, count_calls=False),
        fft=CountingModule(scipy.fft, count_calls=True),
        ndimage=CountingModule(scipy.ndimage, count_calls=True),
        kernel_compiler=HostKernelCompiler() if fused else None,
    )


def operations_per_frame(name: str, size: int, frames: int, fused: bool) -> tuple[float, float]:
    """(device operations, of which fused launches) per frame for preset `name`."""
    backend = counting_backend(fused)
    sim = Simulation(backend, width=size, height=size, preset=name, seed=0)
    frame = backend.xp.empty((size, size, 3), np.uint8)
    for _ in range(3):
        sim.next_frame(frame)
    launches = backend.kernel_compiler.launches if fused else {}
    before_ops, before_launches = OPERATIONS[0], sum(launches.values())
    for _ in range(frames):
        sim.next_frame(frame)
    fused_launches = sum(launches.values()) - before_launches
    return (OPERATIONS[0] - before_ops + fused_launches) / frames, fused_launches / frames


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

    def __init__(self, seconds: list[float]) -> None:
        super().__init__()
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
        kernel_compiler=TimedKernelCompiler(in_operations),
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
