"""Runs the fused kernels' CUDA C on the CPU, for machines without a GPU (CI has none).

What this stands in for: NVRTC and a CUDA device. `HostKernelCompiler` compiles each kernel
source with g++ behind a small shim (`__global__` and `__device__` erased; blockIdx, threadIdx,
blockDim and gridDim are globals) and returns a launcher with the same `launch(n, *args)` call as
the CuPy one, taking numpy arrays. A launch runs the kernel as a grid of GRID_BLOCKS blocks of
BLOCK_THREADS threads, one thread after another: a grid-stride loop that forgets gridDim or
blockIdx visits elements twice or never, and the results show it. With `check_order` (the
default) the first ORDER_CHECKED_LAUNCHES launches of each kernel also run, on copies of their
arrays, with blocks and threads in reverse order, and the two results must be identical to the
byte: a kernel whose threads read what other threads of the same launch write (a race on a GPU)
fails there. (Only the first few: a race is in the kernel's code, and checking every launch
doubled the long simulation tests' time.)
Each launch's arguments are checked against the kernel's declared parameters (count, C type,
pointee dtype, contiguity): CuPy passes whatever it is given, so on a GPU an int where a float is
declared, or a float64 array behind a `float*`, would read the wrong bytes without an error.
`host_fused_backend()` is the numpy backend with this compiler in place, so engines and the
renderer take their fused path on the CPU and can be compared with the numpy reference. What it
cannot check: the GPU's exp ulps, races that only concurrent threads show (none of the kernels
shares memory between threads) and the CuPy launch call itself: those are the `gpu`-marked
tests' job. Numerics: "strict" (the default) follows numpy's rounding step by step; "gpu" builds
as CuPy compiles for the device, fused multiply-adds contracted and denormals flushed to zero
(CuPy passes `-ftz=true` to NVRTC), to size the `gpu` tests' tolerances on the CPU.
`nvcc_check` compiles a source as real CUDA (PTX for sm_90) when the toolkit is installed.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ca_server.fused import KernelSource, kernel_arguments
from ca_server.xp import Backend, numpy_backend

SHIM = r"""
#include <math.h>
#include <xmmintrin.h>
struct ca_dim3 { unsigned x, y, z; };
static ca_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0};
static ca_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
"""
# Appended to each kernel: runs it as a grid (blocks and threads one after another, in reverse
# order when asked), with the SSE unit flushing denormals when CA_FLUSH_DENORMALS is 1.
GRID_LAUNCHER = r"""
extern "C" void ca_grid_launch(PARAMETERS, const unsigned ca_blocks, const unsigned ca_threads,
                               const int ca_reverse) {
    const unsigned saved_csr = _mm_getcsr();
    if (CA_FLUSH_DENORMALS) _mm_setcsr(saved_csr | 0x8040);  // FTZ (bit 15) and DAZ (bit 6)
    gridDim.x = ca_blocks;
    blockDim.x = ca_threads;
    for (unsigned b = 0; b < ca_blocks; ++b) {
        blockIdx.x = ca_reverse ? ca_blocks - 1 - b : b;
        for (unsigned t = 0; t < ca_threads; ++t) {
            threadIdx.x = ca_reverse ? ca_threads - 1 - t : t;
            KERNEL(ARGUMENTS);
        }
    }
    _mm_setcsr(saved_csr);
}
"""
GRID_BLOCKS, BLOCK_THREADS = 3, 32
ORDER_CHECKED_LAUNCHES = 4  # per kernel and compiler
# "strict": no fused multiply-add, denormals kept, so the host result follows numpy's rounding
# step by step. "gpu": what NVRTC does under CuPy's options (contraction on by default, -ftz=true).
NUMERICS = {
    "strict": ("-ffp-contract=off", "-DCA_FLUSH_DENORMALS=0"),
    "gpu": ("-ffp-contract=fast", "-mfma", "-DCA_FLUSH_DENORMALS=1"),
}
GXX_FLAGS = ("-O2", "-shared", "-fPIC", "-fno-fast-math", "-x", "c++")
BUILD_DIR = Path(tempfile.gettempdir()) / "ca-server-host-cuda"

_C_TYPES = {
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.int32): ctypes.c_int32,
    np.dtype(np.int64): ctypes.c_int64,
}
# A kernel parameter's C type (qualifiers dropped, "*" for a pointer) -> the numpy dtype of the
# scalar, or of the array's elements, that must be passed for it.
_PARAMETER_DTYPES = {
    "float": np.dtype(np.float32),
    "int": np.dtype(np.int32),
    "long long": np.dtype(np.int64),
    "float *": np.dtype(np.float32),
    "int *": np.dtype(np.int32),
    "unsigned char *": np.dtype(np.uint8),
}
_SIGNATURE = re.compile(r'extern "C" __global__ void\s+(\w+)\s*\((.*?)\)\s*\{', re.DOTALL)


def compiler_available() -> bool:
    return shutil.which("g++") is not None


class HostKernelCompiler:
    """Compiles `KernelSource`s with g++ into shared libraries (cached by source hash)."""

    def __init__(self, numerics: str = "strict", check_order: bool = True) -> None:
        self.launches: dict[str, int] = {}  # kernel name -> launches so far
        self.compiled: list[str] = []  # kernel names, in the order `compile` was asked for them
        self.numerics, self.check_order = numerics, check_order

    def compile(self, source: KernelSource) -> Any:
        self.compiled.append(source.name)
        parameters = kernel_parameters(source)
        library = ctypes.CDLL(str(_build(_grid_code(source, parameters), NUMERICS[self.numerics])))
        function = library.ca_grid_launch
        function.restype = None
        launches, check_order = self.launches, self.check_order

        blocks, threads = ctypes.c_uint(GRID_BLOCKS), ctypes.c_uint(BLOCK_THREADS)
        grids = {reverse: (blocks, threads, ctypes.c_int(reverse)) for reverse in (False, True)}

        def run(values: tuple[Any, ...], reverse: bool) -> None:
            function(*(_c_argument(value) for value in values), *grids[reverse])

        def launch(n: int, *args: Any) -> None:
            launches[source.name] = launches.get(source.name, 0) + 1
            values = (*kernel_arguments(args), np.int64(n))
            check_kernel_arguments(source.name, parameters, values)
            checking = check_order and launches[source.name] <= ORDER_CHECKED_LAUNCHES
            twins = _separate_copies(values) if checking else None
            run(values, reverse=False)
            if twins is not None:
                run(twins, reverse=True)
                _check_same_results(source.name, values, twins)

        return launch


def kernel_parameters(source: KernelSource) -> list[tuple[str, str, bool]]:
    """(name, C type, is pointer) of each parameter `source`'s kernel declares, in order."""
    match = _SIGNATURE.search(source.code)
    if match is None or match.group(1) != source.name:
        raise ValueError(f'no `extern "C" __global__ void {source.name}(...)` signature')
    parameters = []
    for declaration in match.group(2).split(","):
        words = declaration.replace("*", " * ").split()
        words = [word for word in words if word not in ("const", "__restrict__")]
        c_type = " ".join(words[:-1])
        if c_type not in _PARAMETER_DTYPES:
            raise ValueError(f"{source.name}: no numpy type for parameter {declaration.strip()!r}")
        parameters.append((words[-1], c_type, c_type.endswith("*")))
    return parameters


