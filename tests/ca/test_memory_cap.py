"""Running out of device memory during a change drops the change; the stream goes on.

No GPU here: tests/device_boundary.py's backend counts the device arrays alive as CuPy's pool
would and, inside `device_memory_limit`, refuses an allocation past the limit with MemoryError,
as CuPy's pool does past `set_limit` (the daemon's --max-vram-mb). So the allocations fail
wherever the package makes them, not at places the test picks: the limits below are set between
the measured peaks of a steady frame, a warm-up and a crossfade.
"""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import pytest
from device_boundary import DEVICE_POOL, device_boundary_backend, device_memory_limit, watch
from host_cuda import compiler_available

import ca_server.preset_change
from ca_server.health import Action
from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend

pytestmark = pytest.mark.skipif(not compiler_available(), reason="g++ is not installed")

SIZE = 128
SHOWN, INCOMING = "coral", "medusa"  # Lenia to Gray-Scott: a new engine, renderer and flow


def started() -> tuple[Simulation, int]:
    """A simulation showing SHOWN after a few frames, and the device bytes in use then."""
    simulation = Simulation(
        device_boundary_backend(), width=SIZE, height=SIZE, preset=SHOWN, warmup_steps_per_tick=40
    )
    run_frames(simulation, 3)
    gc.collect()
    return simulation, DEVICE_POOL.used_bytes


def phase(simulation: Simulation) -> str:
    health = simulation.health()
    return "crossfading" if health["crossfading"] else "warming" if health["warming"] else "steady"


def run_frames(simulation: Simulation, count: int) -> list[tuple[str, int, int]]:
    """Daemon frames into a host slot: per frame, (phase at its start, frame copies, its
    brightest byte)."""
    slot = np.empty((SIZE, SIZE, 3), np.uint8)
    seen = []
    for _ in range(count):
        before = phase(simulation)
        with watch() as crossings:
            simulation.next_frame(host_out=slot)
        seen.append((before, sum(c.kind == "copy" for c in crossings), int(slot.max())))
    return seen


def run_change(simulation: Simulation, limit: int = 200) -> list[tuple[str, int, int]]:
    seen = run_frames(simulation, 1)
    while phase(simulation) != "steady":
        assert len(seen) < limit, "the change neither landed nor was dropped"
        seen += run_frames(simulation, 1)
    return seen


@pytest.fixture(scope="module")
def peaks() -> dict[str, int]:
    """Device bytes above a started simulation's, at the peak of a steady frame, of the
    warm-up's frames (the last of which builds the incoming renderer and renders the first
    crossfade frame: the change's peak) and of the rest of the crossfade, with no limit."""
    simulation, base = started()
    found = {"steady": 0, "warming": 0, "crossfading": 0}
    DEVICE_POOL.reset_peak()
    run_frames(simulation, 3)
    found["steady"] = DEVICE_POOL.peak_bytes - base
    simulation.set_preset(INCOMING)
    while phase(simulation) != "steady":
        before = phase(simulation)
        DEVICE_POOL.reset_peak()
        run_frames(simulation, 1)
        found[before] = max(found[before], DEVICE_POOL.peak_bytes - base)
    assert simulation.showing == INCOMING
    # Limits between these must fail where the tests say.
    assert 0 < found["steady"] < found["crossfading"] < found["warming"], found
    return found


