"""Runs the fused kernels' CUDA C on the CPU, for machines without a GPU (CI has none).

What this stands in for: NVRTC and a CUDA device. `HostKernelCompiler` compiles each kernel
source with g++ behind a small shim (`__global__` and `__device__` erased; blockIdx/threadIdx 0
and blockDim/gridDim 1, so a kernel's grid-stride loop visits every element in one call) and
returns a launcher with the same `launch(n, *args)` call as the CuPy one, taking numpy arrays.
Each launch's arguments are checked against the kernel's declared parameters (count, C type,
pointee dtype, contiguity): CuPy passes whatever it is given, so on a GPU an int where a float is
declared, or a float64 array behind a `float*`, would read the wrong bytes without an error.
`host_fused_backend()` is the numpy backend with this compiler in place, so engines and the
renderer take their fused path on the CPU and can be compared with the numpy reference. What it
cannot check: CUDA-only behaviour (FMA contraction, the GPU's exp ulps, races between threads;
every kernel here writes only its own element) and the CuPy launch call itself: those are the
`gpu`-marked tests' job. `nvcc_check` compiles a source as real CUDA (PTX for sm_90) when the
toolkit is installed.
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
struct ca_dim3 { unsigned x, y, z; };
static const ca_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0};
static const ca_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
"""
# -ffp-contract=off: no fused multiply-add, so the host result follows numpy's rounding step by
# step (the GPU contracts; its tests carry the tolerance for that).
GXX_FLAGS = ("-O2", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math", "-x", "c++")
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

    def __init__(self) -> None:
        self.launches: dict[str, int] = {}  # kernel name -> launches so far
        self.compiled: list[str] = []  # kernel names, in the order `compile` was asked for them

    def compile(self, source: KernelSource) -> Any:
        self.compiled.append(source.name)
        library = ctypes.CDLL(str(_build(source.full_code)))
        function = getattr(library, source.name)
        function.restype = None
        parameters = kernel_parameters(source)
        launches = self.launches

        def launch(n: int, *args: Any) -> None:
            launches[source.name] = launches.get(source.name, 0) + 1
            values = (*kernel_arguments(args), np.int64(n))
            check_kernel_arguments(source.name, parameters, values)
            function(*(_c_argument(value) for value in values))

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


def host_fused_backend() -> Backend:
    """The numpy backend, but with fused kernels compiled for the host: the fused path on CPU."""
    return dataclasses.replace(numpy_backend(), kernel_compiler=HostKernelCompiler())


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


def _build(code: str) -> Path:
    digest = hashlib.sha256((SHIM + code + " ".join(GXX_FLAGS)).encode()).hexdigest()[:16]
    library = BUILD_DIR / f"kernel-{digest}.so"
    if library.exists():
        return library
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BUILD_DIR) as folder:
        path = Path(folder) / "kernel.cpp"
        path.write_text(SHIM + code)
        built = Path(folder) / "kernel.so"
        result = subprocess.run(
            ["g++", *GXX_FLAGS, str(path), "-o", str(built)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode:
            raise AssertionError(f"g++ rejected a kernel source:\n{result.stderr}")
        built.replace(library)  # atomic: parallel test processes may build the same source
    return library
