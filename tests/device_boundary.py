"""CuPy's host/device boundary, kept on the CPU: what the GPU loop would cross, and where it would
crash.

What this stands in for: CuPy arrays on a GPU (CI has neither). `device_boundary_backend()` is the
fused CPU backend (tests/host_cuda.py: the fused kernels' CUDA C compiled with g++) whose arrays
are `DeviceArray`s, numpy arrays that keep CuPy's rules at the boundary (checked against CuPy
13.6 and 14.0's source):

- A host array (a plain `numpy.ndarray`) given to a ufunc, an `xp` function, an FFT, a filter or
  a fused kernel, also inside a tuple or list, raises TypeError, as CuPy does ("Unsupported
  type"); so does a list given to a ufunc or a kernel. `xp.copyto` from a host array raises
  ValueError, as CuPy does. Only `xp.asarray` and its kin take host data (and `xp.ix_`, which
  uploads too): an upload (host-to-device copy), recorded with its size.
- Assigning a host array through an integer-array index is an upload, recorded; through any other
  index it raises ValueError, as CuPy refuses it. A host index array is an upload, recorded.
- A reduction or a full index gives a 0-d device array, not a host number, as CuPy does. Reading
  one (`float`, `int`, `bool` as in `if`, `item`, `tolist`, printing) is a device-to-host copy and
  a wait on CuPy: recorded as a read. So is indexing with a boolean mask (CuPy counts the mask's
  true cells on the host first).
- `Backend.to_host` takes its GPU branch (`array.get(out=...)`, with CuPy's checks on `out`):
  recorded as a copy, with its size and whether `out` is page-locked ("get() into page-locked
  memory": inside a region given to `Backend.pin_host_memory` or made by `host_mapped_array`,
  as on CuPy; otherwise "get() into pageable memory", which CUDA stages through a bounce buffer).
  Pinning a region that overlaps a pinned one, or unpinning twice, raises, as CUDA refuses both.
  `Backend.synchronize` is recorded as a wait.
- Every new device array (from a function, a ufunc or a method such as `astype`) is counted in
  `DEVICE_POOL` while it lives, and uploads copy, as CuPy's do. Inside `device_memory_limit(n)`
  an allocation past n bytes raises MemoryError, as CuPy's capped pool does (the daemon's
  --max-vram-mb); `DEVICE_POOL.failing_allocation` makes one chosen allocation raise.
- A numpy function called on a device array (`np.` where `backend.xp.` was meant): recorded.
- `ndimage.gaussian_filter` (and `gaussian_filter1d`) is recorded as the weight uploads CuPy's
  makes on every call.
- A 0-d device array given to a fused kernel as a number raises TypeError (CuPy would pass its
  address where the kernel expects the value).

- Every call that makes CuPy build a kernel of its own the first time it sees a new variant is
  noted in `COMPILED_VARIANTS`, by variant: a `cupyx.scipy.ndimage` function (its kernels are
  generated per weight length, filter size, mode, dtype and rank, zoom also per output shape),
  an integer-array index (`_take`/`_scatter` kernels per dtype) and `xp.take`. A variant seen
  for the first time after the first frame is a compile (NVRTC, or a disk-cache load) inside
  the stream.
- Every device operation CuPy would issue is counted in `DEVICE_OPERATIONS` (the launch budget):
  a ufunc call (reductions too), an xp function that makes a new array or writes into one
  (`empty`, `empty_like` and views excepted), an FFT or a filter (one each, although cuFFT may
  split an FFT in two or three kernels), an assignment into a device array, a copy method
  (`astype`, `copy`), an upload, a read, a `get()` and a fused kernel launch.

`is_gpu` is True, so the package takes its GPU branches (batched inverse FFT, no FFT workers,
`take` without clipping, `get` for copies). Mapped host memory (`host_mapped_array`) is a host
array and a DeviceArray over the same bytes. Crossings are recorded only inside `watch()`; the
errors are raised always. What this cannot see: `numpy.asarray(device_array)` and
`numpy.float32(device_scalar)` (numpy views its own subclass without asking; CuPy raises),
anything about speed or memory, and CuPy's own functions' corner cases: those are the
`gpu`-marked tests' job.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
import traceback
import weakref
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
from host_cuda import HostKernelCompiler

from ca_server.fused import KernelSource
from ca_server.xp import Backend, numpy_backend

UPLOADING_FUNCTIONS = frozenset({"asarray", "array", "ascontiguousarray", "asanyarray", "ix_"})
# cupyx.scipy.ndimage filters that build their weights with numpy and upload them on every call
# (`_gaussian_kernel1d` in cupyx/scipy/ndimage/_filters.py, CuPy 13.6 and 14.2; gaussian_filter
# uploads once per axis in 14). Each call is recorded as those uploads, float64 weights of 4 sigma.
WEIGHT_UPLOADING_FILTERS = frozenset({"gaussian_filter", "gaussian_filter1d"})
# These read only the shape and dtype of their first argument, wherever it lives.
SHAPE_ONLY_FUNCTIONS = frozenset({"empty_like", "zeros_like", "ones_like", "full_like"})


@dataclasses.dataclass(frozen=True)
class Crossing:
    """One host/device crossing: `kind` is "copy", "read", "upload", "wait" or "numpy call"."""

    kind: str
    what: str  # e.g. "float()", "xp.asarray", "numpy.mean", "get()"
    where: str  # the innermost ca_server frame that made it, "path:line"
    nbytes: int = 0  # bytes moved, for copies and uploads

    def __str__(self) -> str:
        size = f" {self.nbytes} bytes" if self.nbytes else ""
        return f"{self.kind} {self.what}{size} at {self.where}"


class CrossingLog:
    """The crossings made while `watching` (a list per `watch()` block)."""

    def __init__(self) -> None:
        self.watching: list[Crossing] | None = None

    def record(self, kind: str, what: str, nbytes: int = 0) -> None:
        if self.watching is not None:
            self.watching.append(Crossing(kind, what, _package_frame(), nbytes))


CROSSINGS = CrossingLog()


class OperationCount:
    """Device operations issued so far (see the module docstring); with `sites` a Counter, each
    operation's "what at path:line" is counted there too (slow: it reads the stack)."""

    def __init__(self) -> None:
        self.total = 0
        self.sites: collections.Counter[str] | None = None

    def add(self, what: str) -> None:
        self.total += 1
        if self.sites is not None:
            self.sites[f"{what} at {_package_frame()}"] += 1