@pytest.mark.parametrize("failing_in", ["warming", "crossfading"])
def test_a_change_that_does_not_fit_is_dropped_and_the_stream_goes_on(
    failing_in: str, peaks: dict[str, int]
) -> None:
    simulation, base = started()
    frees_before = DEVICE_POOL.cache_frees
    simulation.set_preset(INCOMING)
    seen = []
    if failing_in == "crossfading":  # from a crossfade under way, past the warm-up's peak
        while phase(simulation) != "crossfading":
            seen += run_frames(simulation, 1)
        limit = (DEVICE_POOL.used_bytes + base + peaks["crossfading"]) // 2
    else:
        limit = base + (peaks["steady"] + peaks["warming"]) // 2
    with device_memory_limit(limit):
        seen += run_change(simulation) + run_frames(simulation, 5)
    # Every frame went out, once, and none was black.
    assert all(copies == 1 and brightest > 0 for _, copies, brightest in seen), seen
    assert simulation.showing == simulation.preset_name == SHOWN
    error = simulation.change_error
    assert error is not None and f"'{INCOMING}'" in error and "--max-vram-mb" in error, error
    assert simulation.health()["change_error"] == error
    assert len(seen) < 40 and seen[-6][0] == failing_in  # dropped in the phase aimed at
    # The dropped change holds no device memory, and the pool's cache was given back.
    gc.collect()
    assert DEVICE_POOL.used_bytes <= base, (DEVICE_POOL.used_bytes, base)
    assert DEVICE_POOL.cache_frees == frees_before + 1
    # With room, the same change lands and the error is cleared.
    simulation.set_preset(INCOMING)
    run_change(simulation)
    assert simulation.showing == INCOMING and simulation.change_error is None