def _grid_code(source: KernelSource, parameters: list[tuple[str, str, bool]]) -> str:
    """`source`'s code with GRID_LAUNCHER for its kernel appended."""
    match = _SIGNATURE.search(source.code)
    assert match is not None  # kernel_parameters found it
    launcher = (
        GRID_LAUNCHER.replace("PARAMETERS", match.group(2).strip())
        .replace("KERNEL", source.name)
        .replace("ARGUMENTS", ", ".join(name for name, _, _ in parameters))
    )
    return source.full_code + launcher


def _separate_copies(values: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """`values` with each array copied (one copy per array object), for a second run; None when
    two different arrays overlap in memory (their copies could not keep that)."""
    arrays = {id(value): value for value in values if isinstance(value, np.ndarray)}
    listed = list(arrays.values())
    for index, first in enumerate(listed):
        if any(np.may_share_memory(first, second) for second in listed[index + 1 :]):
            return None
    copies = {key: array.copy() for key, array in arrays.items()}
    return tuple(copies.get(id(value), value) for value in values)


def _check_same_results(kernel: str, values: tuple[Any, ...], twins: tuple[Any, ...]) -> None:
    for value, twin in zip(values, twins, strict=True):
        if isinstance(value, np.ndarray) and value.tobytes() != twin.tobytes():
            raise AssertionError(
                f"{kernel}: results differ between forward and reverse block order "
                f"({GRID_BLOCKS} blocks of {BLOCK_THREADS} threads): a thread reads what another "
                "writes in the same launch, a race on a GPU"
            )


def check_kernel_arguments(
    kernel: str, parameters: list[tuple[str, str, bool]], values: tuple[Any, ...]
) -> None:
    """Raise TypeError unless `values` (after `kernel_arguments`, n last) are what a GPU launch
    of `kernel` reads correctly: one per parameter, an array of the pointee's dtype, C-contiguous,
    for each pointer, and a numpy scalar of exactly the declared type for the others."""
    if len(values) != len(parameters):
        names = ", ".join(name for name, _, _ in parameters)
        raise TypeError(f"{kernel} takes {len(parameters)} arguments ({names}), got {len(values)}")
    for value, (name, c_type, is_pointer) in zip(values, parameters, strict=True):
        wanted = _PARAMETER_DTYPES[c_type]
        if is_pointer != isinstance(value, np.ndarray) or np.asarray(value).dtype != wanted:
            given = type(value).__name__
            given = f"an array of {value.dtype}" if isinstance(value, np.ndarray) else given
            raise TypeError(f"{kernel}: parameter {c_type} {name} wants {wanted}, got {given}")
        if is_pointer and not value.flags.c_contiguous:
            raise TypeError(f"{kernel}: parameter {name} needs a C-contiguous array")


def host_fused_backend(numerics: str = "strict") -> Backend:
    """The numpy backend, but with fused kernels compiled for the host: the fused path on CPU."""
    return dataclasses.replace(numpy_backend(), kernel_compiler=HostKernelCompiler(numerics))


def nvcc_check(source: KernelSource, nvcc: str) -> None:
    """Compile `source` as CUDA C++ to PTX for sm_90 with `nvcc`; raises with its messages."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{source.name}.cu"
        path.write_text(source.full_code)
        result = subprocess.run(
            [nvcc, "--ptx", "-arch=compute_90", "--std=c++17", str(path), "-o", "/dev/null"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if result.returncode:
        raise AssertionError(f"nvcc rejected {source.name}:\n{result.stderr}")


def _c_argument(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # checked C-contiguous by check_kernel_arguments
        return ctypes.c_void_p(value.ctypes.data)
    c_type = _C_TYPES.get(np.dtype(type(value)))
    if c_type is None:
        raise TypeError(f"no kernel argument type for {type(value).__name__}")
    return c_type(value)


def _build(code: str, numerics_flags: tuple[str, ...]) -> Path:
    flags = (*GXX_FLAGS, *numerics_flags)
    digest = hashlib.sha256((SHIM + code + " ".join(flags)).encode()).hexdigest()[:16]
    library = BUILD_DIR / f"kernel-{digest}.so"
    if library.exists():
        return library
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BUILD_DIR) as folder:
        path = Path(folder) / "kernel.cpp"
        path.write_text(SHIM + code)
        built = Path(folder) / "kernel.so"
        result = subprocess.run(
            ["g++", *flags, str(path), "-o", str(built)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode:
            raise AssertionError(f"g++ rejected a kernel source:\n{result.stderr}")
        built.replace(library)  # atomic: parallel test processes may build the same source
    return library