DEVICE_OPERATIONS = OperationCount()


class CompiledVariants:
    """The variants of CuPy's self-compiling calls seen so far, each with the package line that
    first made it (see the module docstring)."""

    def __init__(self) -> None:
        self.first_sites: dict[str, str] = {}

    def note(self, variant: str) -> None:
        if variant not in self.first_sites:
            self.first_sites[variant] = _package_frame()

    def new_since(self, seen: set[str]) -> list[str]:
        """`variant at path:line` for each variant not in `seen`."""
        return [f"{v} at {site}" for v, site in self.first_sites.items() if v not in seen]


COMPILED_VARIANTS = CompiledVariants()
# xp functions that allocate without writing: no kernel.
NON_LAUNCHING_FUNCTIONS = frozenset({"empty", "empty_like"})


class PageLockedRanges:
    """The host address ranges [start, end) page-locked through the backend."""

    def __init__(self) -> None:
        self._ranges: set[tuple[int, int]] = set()

    def pin(self, region: np.ndarray) -> tuple[int, int]:
        start = region.ctypes.data
        span = (start, start + region.nbytes)
        if any(s < span[1] and span[0] < e for s, e in self._ranges):
            raise RuntimeError("cudaErrorHostMemoryAlreadyRegistered: part of it is pinned already")
        self._ranges.add(span)
        return span

    def unpin(self, span: tuple[int, int]) -> None:
        if span not in self._ranges:
            raise RuntimeError("cudaErrorHostMemoryNotRegistered: unpinned twice")
        self._ranges.remove(span)

    def holds(self, region: np.ndarray) -> bool:
        start = region.ctypes.data
        return any(s <= start and start + region.nbytes <= e for s, e in self._ranges)


PAGE_LOCKED = PageLockedRanges()


