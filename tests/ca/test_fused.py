"""Fused kernels: their CUDA C compiles, and the fused path computes what the numpy path does.

Every module that defines a kernel is imported here (ca_server.simulation, ca_server.render).
The fused path runs on the CPU (tests/host_cuda.py compiles each kernel with g++; no GPU in CI);
the `gpu`-marked tests in test_gpu.py run the same comparisons on a real device.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from host_cuda import compiler_available, host_fused_backend, kernel_parameters, nvcc_check

import ca_server.render  # noqa: F401 - registers the renderer's and the flow's kernels
from ca_server.crossfade import CROSSFADE_BLEND
from ca_server.engines import create_engine
from ca_server.fused import KERNEL_SOURCES, KernelSource, kernel_arguments
from ca_server.health import HealthMonitor, policy_for
from ca_server.presets import load_preset, preset_names
from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend

pytestmark = pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")

NVCC = shutil.which("nvcc")
# The kernel each engine's step launches on its fused path.
ENGINE_KERNELS = {
    "lenia": "lenia_update",
    "smoothlife": "smoothlife_update",
    "mnca": "mnca_update",
    "gray_scott": "gray_scott_substep",
}


@pytest.mark.skipif(NVCC is None, reason="the CUDA toolkit (nvcc) is not installed")
@pytest.mark.parametrize("source", KERNEL_SOURCES, ids=lambda source: source.name)
def test_kernel_source_compiles_as_cuda(source):
    nvcc_check(source, NVCC)


@pytest.mark.parametrize("source", KERNEL_SOURCES, ids=lambda source: source.name)
def test_kernel_signature_is_one_the_launch_check_reads(source):
    parameters = kernel_parameters(source)  # raises on a C type with no numpy counterpart
    assert parameters[-1] == ("n", "long long", False)  # the element count every launch appends


def test_kernel_names_are_unique():
    names = [source.name for source in KERNEL_SOURCES]
    assert len(names) == len(set(names)) and names


def test_a_source_must_define_its_kernel():
    with pytest.raises(ValueError, match="does not define"):
        KernelSource("missing", 'extern "C" __global__ void other(const long long n) {}')


def test_kernel_arguments_become_the_declared_c_types():
    array = np.zeros(3, np.float32)
    converted = kernel_arguments((array, 0.5, 3, np.float32(2.0), np.float64(0.25)))
    assert converted[0] is array
    assert type(converted[1]) is np.float32 and converted[1] == np.float32(0.5)
    assert type(converted[2]) is np.int32 and converted[2] == 3
    assert type(converted[3]) is np.float32 and converted[3] == 2.0
    assert type(converted[4]) is np.float32 and converted[4] == 0.25  # numpy maths' float
    with pytest.raises(TypeError, match="int"):
        kernel_arguments((True,))


def test_numpy_backend_has_no_fused_kernels():
    assert numpy_backend().fused_kernel(KERNEL_SOURCES[0]) is None


def test_numpy_backend_runs_one_fft_worker_unless_asked():
    # Issue 25 item 4: a second worker measured 0.75-0.97x per tick on 2 cores (BENCHMARKS.md).
    assert numpy_backend().fft_workers == 1
    assert numpy_backend(fft_workers=2).fft_kwargs() == {"workers": 2}


def test_a_kernel_that_writes_out_of_place_is_run_over_every_element():
    source = KernelSource(
        "test_scale_add",
        r"""
