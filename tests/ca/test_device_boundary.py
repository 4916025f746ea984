"""The GPU frame loop crosses the host/device boundary once per frame: the frame's copy.

Runs the daemon's frame (`Simulation.next_frame` into a host slot) on tests/device_boundary.py's
backend: the fused path on the CPU, with arrays that keep CuPy's boundary rules (no GPU here;
that is what it stands in for). A host array mixed into device work raises TypeError there, as
on CuPy, so these runs also prove the GPU branches never do it; a hidden read of a device value
(`float`, `bool`, ...) or an upload is recorded. The `gpu`-marked tests run the same code on CuPy.
"""

from __future__ import annotations

import collections
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from device_boundary import DEVICE_POOL, Crossing, DeviceArray, device_boundary_backend, watch
from host_cuda import compiler_available

from ca_server.crossfade import CROSSFADE_BLEND
from ca_server.health import Action
from ca_server.organism import REVIVE_CLUSTERS
from ca_server.presets import preset_names
from ca_server.simulation import Simulation

pytestmark = pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")

SIZE = 128
FRAME_BYTES = SIZE * SIZE * 3
FIELD_BYTES = SIZE * SIZE * 4  # one float32 state field
PINNED_COPY = "get() into page-locked memory"  # a fast, direct DMA copy on CUDA


def frames_crossings(
    simulation: Simulation, frames: int, before_frame: Callable[[int], None] | None = None
) -> list[list[Crossing]]:
    """The crossings of each of `frames` daemon frames (next_frame into a page-locked host slot,
    as the daemon's ring slots are)."""
    slot = np.empty((SIZE, SIZE, 3), np.uint8)
    unpin = simulation.backend.pin_host_memory(slot)
    per_frame = []
    try:
        for index in range(frames):
            if before_frame is not None:
                before_frame(index)
            with watch() as crossings:
                simulation.next_frame(host_out=slot)
            per_frame.append(crossings)
    finally:
        unpin()
    return per_frame


def change_crossings(simulation: Simulation, limit: int = 200) -> list[list[Crossing]]:
    """The crossings of each frame until a change has warmed up and crossfaded in."""
    per_frame = frames_crossings(simulation, 1)
    while simulation.health()["warming"] or simulation.health()["crossfading"]:
        assert len(per_frame) < limit, "the change did not land"
        per_frame += frames_crossings(simulation, 1)
    return per_frame


def is_frame_copy(crossing: Crossing) -> bool:
    return crossing == Crossing("copy", PINNED_COPY, crossing.where, FRAME_BYTES)


@pytest.mark.parametrize("name", preset_names())
def test_a_steady_frame_crosses_only_with_its_copy(name: str) -> None:
    simulation = Simulation(device_boundary_backend(), width=SIZE, height=SIZE, preset=name)
    frames_crossings(simulation, 2)  # the first render builds the renderer's tables (uploads)
    for index, crossings in enumerate(frames_crossings(simulation, 20)):
        kinds = [crossing.kind for crossing in crossings]
        # The wait is settle's, after the blocking copy: it finds the device idle.
        assert kinds == ["copy", "wait"] and is_frame_copy(crossings[0]), (
            f"{name}, steady frame {index}: {[str(crossing) for crossing in crossings]}"
        )


def test_a_hue_and_brightness_drag_crosses_only_with_the_frame_copy() -> None:
    """A VJ dragging the hue and brightness sliders changes the colour table every frame; it is
    rebuilt in place on the device, so those frames cross and allocate like steady ones."""
    simulation = Simulation(device_boundary_backend(), width=SIZE, height=SIZE, preset="coral")
    frames_crossings(simulation, 2)
    before = DEVICE_POOL.allocations
    frames_crossings(simulation, 10)
    steady_allocations = DEVICE_POOL.allocations - before

    def drag(index: int) -> None:
        simulation.hue_shift = 0.02 * (index + 1)
        simulation.brightness = 1.0 + 0.05 * (index + 1)

    before = DEVICE_POOL.allocations
    for index, crossings in enumerate(frames_crossings(simulation, 10, drag)):
        kinds = [crossing.kind for crossing in crossings]
        assert kinds == ["copy", "wait"] and is_frame_copy(crossings[0]), (
            f"drag frame {index}: {[str(crossing) for crossing in crossings]}"
        )
    assert DEVICE_POOL.allocations - before == steady_allocations