class DevicePool:
    """The bytes of device arrays alive, as CuPy's memory pool would count them; with `limit`
    set, an allocation that would pass it raises MemoryError, as CuPy's pool does past its
    `set_limit` (OutOfMemoryError, a MemoryError)."""

    def __init__(self) -> None:
        self.used_bytes = self.peak_bytes = 0  # the peak since the last `reset_peak`
        self.cache_frees = 0  # calls of Backend.free_cached_memory
        self.limit_bytes: int | None = None
        self.allocations = 0  # made so far
        self.failing_allocation: int | None = None  # the allocation number that will raise
        self.sites: list[str] | None = None  # when a list, each allocation's package line

    def reset_peak(self) -> None:
        self.peak_bytes = self.used_bytes

    def allocate(self, array: np.ndarray) -> None:
        """Count `array` (a new host array standing for device memory) until it is freed."""
        nbytes = array.nbytes
        self.allocations += 1
        if self.limit_bytes is not None and self.used_bytes + nbytes > self.limit_bytes:
            raise MemoryError(
                f"device pool limit: {nbytes} bytes asked with {self.used_bytes} in use, "
                f"limit {self.limit_bytes}"
            )
        if self.allocations == self.failing_allocation:
            raise MemoryError(f"device pool: allocation {self.allocations} made to fail")
        if self.sites is not None:
            self.sites.append(_package_frame())
        self.used_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.used_bytes)
        weakref.finalize(array, self._release, nbytes)

    def _release(self, nbytes: int) -> None:
        self.used_bytes -= nbytes


DEVICE_POOL = DevicePool()


@contextlib.contextmanager
def device_memory_limit(limit_bytes: int) -> Iterator[DevicePool]:
    """Inside the block, device allocations past `limit_bytes` in use raise MemoryError."""
    DEVICE_POOL.limit_bytes = limit_bytes
    try:
        yield DEVICE_POOL
    finally:
        DEVICE_POOL.limit_bytes = None


@contextlib.contextmanager
def watch() -> Iterator[list[Crossing]]:
    """Record the crossings made inside the block into the list it yields."""
    crossings: list[Crossing] = []
    outer, CROSSINGS.watching = CROSSINGS.watching, crossings
    try:
        yield crossings
    finally:
        CROSSINGS.watching = outer


