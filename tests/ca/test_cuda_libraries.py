"""The GPU backend loads only the CUDA libraries the `gpu` extra installs: runtime, NVRTC, cuFFT.

CuPy 14 loads each CUDA library when a module needing it is imported (cuda.pathfinder, or the
extension module's own link: cupy_backends/cuda/libs/{cublas,curand,cusolver,cusparse,cutensor},
cupyx/_cusolver, cupy/cuda/cufft). No GPU is needed to see which: in a Python with CuPy (this
one, or $CA_CUPY_PYTHON; skipped without either) a child process imports what ca_server.xp
imports for its GPU backend, then reports the CUDA libraries mapped and the library modules
imported, and reads the source of every CuPy function ca_server calls (found in its source:
`xp.`, `fft.`, `ndimage.` names) for a reference to the libraries we leave out, `cupy.linalg`
(cuBLAS, cuSOLVER) or `cupy.random` (cuRAND); e.g. `ndimage.affine_transform` would be flagged.
Kernels themselves (ufuncs, reductions, fused kernels, ndimage filters) are compiled by NVRTC
against the runtime's headers and CuPy's bundled CCCL; CUB reductions are built into CuPy. What
this cannot do without a GPU: run the calls, and so follow their callees (only each function's
own body is read); `bench/gpu_suite.sh` runs them all on a pod that has only these wheels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LEFT_OUT = ("cublas", "cusolver", "cusparse", "curand", "cutensor")
ALLOWED_LIBRARIES = ("libcudart", "libnvrtc", "libcufft", "libnvJitLink", "libcuda.so")


def cupy_python() -> str | None:
    """A Python that imports CuPy: $CA_CUPY_PYTHON, else this one if it can, else None."""
    candidates = [os.environ.get("CA_CUPY_PYTHON", ""), sys.executable]
    for python in filter(None, candidates):
        if shutil.which(python) or Path(python).exists():
            found = subprocess.run(
                [python, "-c", "import cupy"], capture_output=True, timeout=120, check=False
            )
            if found.returncode == 0:
                return python
    return None


def called_cupy_names() -> list[str]:
    """`xp.<name>`, `fft.<name>`, `ndimage.<name>` as ca_server calls them, as cupy paths."""
    modules = {"xp": "cupy", "fft": "cupyx.scipy.fft", "ndimage": "cupyx.scipy.ndimage"}
    found = set()
    for path in (REPO / "ca_server").rglob("*.py"):
        for prefix, name in re.findall(
            r"\b(xp|fft|ndimage)\.([a-z_][a-z_0-9]*)\(", path.read_text()
        ):
            found.add(f"{modules[prefix]}.{name}")
    return sorted(found)


# Run in the child: imports as ca_server.xp's cupy_backend does, then reports.
REPORT = r"""
import inspect, json, sys
import cupy, cupyx.scipy.fft, cupyx.scipy.ndimage
from cupy.cuda import cufft, driver, runtime
left_out, names = sys.argv[1].split(","), sys.argv[2].split(",")
modules = sorted(m for m in sys.modules if m.rsplit(".", 1)[-1].lstrip("_") in left_out)
mapped = sorted({line.split()[-1].rsplit("/", 1)[-1] for line in open("/proc/self/maps")
                 if "libcu" in line or "libnv" in line})
references, missing = {}, []
for name in names:
    module, attribute = name.rsplit(".", 1)
    function = getattr(sys.modules[module], attribute, None)
    if function is None:
        missing.append(name)
        continue
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        continue  # a ufunc or a compiled function: a kernel, built by NVRTC
    hits = [library for library in (*left_out, "linalg", "random") if library in source]
    if hits:
        references[name] = hits
print(json.dumps({"modules": modules, "mapped": mapped, "references": references,
                  "missing": missing}))
"""


def test_the_names_ca_server_calls_are_found():
    names = called_cupy_names()
    assert "cupyx.scipy.fft.rfft2" in names and "cupyx.scipy.ndimage.correlate1d" in names
    assert "cupy.copyto" in names


@pytest.mark.skipif(cupy_python() is None, reason="no Python with CuPy (set CA_CUPY_PYTHON)")
def test_only_the_runtime_nvrtc_and_cufft_are_loaded():
    python = cupy_python()
    assert python is not None
    done = subprocess.run(
        [python, "-c", REPORT, ",".join(LEFT_OUT), ",".join(called_cupy_names())],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["modules"] == [], "library modules imported"
    assert report["references"] == {}, "functions we call that reach a library left out"
    assert report["missing"] == [], "functions ca_server calls that CuPy lacks"
    unexpected = [lib for lib in report["mapped"] if not lib.startswith(ALLOWED_LIBRARIES)]
    assert unexpected == [], report["mapped"]