def test_changes_controls_and_deaths_cross_only_where_they_must() -> None:
    """Preset changes across the four engines, a reseed, live controls and deaths on screen: no
    TypeError (a crash on CuPy), one frame copy per frame (two where a death is redone), and the
    only reads of device values are the warm-up's, off screen and inside its time budget."""
    simulation = Simulation(
        device_boundary_backend(), width=SIZE, height=SIZE, preset="coral", warmup_steps_per_tick=40
    )
    per_frame = frames_crossings(simulation, 2)
    for name in ("medusa", "sl_gliders", "mnca_worm", "tide_pool"):
        simulation.set_preset(name)
        per_frame += change_crossings(simulation)
        assert simulation.showing == name
    simulation.reseed(7)
    per_frame += change_crossings(simulation)
    simulation.hue_shift, simulation.speed, simulation.brightness = 0.3, 2.5, 1.5
    per_frame += frames_crossings(simulation, 5)

    def kill_on_screen(index: int) -> None:
        if index in (3, 20):
            simulation.world[...] = 0.0

    deaths = frames_crossings(simulation, 40, kill_on_screen)
    copies = [sum(is_frame_copy(crossing) for crossing in crossings) for crossings in deaths]
    assert [index for index, count in enumerate(copies) if count != 1] == [3, 20]
    assert copies[3] == copies[20] == 2
    assert simulation.regrowths >= 1
    per_frame += deaths

    crossings = [crossing for frame in per_frame for crossing in frame]
    assert all(is_frame_copy(crossing) for crossing in crossings if crossing.kind == "copy")
    read_places = collections.Counter(
        crossing.where for crossing in crossings if crossing.kind == "read"
    )
    assert read_places and all(place.startswith("warmup.py:") for place in read_places), read_places
    assert not [crossing for crossing in crossings if crossing.kind == "numpy call"]


CLUSTERS_DROPPED = {
    Action.NONE: 0,
    Action.CLUSTER: 1,
    Action.REVIVE: REVIVE_CLUSTERS,
    Action.ERODE: 0,
    Action.PERTURB: 1,
}


@pytest.mark.parametrize("name", ["coral", "sl_gliders", "mnca_worm", "medusa"])
def test_every_health_action_stays_on_the_device_side(name: str) -> None:
    """Each action the health monitor can take, on each engine: nothing raises (a crash on CuPy),
    nothing reads a device value back, and the frame after it makes its one copy. Seed patches
    drawn on the host are uploaded, one upload per cluster of 3-5 seeds; only a full reseed
    uploads whole fields (the perturb's erase mask is drawn on the device)."""
    simulation = Simulation(device_boundary_backend(), width=SIZE, height=SIZE, preset=name)
    frames_crossings(simulation, 2)
    for action in Action:
        with watch() as applied:
            simulation.change.current.apply(action)
        (frame,) = frames_crossings(simulation, 1)
        crossings = applied + frame
        kinds = collections.Counter(crossing.kind for crossing in crossings)
        assert set(kinds) <= {"upload", "copy", "wait"}, (action, [str(c) for c in crossings])
        assert kinds["copy"] == 1 and kinds["wait"] == 1, (action, kinds)
        if action is not Action.RESEED:  # a reseed uploads whole fields; the rest, seed patches
            uploaded = [c.nbytes for c in crossings if c.kind == "upload"]
            assert len(uploaded) == CLUSTERS_DROPPED[action], (action, uploaded)
            assert max(uploaded, default=0) < FIELD_BYTES, (action, uploaded)