class DeviceArray(np.ndarray):
    """A numpy array standing in for a CuPy array (see the module docstring for the rules)."""

    def __array_finalize__(self, source: Any) -> None:
        if self.base is None:  # a new array from a method (astype, copy, ...), not a view
            DEVICE_POOL.allocate(self)
            DEVICE_OPERATIONS.add("array method copy")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return _device_ufunc_call(ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        CROSSINGS.record("numpy call", f"numpy.{func.__name__}")
        DEVICE_OPERATIONS.add(f"numpy.{func.__name__}")
        return _on_device(func(*_host_views(args), **_host_views(kwargs)))

    def __getitem__(self, key: Any) -> Any:
        if _is_integer_array_index(key):
            COMPILED_VARIANTS.note(f"integer-array index read of {self.dtype}")
        return _on_device(np.ndarray.__getitem__(self.view(np.ndarray), _device_index(key)))

    def __setitem__(self, key: Any, value: Any) -> None:
        if _holds_host_ndarray(value):
            if not _is_integer_array_index(key):
                raise ValueError(
                    "assigning a host ndarray into a device array: CuPy refuses it (non-scalar "
                    "numpy.ndarray cannot be used for fill); upload it with xp.asarray"
                )
            CROSSINGS.record("upload", "assignment", np.asarray(value).nbytes)
        DEVICE_OPERATIONS.add("assignment")
        if _is_integer_array_index(key):
            COMPILED_VARIANTS.note(f"integer-array index write of {self.dtype}")
        np.ndarray.__setitem__(self.view(np.ndarray), _device_index(key), _host_views(value))

    def get(
        self,
        stream: Any = None,
        order: str = "C",
        out: np.ndarray | None = None,
        blocking: bool = True,
    ) -> Any:
        """CuPy's copy to the host, with its checks: into `out` (a host array of this array's
        shape and dtype, C-contiguous) when given."""
        host = self.view(np.ndarray)
        DEVICE_OPERATIONS.add("get()")
        if out is None:
            CROSSINGS.record("copy", "get()", self.nbytes)
            return host.copy(order=order)
        memory = "page-locked" if PAGE_LOCKED.holds(out) else "pageable"
        CROSSINGS.record("copy", f"get() into {memory} memory", self.nbytes)
        if type(out) is not np.ndarray:
            raise TypeError("get(out=...) takes a host (numpy) array")
        if out.dtype != self.dtype:
            raise TypeError(f"get(out=...) has dtype {out.dtype}, the array {self.dtype}")
        if out.shape != self.shape:
            raise ValueError(f"get(out=...) has shape {out.shape}, the array {self.shape}")
        if not out.flags.c_contiguous:
            raise RuntimeError("get(out=...) must be contiguous")
        np.copyto(out, host)
        return out

    def _read(self, what: str) -> np.ndarray:
        CROSSINGS.record("read", what)
        DEVICE_OPERATIONS.add(what)
        return self.view(np.ndarray)

    def __float__(self) -> float:
        return float(self._read("float()"))

    def __int__(self) -> int:
        return int(self._read("int()"))

    def __index__(self) -> int:
        return self._read("index").__index__()

    def __bool__(self) -> bool:
        return bool(self._read("bool()"))

    def item(self, *args: Any) -> Any:
        return self._read("item()").item(*args)

    def tolist(self) -> Any:
        return self._read("tolist()").tolist()

    def __repr__(self) -> str:
        return f"DeviceArray({np.ndarray.__repr__(self._read('repr()'))})"

    def __str__(self) -> str:
        return str(self._read("str()"))

    def __format__(self, spec: str) -> str:
        return format(self._read("format()"), spec)


def _device_ufunc_call(ufunc: Any, method: str, inputs: Any, kwargs: dict[str, Any]) -> Any:
    name = f"numpy.{ufunc.__name__}"
    _reject_host_operands(inputs, name)
    DEVICE_OPERATIONS.add(name if method == "__call__" else f"{name}.{method}")
    if "out" in kwargs:
        out = kwargs["out"] if isinstance(kwargs["out"], tuple) else (kwargs["out"],)
        _reject_host_operands(out, name)
        kwargs["out"] = tuple(_host_views(value) for value in out)
    return _on_device(getattr(ufunc, method)(*_host_views(inputs), **kwargs))


class DeviceUfunc:
    """A numpy ufunc reached as `xp.<name>`: its operands must be on the device, as in CuPy."""

    def __init__(self, ufunc: np.ufunc) -> None:
        self._ufunc = ufunc

    def __call__(self, *inputs: Any, **kwargs: Any) -> Any:
        return _device_ufunc_call(self._ufunc, "__call__", inputs, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ufunc, name)


def _package_frame() -> str:
    """`path:line` of the innermost stack frame in ca_server (or in bench/), for messages."""
    for frame in reversed(traceback.extract_stack()):
        if "/ca_server/" in frame.filename or "/bench/" in frame.filename:
            return f"{frame.filename.rsplit('/ca_server/', 1)[-1]}:{frame.lineno}"
    return "outside the package"


def _holds_host_ndarray(value: Any) -> bool:
    """A plain numpy array in `value`, or in a tuple, list or dict inside it."""
    if type(value) is np.ndarray:
        return True
    if isinstance(value, list | tuple):
        return any(_holds_host_ndarray(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_host_ndarray(item) for item in value.values())
    return False


def _reject_host_operands(values: Any, name: str) -> None:
    """A ufunc's or a kernel's operands: no host array, no list (CuPy takes neither)."""
    for value in values:
        if type(value) is np.ndarray or isinstance(value, list):
            _raise_host_array(name, value)


def _raise_host_array(name: str, value: Any) -> None:
    raise TypeError(
        f"{name} got a host {type(value).__name__} beside device arrays; CuPy raises "
        "TypeError here: upload it once with xp.asarray"
    )


def _is_integer_array_index(key: Any) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, np.ndarray) and k.dtype.kind in "iu" for k in keys)