@pytest.mark.parametrize("step", range(1, 7))
def test_wherever_a_change_runs_out_nothing_escapes(step: int, peaks: dict[str, int]) -> None:
    """Limits spread from the steady frames' peak to the change's: the allocation that fails
    moves through the change's work (warm-up, the screen's own render and steps, the incoming
    renderer, the crossfade), and each time the change is dropped or lands, the frames go on."""
    simulation, base = started()
    room = peaks["warming"] - peaks["steady"]
    with device_memory_limit(base + peaks["steady"] + room * step // 6):
        simulation.set_preset(INCOMING)
        seen = run_change(simulation) + run_frames(simulation, 3)
    assert all(copies == 1 and brightest > 0 for _, copies, brightest in seen), seen
    landed = (simulation.showing, simulation.change_error) == (INCOMING, None)
    dropped = simulation.showing == SHOWN and simulation.change_error is not None
    assert landed or dropped, (simulation.showing, simulation.change_error)
    assert landed == (step == 6)  # the change's peak fits; below it, something does not


def test_a_change_failing_at_any_of_its_allocation_sites_is_dropped() -> None:
    """Every place (package line) that allocates device memory during the change, made to fail
    the first time it allocates: a finer net than the limits above, which can step over a
    narrow window (the screen's own render while the incoming grows was one)."""
    simulation, _ = started()
    DEVICE_POOL.sites, start = [], DEVICE_POOL.allocations
    simulation.set_preset(INCOMING)
    run_change(simulation)
    sites, DEVICE_POOL.sites = DEVICE_POOL.sites, None
    first_at: dict[str, int] = {}
    for number, site in enumerate(sites, start=start + 1):
        first_at.setdefault(site, number - start)
    assert len(first_at) > 10, first_at  # engines, flow, renderer, health, crossfade...
    for site, offset in first_at.items():
        simulation, _ = started()
        DEVICE_POOL.failing_allocation = DEVICE_POOL.allocations + offset
        try:
            simulation.set_preset(INCOMING)
            seen = run_change(simulation) + run_frames(simulation, 2)
        finally:
            DEVICE_POOL.failing_allocation = None
        assert all(copies == 1 and brightest > 0 for _, copies, brightest in seen), (site, seen)
        assert simulation.showing == SHOWN, site
        assert "made to fail" in (simulation.change_error or ""), (site, simulation.change_error)


def test_out_of_memory_with_no_change_under_way_propagates() -> None:
    """Nothing to drop: the daemon reports it and stops (ca_server.cli.serve)."""
    simulation, base = started()
    with device_memory_limit(base), pytest.raises(MemoryError, match="device pool limit"):
        run_frames(simulation, 1)  # a steady frame's FFTs allocate their outputs


def test_a_regrowth_that_does_not_fit_waits_before_trying_again(
    monkeypatch: pytest.MonkeyPatch, peaks: dict[str, int]
) -> None:
    """A world that dies on screen is held while a fresh seed regrows; a regrowth that does not
    fit is dropped, the held picture goes on, and the next try waits REGROWTH_RETRY_FRAMES
    instead of failing every frame."""
    retry_frames = 12
    monkeypatch.setattr(ca_server.preset_change, "REGROWTH_RETRY_FRAMES", retry_frames)
    simulation, base = started()
    with device_memory_limit(base + peaks["steady"]):
        simulation.world[...] = 0.0
        seen = run_frames(simulation, 3)
        assert simulation.health()["holding"] and simulation.regrowths == 1
        assert simulation.change_error is not None
        seen += run_frames(simulation, retry_frames - 3)
        assert simulation.regrowths == 1  # waited
        seen += run_frames(simulation, 3)
        assert simulation.regrowths == 2  # tried again, and was dropped again
    assert all(copies >= 1 and brightest > 0 for _, copies, brightest in seen), seen
    run_frames(simulation, retry_frames)
    run_change(simulation)
    assert not simulation.health()["holding"] and simulation.regrowths == 3
    assert simulation.change_error is None  # the regrowth landed


def test_a_dropped_reseed_keeps_the_seed_on_screen(peaks: dict[str, int]) -> None:
    simulation, base = started()
    seed_on_screen = simulation.seed
    with device_memory_limit(base + peaks["steady"]):
        assert simulation.reseed(1234) == 1234
        run_change(simulation)
    assert simulation.change_error is not None
    assert (simulation.seed, simulation.preset_name) == (seed_on_screen, SHOWN)


def test_only_allocation_failures_count_as_running_out_of_memory() -> None:
    """On CuPy, memory outside the pool fails as a CUDA or cuFFT error with code 2 (the real
    classes are checked in test_gpu.py); any other code may mean a broken device and must stop
    the daemon, not be taken for a change that did not fit."""

    class CodedCudaError(RuntimeError):  # stands in for CUDARuntimeError and its kin
        def __init__(self, status: int) -> None:
            super().__init__(status)
            self.status = status

    backend = dataclasses.replace(
        numpy_backend(), coded_memory_errors=((CodedCudaError, "status"),)
    )
    assert backend.ran_out_of_memory(MemoryError("pool"))
    assert backend.ran_out_of_memory(CodedCudaError(2))  # cudaErrorMemoryAllocation
    assert not backend.ran_out_of_memory(CodedCudaError(700))  # cudaErrorIllegalAddress
    assert not backend.ran_out_of_memory(RuntimeError("anything else"))


def test_a_health_action_that_runs_out_during_the_crossfade_drops_the_change() -> None:
    """settle's guard. The incoming organism's health monitor is made to call for a perturb
    (drawn on the device: new arrays) in a crossfade frame, with no room left in the pool for
    it; the allocation fails inside the package's own code, after the frame went out."""
    simulation, base = started()
    frees_before = DEVICE_POOL.cache_frees
    simulation.set_preset(INCOMING)
    seen = run_frames(simulation, 1)
    while phase(simulation) != "crossfading":
        assert len(seen) < 100, "the change never reached its crossfade"
        seen += run_frames(simulation, 1)
    incoming = simulation.change.incoming
    wrapped = {"apply": incoming.apply}
    attempts = []

    def perturb_with_no_room(action: Action) -> None:
        attempts.append(action)
        with device_memory_limit(DEVICE_POOL.used_bytes):
            wrapped["apply"](Action.PERTURB)

    incoming.apply = perturb_with_no_room  # type: ignore[method-assign]
    seen += run_frames(simulation, 1) + run_frames(simulation, 5)
    assert attempts, "the incoming organism was never settled"
    assert all(copies == 1 and brightest > 0 for _, copies, brightest in seen), seen
    assert phase(simulation) == "steady"
    assert simulation.showing == simulation.preset_name == SHOWN
    error = simulation.change_error
    assert error is not None and f"'{INCOMING}'" in error and "--max-vram-mb" in error, error
    # The dropped change holds no device memory (once this test lets go of the organism it
    # wrapped), and the pool's cache was given back once.
    del incoming
    wrapped.clear()
    gc.collect()
    assert DEVICE_POOL.used_bytes <= base, (DEVICE_POOL.used_bytes, base)
    assert DEVICE_POOL.cache_frees == frees_before + 1
