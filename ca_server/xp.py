"""The array backend: numpy or CuPy, chosen once at startup and passed inward as a `Backend`.

This is the only module that imports CuPy. Engines and the renderer receive a `Backend` and use
`backend.xp` (the array module), `backend.fft` (scipy.fft with worker threads on CPU,
cupyx.scipy.fft on GPU) and `backend.ndimage` (scipy.ndimage / cupyx.scipy.ndimage); they
never import cupy or scipy themselves. Each hot pass has two implementations, fused kernels and
the numpy passes they fuse; `Backend.hot_pass` picks one once, where its owner is built. `auto`
falls back to numpy with one warning line saying why; an explicit `cupy` without a usable GPU is
a `BackendUnavailableError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, TypeVar

import numpy as np

from ca_server.config import BACKEND_CHOICES
from ca_server.errors import CAServerError
from ca_server.exit_codes import ExitCode
from ca_server.fused import CupyKernelCompiler, FusedKernel, KernelSource

log = logging.getLogger("ca_server.xp")

BackendChoice = Literal["auto", "numpy", "cupy"]
CUDA_HOST_ALLOC_MAPPED = 2  # cudaHostAllocMapped: page-locked host memory kernels can address
# cudaErrorMemoryAllocation, CUDA_ERROR_OUT_OF_MEMORY and CUFFT_ALLOC_FAILED are all 2.
CUDA_OUT_OF_MEMORY = 2
HotPass = TypeVar("HotPass")


class BackendUnavailableError(CAServerError, RuntimeError):
    """The requested array backend cannot be used on this machine."""

    exit_code = ExitCode.CONFIG


@dataclass(frozen=True)
class Backend:
    """One array backend: the array module and its FFT and image-processing companions.

    `xp` is numpy or cupy; arrays made with it live on the host (numpy) or on GPU `device_index`.
    """

    name: Literal["numpy", "cupy"]
    xp: ModuleType
    fft: ModuleType
    ndimage: ModuleType
    device_index: int | None
    device_name: str
    fft_workers: int
    # Builds fused-kernel launchers: CupyKernelCompiler on CuPy, None on numpy (the tests put a
    # host compiler here to run the kernels' CUDA C on the CPU).
    kernel_compiler: Any = None
    # CuPy's errors that mean "out of memory" when their code (the named attribute) is
    # CUDA_OUT_OF_MEMORY: memory outside the pool (pinned host memory, module loads, cuFFT's
    # planning). The pool's own OutOfMemoryError is a MemoryError.
    coded_memory_errors: tuple[tuple[type[BaseException], str], ...] = ()

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"

    def fft_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for `backend.fft` calls (worker threads on CPU, none on GPU)."""
        return {} if self.is_gpu else {"workers": self.fft_workers}

    def hot_pass(self, kernel: type[HotPass], passes: type[HotPass]) -> type[HotPass]:
        """Which implementation of a hot pass runs on this backend, chosen once, where its owner
        is built: `kernel` (fused kernel launches) where kernels compile, else `passes` (the
        chain of numpy passes it fuses, the reference and the CPU path). The two take the same
        constructor and call arguments and each allocates its own buffers."""
        return passes if self.kernel_compiler is None else kernel

    def fused_kernel(self, source: KernelSource) -> FusedKernel | None:
        """A launcher `launch(n, *args)` for `source` on this device, or None where the numpy
        sequence it fuses runs instead (see ca_server.fused)."""
        return None if self.kernel_compiler is None else self.kernel_compiler.compile(source)

    def gather(self, source: Any, indices: Any, out: Any, axis: int | None = None) -> Any:
        """`out[...] = source.take(indices, axis)` on this backend's device; returns `out`.

        Indices out of range never fault: numpy clips them (`mode="clip"`: as fast as "wrap", and
        unlike "wrap" it cannot spin on a huge negative index such as a cast NaN), CuPy wraps them.
        """
        if self.is_gpu:
            return self.xp.take(source, indices, axis=axis, out=out)
        return self.xp.take(source, indices, axis=axis, out=out, mode="clip")

    def to_host(self, array: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Copy `array` (any shape/dtype, on this backend's device) into host memory.

        With `out` (same shape and dtype, host), the copy lands there and `out` is returned; this is
        the loop's one device-to-host copy when `out` is a ring slot.
        """
        if self.is_gpu:
            return array.get(out=out) if out is not None else array.get()
        if out is None:
            return np.array(array, copy=True)
        np.copyto(out, array)
        return out

    def ran_out_of_memory(self, error: BaseException) -> bool:
        """Whether `error` means an allocation failed: a MemoryError (CuPy's pool past its limit
        or the device full, or the host), or one of `coded_memory_errors` with the OOM code.
        Not any other CUDA error: those can leave the device unusable and must stop the daemon."""
        if isinstance(error, MemoryError):
            return True
        return any(
            isinstance(error, kind) and getattr(error, code, None) == CUDA_OUT_OF_MEMORY
            for kind, code in self.coded_memory_errors
        )

    def free_cached_memory(self) -> None:
        """Give the memory pool's unused blocks back to the device (a no-op on numpy), so that
        what a dropped change held is there for the other processes on the GPU."""
        if self.is_gpu:
            self.xp.fft.config.get_plan_cache().clear()  # plans hold work areas, some now unused
            self.xp.get_default_memory_pool().free_all_blocks()

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on numpy)."""
        if self.is_gpu:
            self.xp.cuda.get_current_stream().synchronize()

    def host_mapped_array(self, shape: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, Any]:
        """A small array that kernels write and the host reads with no copy: (host, device) views.

        On CuPy it is page-locked host memory allocated mapped (cudaHostAllocMapped); with unified
        addressing (every 64-bit process) a kernel writes it through the same pointer, so results
        cross as the kernel's own stores instead of a separate transfer. The host view is valid
        once the device has finished that work: after `synchronize()`, or after a blocking copy
        queued behind it (the frame's). On numpy both views are the same array.
        """
        if not self.is_gpu:
            host = np.zeros(shape, dtype)
            return host, host
        cuda = self.xp.cuda
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        memory = cuda.PinnedMemory(nbytes, CUDA_HOST_ALLOC_MAPPED)
        host = np.ndarray(shape, dtype, buffer=cuda.PinnedMemoryPointer(memory, 0))
        host[...] = 0
        unowned = cuda.UnownedMemory(memory.ptr, nbytes, memory, self.device_index)
        device = self.xp.ndarray(shape, dtype, cuda.MemoryPointer(unowned, 0))
        return host, device

    def pin_host_memory(self, region: np.ndarray) -> Callable[[], None]:
        """Page-lock `region` (a C-contiguous host array) for fast device-to-host copies.

        Returns the function that unpins it; call that before the memory goes away. A no-op on
        numpy. If the driver refuses (some containers limit locked memory), copies still work,
        only slower: one warning line says so.
        """
        if not self.is_gpu:
            return lambda: None
        runtime = self.xp.cuda.runtime
        pointer = region.ctypes.data
        try:
            runtime.hostRegister(pointer, region.nbytes, 0)  # 0: cudaHostRegisterDefault
        except Exception as exc:  # CUDARuntimeError: e.g. RLIMIT_MEMLOCK in a container
            log.warning("ring slots not pinned (%s); device-to-host copies will be slower", exc)
            return lambda: None
        return lambda: runtime.hostUnregister(pointer)

    def memory_in_use_bytes(self) -> int:
        """Bytes held by the backend's memory pool on the device (0 on numpy)."""
        return int(self.xp.get_default_memory_pool().used_bytes()) if self.is_gpu else 0


# scipy.fft threads on the CPU. Measured (bench/bench_fft_workers.py, BENCHMARKS.md "FFT
# workers"): on the 2-core CI/dev machine a second worker gave 0.75-0.97x per tick at 512² and
# 1024² — the FFTs are a share of a step, and the extra thread competes with the tick loop,
# the renderer and Scope for the same cores.
DEFAULT_FFT_WORKERS = 1


def numpy_backend(fft_workers: int | None = None) -> Backend:
    """The CPU backend: numpy arrays, scipy.fft with `fft_workers` threads (default:
    `DEFAULT_FFT_WORKERS`)."""
    import scipy.fft
    import scipy.ndimage

    workers = fft_workers or DEFAULT_FFT_WORKERS
    return Backend("numpy", np, scipy.fft, scipy.ndimage, None, "cpu", workers)


def cupy_backend(gpu_index: int = 0, max_vram_mb: int | None = None) -> Backend:
    """The GPU backend on device `gpu_index`; `max_vram_mb` caps CuPy's memory pool.

    Raises BackendUnavailableError with the reason when CuPy or a usable GPU is missing.
    """
    try:
        import cupy
        import cupyx.scipy.fft
        import cupyx.scipy.ndimage
    except Exception as exc:  # ImportError, or CUDA libraries missing at import time
        raise BackendUnavailableError(
            f"CuPy is not usable ({type(exc).__name__}: {exc}); "
            "install it with `pip install 'ca-server[gpu]'` or use --backend numpy"
        ) from exc
    try:
        device_count = cupy.cuda.runtime.getDeviceCount()
        if gpu_index < 0 or gpu_index >= device_count:
            raise BackendUnavailableError(
                f"GPU {gpu_index} does not exist ({device_count} CUDA device(s) visible); "
                "pass a valid --gpu or use --backend numpy"
            )
        cupy.cuda.Device(gpu_index).use()
        properties = cupy.cuda.runtime.getDeviceProperties(gpu_index)
        device_name = properties["name"].decode(errors="replace")
        cupy.zeros(1, dtype=cupy.float32).sum().get()  # fail now, not in the first frame
    except BackendUnavailableError:
        raise
    except Exception as exc:  # CUDARuntimeError and friends: driver missing, no device, ...
        raise BackendUnavailableError(
            f"no usable CUDA GPU ({type(exc).__name__}: {exc}); check `nvidia-smi` "
            "or use --backend numpy"
        ) from exc
    if max_vram_mb:
        cupy.get_default_memory_pool().set_limit(size=max_vram_mb * 1024 * 1024)
    from cupy.cuda import cufft, driver, runtime  # cufft loaded with cupyx.scipy.fft above

    return Backend(
        "cupy",
        cupy,
        cupyx.scipy.fft,
        cupyx.scipy.ndimage,
        gpu_index,
        device_name,
        1,
        CupyKernelCompiler(cupy),
        coded_memory_errors=(
            (runtime.CUDARuntimeError, "status"),
            (driver.CUDADriverError, "status"),
            (cufft.CuFFTError, "result"),
        ),
    )


def select_backend(
    choice: str = "auto", gpu_index: int = 0, max_vram_mb: int | None = None
) -> Backend:
    """Pick the array backend once: `numpy`, `cupy`, or `auto` (CuPy if usable, else numpy)."""
    if choice not in BACKEND_CHOICES:
        raise BackendUnavailableError(
            f"unknown backend {choice!r}; choose one of {', '.join(BACKEND_CHOICES)}"
        )
    if choice == "numpy":
        return numpy_backend()
    if choice == "cupy":
        return cupy_backend(gpu_index, max_vram_mb)
    try:
        return cupy_backend(gpu_index, max_vram_mb)
    except BackendUnavailableError as exc:
        log.warning("falling back to numpy on the CPU: %s", exc)
        return numpy_backend()