def _device_index(key: Any) -> Any:
    keys = key if isinstance(key, tuple) else (key,)
    for k in keys:
        if isinstance(k, DeviceArray) and k.dtype == np.bool_:
            CROSSINGS.record("read", "boolean mask index")
        elif type(k) is np.ndarray or isinstance(k, list):
            CROSSINGS.record("upload", "host index array", np.asarray(k).nbytes)
    return _host_views(key)


def _host_views(value: Any) -> Any:
    if isinstance(value, DeviceArray):
        return value.view(np.ndarray)
    if isinstance(value, list | tuple):
        return type(value)(_host_views(item) for item in value)
    if isinstance(value, dict):
        return {key: _host_views(item) for key, item in value.items()}
    return value


def _on_device(value: Any) -> Any:
    """numpy's results as CuPy's: arrays and scalars become DeviceArrays (scalars 0-d); a new
    array (one that owns its memory) is an allocation from the device pool."""
    if type(value) is np.ndarray:
        if value.base is None:
            DEVICE_POOL.allocate(value)
        return value.view(DeviceArray)
    if isinstance(value, np.generic):
        return np.asarray(value).view(DeviceArray)
    if isinstance(value, tuple | list):
        return type(value)(_on_device(item) for item in value)
    return value


class CudaEventTiming:
    """`cupy.cuda`'s event timing, which bench/bench_sim.py's stage timer uses, on the host clock:
    an event holds the time it was recorded at; waiting for one is recorded as a wait."""

    class Event:
        def __init__(
            self, block: bool = False, disable_timing: bool = False, interprocess: bool = False
        ) -> None:
            self.recorded_at: float | None = None

        def record(self, stream: Any = None) -> None:
            self.recorded_at = time.perf_counter()

        def synchronize(self) -> None:
            CROSSINGS.record("wait", "Event.synchronize()")

    @staticmethod
    def get_elapsed_time(start_event: Event, end_event: Event) -> float:
        """Milliseconds from `start_event` to `end_event`; CUDA refuses an unrecorded event."""
        if start_event.recorded_at is None or end_event.recorded_at is None:
            raise RuntimeError("cudaErrorInvalidResourceHandle: an event was never recorded")
        return (end_event.recorded_at - start_event.recorded_at) * 1e3


class DeviceModule:
    """numpy, scipy.fft or scipy.ndimage with CuPy's boundary: takes and returns DeviceArrays.

    `extras` are attributes numpy lacks and CuPy has (the array module's `cuda`)."""

    def __init__(
        self, module: ModuleType, prefix: str, extras: dict[str, Any] | None = None
    ) -> None:
        self._module, self._prefix, self._extras = module, prefix, extras or {}

    def __getattr__(self, name: str) -> Any:
        if name in self._extras:
            return self._extras[name]
        attribute = getattr(self._module, name)
        if isinstance(attribute, ModuleType):
            return DeviceModule(attribute, f"{self._prefix}.{name}")
        if isinstance(attribute, np.ufunc):
            return DeviceUfunc(attribute)
        if not callable(attribute) or isinstance(attribute, type):
            return attribute  # dtypes, constants
        qualified = f"{self._prefix}.{name}"

        def call(*args: Any, **kwargs: Any) -> Any:
            if name in WEIGHT_UPLOADING_FILTERS and self._prefix == "ndimage":
                image, sigma = args[0], float(args[1] if len(args) > 1 else kwargs["sigma"])
                weights_bytes = 8 * (2 * int(4.0 * sigma + 0.5) + 1)
                for _ in range(image.ndim if name == "gaussian_filter" else 1):
                    CROSSINGS.record("upload", f"{qualified} weights", weights_bytes)
            if name in UPLOADING_FUNCTIONS:
                for value in args:
                    if type(value) is np.ndarray:
                        CROSSINGS.record("upload", qualified, value.nbytes)
                # The device copy never aliases the host array, as on CuPy.
                args = tuple(v.copy() if type(v) is np.ndarray else v for v in args)
            elif name == "copyto" and len(args) > 1 and type(args[1]) is np.ndarray:
                raise ValueError("non-scalar numpy.ndarray cannot be used for copyto (CuPy)")
            elif name not in SHAPE_ONLY_FUNCTIONS and _holds_host_ndarray((args, kwargs)):
                values = (*args, *kwargs.values())
                _raise_host_array(qualified, next(v for v in values if _holds_host_ndarray(v)))
            if self._prefix == "ndimage" or qualified == "xp.take":
                COMPILED_VARIANTS.note(_variant(qualified, args, kwargs))
            result = attribute(*_host_views(args), **_host_views(kwargs))
            if _is_an_operation(self._prefix, name, result, kwargs):
                DEVICE_OPERATIONS.add(qualified)
            return _on_device(result)

        return call


