"""Fused kernels: one CUDA launch where numpy runs a chain of in-place passes over the frame.

On CuPy every array operation is a kernel launch plus several microseconds of Python dispatch,
while at 1024² a pass over the frame moves its 4 MB in about a microsecond of HBM time, so the
number of launches, not bandwidth, sets a GPU frame's cost (docs/architecture.md, GPU time). The hot
per-pixel chains (an engine's update, the keep-moving extras, flow advection, the renderer's
shading) are therefore also written as CUDA C, each beside the numpy sequence it replaces; numpy
stays the reference and the CPU path. This module holds what every such kernel shares:

- `KernelSource`: a kernel's name and CUDA C. Every kernel is `extern "C" __global__`, takes its
  arguments followed by `const long long n`, and loops over its n elements with `CA_FOR_EACH`, a
  grid-stride loop, so one launch covers any frame size.
- the argument rules (`kernel_arguments`): Python floats become float32, ints int32; arrays are
  C-contiguous device arrays the kernel indexes directly.
- `CupyKernelCompiler`: compiles each source once per process with NVRTC and returns a launcher
  `launch(n, *args)`.

Backends reach it through `Backend.fused_kernel(source)`, which returns None on numpy. The tests
compile the same sources for the CPU (tests/host_cuda.py) and run every engine and the renderer
through them, so the CUDA C is checked here even where no GPU is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# Prepended to every kernel source. No #include: NVRTC provides the CUDA math functions built in.
PRELUDE = r"""
#define CA_FOR_EACH(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)
// i modulo n in [0, n) for any i (C's % keeps the sign of i).
__device__ __forceinline__ int ca_wrap(int i, int n) {
    i %= n;
    return i < 0 ? i + n : i;
}
// Clip to [0, 1]; NaN stays NaN, as numpy's clip keeps it, so the health monitor sees a
// non-finite world on either path (fminf/fmaxf alone would turn it into 0).
__device__ __forceinline__ float ca_clip01(float x) {
    return x != x ? x : fminf(fmaxf(x, 0.0f), 1.0f);
}
"""

FusedKernel = Callable[..., None]
"""`launch(n, *args)`: run a kernel over `n` elements with `args` (arrays and scalars)."""

KERNEL_SOURCES: list[KernelSource] = []
"""Every kernel source defined so far (import a module to register its kernels)."""


@dataclass(frozen=True)
class KernelSource:
    """One fused kernel: its `extern "C"` function name and CUDA C source (without PRELUDE)."""

    name: str
    code: str

    def __post_init__(self) -> None:
        if f" {self.name}(" not in self.code:
            raise ValueError(f"kernel source does not define {self.name!r}")
        KERNEL_SOURCES.append(self)

    @property
    def full_code(self) -> str:
        return PRELUDE + self.code


# Python numbers become the C types kernels declare, looked up by exact type: np.float64 (a float
# subclass, what numpy scalar maths returns) is listed, a bool is caught before the lookup, and
# other numpy scalars and arrays pass through unchanged.
_KERNEL_NUMBER_TYPES: dict[type, Any] = {float: np.float32, np.float64: np.float32, int: np.int32}


def kernel_arguments(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """`args` with Python numbers as the C types kernels declare: float -> float32, int -> int32.

    numpy scalars and arrays pass through unchanged; a bool is refused (a kernel has no bool).
    Called once per launch, so it is written for speed (≈ 1.5 µs for ten arguments here).
    """
    converted = []
    for value in args:
        kind = type(value)
        if kind is bool:
            raise TypeError("pass a kernel flag as an int (0 or 1), not a bool")
        to_c = _KERNEL_NUMBER_TYPES.get(kind)
        converted.append(value if to_c is None else to_c(value))
    return tuple(converted)


class CupyKernelCompiler:
    """Builds launchers for fused kernels on the current CuPy device (NVRTC, cached by source)."""

    THREADS_PER_BLOCK = 256
    BLOCKS_PER_SM = 32  # enough resident blocks to hide latency; the loop strides over the rest

    def __init__(self, cupy: Any) -> None:
        self._cupy = cupy
        device = cupy.cuda.Device()
        self._max_blocks = self.BLOCKS_PER_SM * int(device.attributes["MultiProcessorCount"])
        self._modules: dict[str, Any] = {}

    def compile(self, source: KernelSource) -> FusedKernel:
        module = self._modules.get(source.code)
        if module is None:
            module = self._cupy.RawModule(code=source.full_code, options=("--std=c++17",))
            self._modules[source.code] = module
        function = module.get_function(source.name)
        threads, max_blocks = self.THREADS_PER_BLOCK, self._max_blocks

        def launch(n: int, *args: Any) -> None:
            blocks = max(1, min(max_blocks, (n + threads - 1) // threads))
            function((blocks,), (threads,), (*kernel_arguments(args), np.int64(n)))

        return launch