def test_bench_sim_copies_every_frame_into_page_locked_memory_as_the_daemon_does() -> None:
    """bench/bench_sim.py's GPU branch (stage times by CUDA events, then the free-running loop)
    runs, and every frame it copies lands in page-locked memory, as in the daemon's ring slots;
    a copy into pageable memory is staged by CUDA and would overstate the copy's cost."""
    path = Path(__file__).resolve().parents[2] / "bench" / "bench_sim.py"
    spec = importlib.util.spec_from_file_location("bench_sim", path)
    assert spec is not None and spec.loader is not None
    bench_sim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_sim)
    frames = 3
    with watch() as crossings:
        row = bench_sim.bench_one(device_boundary_backend(), "coral", SIZE, frames, repeats=1)
    assert row["step_ms"] > 0 and row["render_ms"] > 0 and row["wall_fps"] > 0, row
    copies = [crossing for crossing in crossings if crossing.kind == "copy"]
    timed_and_free_running = frames + bench_sim.DISCARDED_FRAMES + frames
    assert len(copies) == timed_and_free_running, [str(crossing) for crossing in copies]
    assert all(is_frame_copy(crossing) for crossing in copies), [str(c) for c in copies]


# The harness itself: each rule must catch what it is there for.
def test_the_harness_records_reads_and_uploads_and_rejects_host_arrays() -> None:
    backend = device_boundary_backend()
    xp = backend.xp
    world = xp.zeros((8, 8), np.float32)
    host = np.ones((8, 8), np.float32)
    assert isinstance(world, DeviceArray) and isinstance(world.sum(), DeviceArray)
    with watch() as crossings:
        if float(xp.sum(world)) > 0 or world[0, 0] > 0:
            pass
        xp.asarray(np.ones(3, np.float32))
        world[xp.arange(2)] = host[:2]  # an integer-array index: CuPy uploads the value
        _ = world[world > 0]  # CuPy counts the mask's true cells on the host
        np.mean(world)
        backend.to_host(world, out=host)
        unpin = backend.pin_host_memory(host)
        backend.to_host(world, out=host)
        unpin()
        backend.to_host(world, out=host)
    assert [(crossing.kind, crossing.what, crossing.nbytes) for crossing in crossings] == [
        ("read", "float()", 0),
        ("read", "bool()", 0),
        ("upload", "xp.asarray", 12),
        ("upload", "assignment", 64),
        ("read", "boolean mask index", 0),
        ("numpy call", "numpy.mean", 0),
        ("copy", "get() into pageable memory", 256),
        ("copy", PINNED_COPY, 256),
        ("copy", "get() into pageable memory", 256),
    ], [str(crossing) for crossing in crossings]
    unpin = backend.pin_host_memory(host)
    with pytest.raises(RuntimeError, match="AlreadyRegistered"):
        backend.pin_host_memory(host[4:])  # CUDA refuses an overlapping registration
    unpin()
    with pytest.raises(RuntimeError, match="NotRegistered"):
        unpin()
    for raises_type_error in (
        lambda: world + host,
        lambda: xp.exp(host),
        lambda: xp.concatenate((world, host)),
        lambda: backend.fft.rfft2(host),
        lambda: world.get(out=np.empty((8, 8), np.float64)),
    ):
        with pytest.raises(TypeError):
            raises_type_error()
    for raises_value_error in (
        lambda: xp.copyto(world, host),
        lambda: world.__setitem__(0, host[0]),
        lambda: world.get(out=np.empty((4, 16), np.float32)),
    ):
        with pytest.raises(ValueError):
            raises_value_error()


def test_the_harness_rejects_host_arrays_and_device_scalars_in_kernels() -> None:
    backend = device_boundary_backend()
    launch = backend.fused_kernel(CROSSFADE_BLEND)
    assert launch is not None
    xp = backend.xp
    old, new, out = (xp.full(4, value, np.uint8) for value in (0, 200, 7))
    launch(4, out, old, new, 128)
    assert backend.to_host(out).tolist() == [100] * 4
    with pytest.raises(TypeError, match="host ndarray"):
        launch(4, np.empty(4, np.uint8), old, new, 128)
    with pytest.raises(TypeError, match="0-d device array"):
        launch(4, out, old, new, xp.sum(new) // 4)