extern "C" __global__ void test_scale_add(
    float* out, const float* in, const float scale, const int offset, const long long n) {
    CA_FOR_EACH(i, n) { out[i] = in[i] * scale + offset + ca_wrap(-1, 5); }
}
""",
    )
    KERNEL_SOURCES.remove(source)  # a test-only kernel: not one of the product's
    launch = host_fused_backend().fused_kernel(source)
    values = np.arange(10, dtype=np.float32)
    out = np.zeros_like(values)
    launch(values.size, out, values, 2.0, 3)
    np.testing.assert_array_equal(out, values * 2 + 3 + 4)
    # What CuPy would pass without complaint and the GPU would read as other bytes is refused.
    with pytest.raises(TypeError, match="out needs a C-contiguous array"):
        launch(5, out[::2], values[::2], 2.0, 3)
    with pytest.raises(TypeError, match="float scale wants float32, got int32"):
        launch(values.size, out, values, 2, 3)
    with pytest.raises(TypeError, match="float \\* in wants float32, got an array of float64"):
        launch(values.size, out, values.astype(np.float64), 2.0, 3)
    with pytest.raises(TypeError, match="int offset wants int32, got an array of int32"):
        launch(values.size, out, values, 2.0, np.array([3], np.int32))
    with pytest.raises(TypeError, match=r"takes 5 arguments \(out, in, scale, offset, n\), got 4"):
        launch(values.size, out, values, 2.0)
    np.testing.assert_array_equal(out, values * 2 + 3 + 4)  # no refused launch ran


@pytest.mark.parametrize("name", preset_names())
def test_engine_steps_match_numpy(name):
    preset = load_preset(name)
    fused_backend = host_fused_backend()
    reference = create_engine(preset.engine, numpy_backend(), 128, 128, preset.engine_params)
    fused = create_engine(preset.engine, fused_backend, 128, 128, preset.engine_params)
    for engine in (reference, fused):
        engine.seed(np.random.default_rng(3), preset.seed_kind, preset.seed_density)
    for _ in range(4):
        reference.step()
        fused.step()
    assert fused_backend.kernel_compiler.launches.get(ENGINE_KERNELS[preset.engine], 0) > 0
    for expected, actual in zip(reference.fields, fused.fields, strict=True):
        # Only rounding differs (glibc's expf against numpy's, a different order of additions
        # in a fused sum), ~1e-6; a threshold rule (MNCA, narrow-band Lenia) may tip a few
        # cells sitting on a threshold, which then differ by up to a step's change.
        difference = np.abs(expected - actual)
        assert (difference > 1e-4).mean() < 0.002, name
        assert difference.max() < 0.2, name


@pytest.mark.parametrize("shape", [(128, 128), (200, 330)])
def test_health_statistics_match_numpy(shape):
    fused_backend = host_fused_backend()
    policy = policy_for("lenia")
    monitors = [HealthMonitor(b, *shape, policy) for b in (numpy_backend(), fused_backend)]
    rng = np.random.default_rng(5)
    world = (rng.random(shape, dtype=np.float32) ** 4).astype(np.float32)
    for steps in (0, 2, 1):
        measured = [(*monitor.measure(world, steps), monitor.peak) for monitor in monitors]
        # Same cells; the sums differ only in the order of float32 additions.
        np.testing.assert_allclose(measured[0], measured[1], rtol=1e-5, equal_nan=True)
        world = np.clip(world + rng.normal(0, 0.01, shape).astype(np.float32), 0, 1)
    assert fused_backend.kernel_compiler.launches == {"health_partials": 3, "health_totals": 3}
    assert measured[1][2] > 0  # activity seen by the fused path after two frames


def test_health_statistics_see_a_nan_world_as_failing():
    monitor = HealthMonitor(host_fused_backend(), 128, 128, policy_for("mnca"))
    world = np.full((128, 128), 0.5, np.float32)
    world[64, 64] = np.nan
    monitor.measure(world, 1)
    assert math.isnan(monitor.mass) and math.isnan(monitor.peak)
    assert monitor.failing()


@pytest.mark.parametrize("weight", [0, 1, 128, 255, 256])
def test_crossfade_blend_is_the_numpy_integer_mix(weight):
    rng = np.random.default_rng(weight)
    old, new = rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    wide_old, wide_new = old.astype(np.uint16), new.astype(np.uint16)
    expected = ((wide_old * (256 - weight) + wide_new * weight) >> 8).astype(np.uint8)
    out = np.empty_like(old)
    host_fused_backend().fused_kernel(CROSSFADE_BLEND)(out.size, out, old, new, weight)
    np.testing.assert_array_equal(out, expected)


def test_a_preset_change_crossfades_through_the_fused_blend(logic_only):
    backend = host_fused_backend()
    sim = Simulation(backend, width=128, height=128, preset="coral", **logic_only)
    sim.change.warmup_steps_per_tick = 1000
    sim.set_preset("amoeba")
    for _ in range(4):
        frame = sim.next_frame()
    assert sim.health()["crossfading"]
    assert backend.kernel_compiler.launches["crossfade_blend"] >= 1
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8


def test_every_kernel_is_compiled_before_the_first_frame():
    # On CuPy a kernel compiles (NVRTC) when first asked for and is cached by source after that;
    # asked for only when an engine is built, the first change to another engine would compile
    # inside its tick. Changes to every other engine then ask only for kernels already built.
    backend = host_fused_backend()
    compiled = backend.kernel_compiler.compiled
    sim = Simulation(backend, width=128, height=128, preset="coral")
    built_before_the_first_frame = set(compiled)
    assert built_before_the_first_frame == {source.name for source in KERNEL_SOURCES}
    for preset in ("sl_gliders", "mnca_worm", "medusa"):
        sim.change.warmup_steps_per_tick = 10**6
        sim.set_preset(preset)
        sim.next_frame()
        while sim.health()["warming"] or sim.health()["crossfading"]:
            sim.next_frame()
        assert sim.preset_name == preset
    assert set(compiled) == built_before_the_first_frame
    assert backend.kernel_compiler.launches["gray_scott_substep"] > 0


# The daemon as `ca-server serve` starts it, in a fresh interpreter so that only what serve itself
# imports is loaded: `run_server` with the host-compiled kernels in place of NVRTC (no GPU here;
# `select_backend` is the one thing replaced), stopped just before its first frame. Then every
# module of the package is imported to list every kernel there is.
SERVE_UNTIL_THE_FIRST_FRAME = """
import importlib, json, pkgutil, sys
import ca_server.cli  # what the `ca-server` console script imports
from ca_server.cli.serve import run_server
import ca_server.xp
from ca_server.config import ServerConfig
from ca_server.server import CAServer
from host_cuda import host_fused_backend