def _variant(qualified: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A self-compiling call as its variant: arrays by dtype and shape, everything else by value."""

    def describe(value: Any) -> str:
        # An image's sizes are read at run time (only its rank is compiled in), except by zoom,
        # whose kernel bakes in the output shape; a 1-D array (weights) by its length.
        if isinstance(value, np.ndarray) and (value.ndim == 1 or qualified == "ndimage.zoom"):
            return f"{value.dtype}{list(value.shape)}"
        if isinstance(value, np.ndarray):
            return f"{value.dtype} {value.ndim}-d"
        return repr(value)

    described = [describe(v) for v in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
    return f"{qualified}({', '.join(described)})"


def _is_an_operation(prefix: str, name: str, result: Any, kwargs: dict[str, Any]) -> bool:
    """Whether a DeviceModule call would launch work on CuPy: every FFT and filter; an xp
    function that writes (copyto, `out=`) or returns an array of its own (not a view, not empty)."""
    if prefix != "xp":
        return True
    if name == "copyto" or "out" in kwargs:
        return True
    if name in NON_LAUNCHING_FUNCTIONS:
        return False
    results = result if isinstance(result, tuple | list) else (result,)
    return any(isinstance(item, np.ndarray) and item.base is None for item in results)


class BoundaryKernelCompiler(HostKernelCompiler):
    """Host-compiled fused kernels that take device arrays only, as CuPy's launches do."""

    def compile(self, source: KernelSource) -> Any:
        launch = super().compile(source)

        def checked_launch(n: int, *args: Any) -> None:
            name = f"fused kernel {source.name}"
            _reject_host_operands(args, name)
            DEVICE_OPERATIONS.add(name)
            for value in args:
                if isinstance(value, DeviceArray) and value.ndim == 0:
                    raise TypeError(f"{name} got a 0-d device array where a number is expected")
            launch(n, *_host_views(args))

        return checked_launch


@dataclasses.dataclass(frozen=True)
class DeviceBoundaryBackend(Backend):
    """The fused CPU backend behind CuPy's boundary rules; GPU branches taken (`is_gpu`)."""

    @property
    def is_gpu(self) -> bool:
        return True

    def synchronize(self) -> None:
        CROSSINGS.record("wait", "synchronize()")

    def host_mapped_array(self, shape: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, Any]:
        host = np.zeros(shape, dtype)
        weakref.finalize(host, PAGE_LOCKED.unpin, PAGE_LOCKED.pin(host))  # freed with it
        return host, host.view(DeviceArray)

    def pin_host_memory(self, region: np.ndarray) -> Any:
        span = PAGE_LOCKED.pin(region)
        return lambda: PAGE_LOCKED.unpin(span)

    def memory_in_use_bytes(self) -> int:
        return DEVICE_POOL.used_bytes

    def free_cached_memory(self) -> None:
        DEVICE_POOL.cache_frees += 1  # nothing is cached here; counted for the tests


def device_boundary_backend() -> DeviceBoundaryBackend:
    """The numpy backend (one FFT worker) with DeviceArray modules and host-compiled fused
    kernels that check their operands: the GPU path's code on the CPU, behind CuPy's rules."""
    import scipy.fft
    import scipy.ndimage

    numpy = numpy_backend(fft_workers=1)
    fields = {field.name: getattr(numpy, field.name) for field in dataclasses.fields(numpy)}
    fields.update(
        xp=DeviceModule(np, "xp", extras={"cuda": CudaEventTiming}),
        fft=DeviceModule(scipy.fft, "fft"),
        ndimage=DeviceModule(scipy.ndimage, "ndimage"),
        kernel_compiler=BoundaryKernelCompiler(),
    )
    return DeviceBoundaryBackend(**fields)
