"""Every fused kernel compiles with NVRTC as CuPy would compile it, for the GPUs we deploy on.

No GPU needed: NVRTC is a library (the `nvidia-cuda-nvrtc-cu12` wheel, ~90 MB, in the test
extra), loaded here with ctypes. Each kernel is compiled with the options CuPy 14 gives a
`RawModule(code=..., options=("--std=c++17",))` (cupy/_core/core.pyx
`assemble_cupy_compiler_options`, cupy/cuda/compiler.py `_compile_with_cache_cuda` and
`_compile_using_nvrtc_no_warning`): `--std=c++17`, `-ftz=true`,
`--device-as-default-execution-space` and `-arch=sm_XX` (CuPy asks NVRTC for a cubin when NVRTC
knows the GPU), for sm_80 (A100), sm_90 (H100/H200) and sm_120 (RTX 50 / B-series). Left out:
CuPy's `-I` folders (its own headers, CCCL and the CUDA runtime's; the kernels include nothing,
and an `#include` of a C library header fails there too: neither folder has one) and `--pch`
(a compile-time cache, no effect on the code).

A kernel fails on a compile error, a spill (ptxas's `-v` report of the cubin), more registers
than REGISTER_CAP (the most today is 40, bloom_downsample; kernels are launched with 256 threads
a block, and 48 registers still keep 5 such blocks resident per SM), or any double-precision
instruction (`.f64` in the PTX from `-arch=compute_XX`): a double on a consumer GPU runs at 1/64
the float rate, and the frame is float32 throughout. `test_the_check_rejects_*` plant the bugs
this exists for and show that each is refused.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import ca_server.render  # registers the renderer's and the flow's kernels
import ca_server.simulation  # noqa: F401 - registers the engines', health's and crossfade's
from ca_server.engines.lenia import LENIA_UPDATE
from ca_server.fused import KERNEL_SOURCES, PRELUDE

ARCHITECTURES = ("80", "90", "120")
REGISTER_CAP = 48
CUPY_OPTIONS = ("--std=c++17", "-ftz=true", "--device-as-default-execution-space")


def _nvrtc_library_path() -> Path | None:
    """libnvrtc.so.12 from $CA_NVRTC_LIBRARY, else from the nvidia-cuda-nvrtc-cu12 wheel."""
    if os.environ.get("CA_NVRTC_LIBRARY"):
        return Path(os.environ["CA_NVRTC_LIBRARY"])
    try:
        spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    except ModuleNotFoundError:
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "lib" / "libnvrtc.so.12"
        if path.exists():
            return path
    return None


NVRTC_PATH = _nvrtc_library_path()
pytestmark = pytest.mark.skipif(
    NVRTC_PATH is None, reason="NVRTC is not installed (pip install nvidia-cuda-nvrtc-cu12)"
)


@dataclass(frozen=True)
class Compiled:
    """One kernel compiled for one architecture: what the checks read."""

    log: str  # NVRTC's log of the cubin compile, with ptxas's -v report
    ptx: str  # the PTX of the same source for compute_XX

    def registers(self) -> int:
        found = re.findall(r"Used (\d+) registers", self.log)
        assert found, f"no register count in ptxas's report:\n{self.log}"
        return max(int(count) for count in found)

    def spilled_bytes(self) -> int:
        counts = re.findall(r"(\d+) bytes spill (?:stores|loads)", self.log)
        assert counts, f"no spill report from ptxas:\n{self.log}"
        return sum(int(count) for count in counts)

    def double_instructions(self) -> list[str]:
        return [line.strip() for line in self.ptx.splitlines() if ".f64" in line]


class Nvrtc:
    """The few NVRTC calls a compile needs, through ctypes."""

    def __init__(self, path: Path) -> None:
        self._lib = ctypes.CDLL(str(path))
        self._lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self._lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)))
        return major.value, minor.value

    def compile(
        self, code: str, name: str, architecture: str, extra_options: tuple[str, ...] = ()
    ) -> Compiled:
        """`code` compiled to a cubin for sm_`architecture` (log) and to PTX (text)."""
        cubin_options = (f"-arch=sm_{architecture}", "--ptxas-options=-v", *extra_options)
        log, cubin_size = self._compile(code, name, (*CUPY_OPTIONS, *cubin_options))
        assert cubin_size > 0, f"{name}: NVRTC made no cubin for sm_{architecture}"
        _, ptx = self._compile(code, name, (*CUPY_OPTIONS, f"-arch=compute_{architecture}"))
        return Compiled(log=log, ptx=ptx)

    def _compile(self, code: str, name: str, options: tuple[str, ...]) -> tuple[str, object]:
        program = ctypes.c_void_p()
        self._check(
            self._lib.nvrtcCreateProgram(
                ctypes.byref(program), code.encode(), f"{name}.cu".encode(), 0, None, None
            )
        )
        try:
            encoded = [option.encode() for option in options]
            array = (ctypes.c_char_p * len(encoded))(*encoded)
            result = self._lib.nvrtcCompileProgram(program, len(encoded), array)
            size = ctypes.c_size_t()
            self._check(self._lib.nvrtcGetProgramLogSize(program, ctypes.byref(size)))
            log = ctypes.create_string_buffer(size.value)
            self._check(self._lib.nvrtcGetProgramLog(program, log))
            log_text = log.value.decode(errors="replace")
            if result:
                raise CompileError(f"NVRTC rejected {name} ({' '.join(options)}):\n{log_text}")
            if any(option.startswith("-arch=sm_") for option in options):
                self._check(self._lib.nvrtcGetCUBINSize(program, ctypes.byref(size)))
                return log_text, size.value
            self._check(self._lib.nvrtcGetPTXSize(program, ctypes.byref(size)))
            ptx = ctypes.create_string_buffer(size.value)
            self._check(self._lib.nvrtcGetPTX(program, ptx))
            return log_text, ptx.value.decode()
        finally:
            self._lib.nvrtcDestroyProgram(ctypes.byref(program))

    def _check(self, result: int) -> None:
        if result:
            raise RuntimeError(f"NVRTC call failed: {self._lib.nvrtcGetErrorString(result)}")


class CompileError(AssertionError):
    pass


def kernel_problems(
    nvrtc: Nvrtc,
    code: str,
    name: str,
    architecture: str,
    extra_options: tuple[str, ...] = (),
    register_cap: int = REGISTER_CAP,
) -> list[str]:
    """What is wrong with kernel `name` in `code` on sm_`architecture`; [] when nothing is."""
    try:
        compiled = nvrtc.compile(code, name, architecture, extra_options)
    except CompileError as error:
        return [str(error)]
    problems = []
    if compiled.spilled_bytes():
        problems.append(f"spills {compiled.spilled_bytes()} bytes:\n{compiled.log}")
    if compiled.registers() > register_cap:
        problems.append(f"uses {compiled.registers()} registers (cap {register_cap})")
    doubles = compiled.double_instructions()
    if doubles:
        problems.append(f"{len(doubles)} .f64 instructions, e.g. {doubles[:3]}")
    return problems


@pytest.fixture(scope="module")
def nvrtc() -> Nvrtc:
    assert NVRTC_PATH is not None
    compiler = Nvrtc(NVRTC_PATH)
    assert compiler.version() >= (12, 8), "sm_120 needs NVRTC 12.8 or newer"
    return compiler


def test_every_product_kernel_is_checked():
    assert len(KERNEL_SOURCES) >= 17, [source.name for source in KERNEL_SOURCES]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("source", KERNEL_SOURCES, ids=lambda source: source.name)
def test_kernel_compiles_without_spills_or_doubles(nvrtc, source, architecture):
    assert kernel_problems(nvrtc, source.full_code, source.name, architecture) == []


def test_the_check_rejects_a_c_library_include_in_the_prelude(nvrtc):
    # nvcc and the host harness find math.h; NVRTC has no C library headers: every kernel fails.
    code = "#include <math.h>\n" + LENIA_UPDATE.full_code
    problems = kernel_problems(nvrtc, code, LENIA_UPDATE.name, "90")
    assert len(problems) == 1 and "math.h" in problems[0], problems


def test_the_check_rejects_a_double_literal(nvrtc):
    # `0.5 * mu` is a double: mu is widened, the product and the subtraction run in f64.
    assert "potential[i] - mu;" in LENIA_UPDATE.code
    code = PRELUDE + LENIA_UPDATE.code.replace("potential[i] - mu;", "potential[i] - 0.5 * mu;")
    problems = kernel_problems(nvrtc, code, LENIA_UPDATE.name, "90")
    assert len(problems) == 1 and ".f64 instructions" in problems[0], problems


def test_the_check_rejects_a_spill_and_too_many_registers(nvrtc):
    # ptxas squeezed to 16 registers must spill the widest kernel's live values to memory.
    source = next(source for source in KERNEL_SOURCES if source.name == "bloom_downsample")
    problems = kernel_problems(
        nvrtc, source.full_code, source.name, "90", extra_options=("--maxrregcount=16",)
    )
    assert len(problems) == 1 and problems[0].startswith("spills "), problems
    problems = kernel_problems(nvrtc, source.full_code, source.name, "90", register_cap=16)
    assert len(problems) == 1 and "registers (cap 16)" in problems[0], problems