backend = host_fused_backend()
ca_server.xp.select_backend = lambda *_args: backend
built_before_the_first_frame = []

def stop_before_the_first_frame(server):
    built_before_the_first_frame.extend(backend.kernel_compiler.compiled)
    server.stop_requested = True

CAServer._produce_frame = stop_before_the_first_frame
config = ServerConfig(backend="numpy", width=64, height=64, name=sys.argv[1], control=sys.argv[2])
exit_code = int(run_server(config))
for module in pkgutil.walk_packages(ca_server.__path__, "ca_server."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
from ca_server.fused import KERNEL_SOURCES
print(json.dumps({"exit": exit_code, "built": built_before_the_first_frame,
                  "all": [source.name for source in KERNEL_SOURCES]}))
"""


@pytest.mark.subprocess
def test_serve_builds_every_kernel_before_its_first_frame(tmp_path):
    # In serve's import order the renderer's modules were not imported yet when the Simulation
    # asked for "every" kernel, so only 8 of 17 were built: the renderer's compiled (NVRTC on a
    # GPU) inside the first frame, the thickener's inside the first change to tide_pool.
    tests_dir = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVE_UNTIL_THE_FIRST_FRAME,
            f"ca-test-{os.getpid()}",
            f"ipc://{tmp_path}/control",
        ],
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, "PYTHONPATH": str(tests_dir)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["exit"] == 0
    assert len(report["all"]) >= 17
    assert sorted(set(report["built"])) == sorted(report["all"])


@pytest.mark.parametrize("name", ["coral", "sl_gliders", "mnca_worm", "medusa"])
def test_a_nan_in_the_world_stays_visible_to_the_health_monitor(name):
    preset = load_preset(name)
    engines = [
        create_engine(preset.engine, backend, 64, 64, preset.engine_params)
        for backend in (numpy_backend(), host_fused_backend())
    ]
    for engine in engines:
        engine.seed(np.random.default_rng(1), preset.seed_kind, preset.seed_density)
        engine.world[10, 10] = np.nan
        engine.step()
    reference, fused = (np.isnan(engine.world) for engine in engines)
    assert reference.any()
    np.testing.assert_array_equal(fused, reference)
