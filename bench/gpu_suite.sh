#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go, with its logs kept: the `gpu`-marked tests and the
# GPU benchmarks whose tables go into BENCHMARKS.md ("GPU speed"). Run it from the repository root
# on the GPU machine: `bash bench/gpu_suite.sh [RESULTS_DIR]` (default gpu-results/). It writes
# machine.txt (GPU, driver, CuPy, commit, date) and one log per step there, goes on after a failing
# step so that the later steps' numbers still come back, and exits non-zero if any step failed.
#
# Needs CuPy for the machine's CUDA plus numpy, scipy, msgpack, typer, pillow, pytest and, for the
# daemon benchmark, pyzmq; the package itself is found through PYTHONPATH (no install, so it runs
# on a machine without a package index). Tunables: PYTHON (default python3); SIZES (1024 2048);
# FRAMES (200, per preset and size in bench_sim).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
SIZES="${SIZES:-1024 2048}"
FRAMES="${FRAMES:-200}"
RESULTS_DIR="${1:-gpu-results}"
mkdir -p "$RESULTS_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
failed=()

# step NAME COMMAND...: run COMMAND, its output to the terminal and to RESULTS_DIR/NAME.log.
step() {
    local name=$1
    shift
    echo "== $name: $*"
    if "$@" 2>&1 | tee "$RESULTS_DIR/$name.log"; then
        echo "== $name: ok"
    else
        echo "== $name: FAILED (exit ${PIPESTATUS[0]})"
        failed+=("$name")
    fi
}

{
    date -u +%Y-%m-%dT%H:%MZ
    git rev-parse --short HEAD 2>/dev/null || echo "commit unknown"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    "$PYTHON" -c 'import cupy; print("cupy", cupy.__version__, "CUDA runtime",
        cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())'
} 2>&1 | tee "$RESULTS_DIR/machine.txt" || true  # a missing tool is in the log; go on

# The CPU-side checks first: the kernels under this machine's NVRTC, the CUDA libraries imported.
step cpu_checks "$PYTHON" -m pytest -q -rs tests/ca/test_nvrtc.py tests/ca/test_cuda_libraries.py \
    -p no:cacheprovider
step gpu_tests "$PYTHON" -m pytest -q -rs -m gpu tests/ca -p no:cacheprovider
if grep -q " skipped" "$RESULTS_DIR/gpu_tests.log"; then  # skipped here means no usable GPU
    echo "== gpu_tests: FAILED after all: tests were skipped (reasons in the log)"
    failed+=(gpu_tests)
fi
# After frames of every engine: only the runtime, NVRTC and cuFFT (and the driver) are loaded,
# nothing of cuBLAS, cuSPARSE, cuSOLVER or cuRAND (pyproject's `gpu` extra installs none of them).
step cuda_libraries "$PYTHON" -c '
import numpy as np
from ca_server.simulation import Simulation
from ca_server.xp import cupy_backend
backend = cupy_backend()
for preset in ("coral", "sl_gliders", "mnca_worm", "medusa"):
    sim = Simulation(backend, width=256, height=256, preset=preset, seed=1)
    for _ in range(30):
        sim.next_frame(host_out=np.empty((256, 256, 3), np.uint8))
mapped = sorted({line.split()[-1].rsplit("/", 1)[-1] for line in open("/proc/self/maps")
                 if "libcu" in line or "libnv" in line})
print("CUDA libraries mapped:", " ".join(mapped))
left_out = [lib for lib in mapped if lib.startswith(("libcublas", "libcusparse", "libcusolver",
                                                     "libcurand"))]
assert not left_out, f"loaded although the gpu extra does not install them: {left_out}"
'
# shellcheck disable=SC2086  # SIZES is a list of numbers, split on purpose
step bench_sim "$PYTHON" bench/bench_sim.py --backend cupy --sizes $SIZES --frames "$FRAMES"
step bench_memory "$PYTHON" bench/bench_memory.py --backend cupy --sizes 1024
step bench_daemon "$PYTHON" bench/bench_daemon.py --backend cupy --sizes 1024 --fps 30 2000

if ((${#failed[@]})); then
    echo "gpu_suite: failed: ${failed[*]} (logs in $RESULTS_DIR/)" >&2
    exit 1
fi
echo "gpu_suite: every step passed (logs in $RESULTS_DIR/)"
