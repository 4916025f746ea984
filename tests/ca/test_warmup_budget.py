"""A preset change in a live set: its warm-up is not starved by the preset on screen, and the
work a change does at once (building organisms, flow fields, the renderer) stays out of the frame
that shows it.

The real 512²/5 s and 1024²/10 s switching schedules are `bench/bench_switching.py`.
"""

from __future__ import annotations

import time
from typing import Any

from ca_server.engines import ENGINE_CLASSES
from ca_server.render import build_flow_fields
from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend

BACKEND = numpy_backend(fft_workers=1)
SLOW_STEP_S = 0.03  # longer than the warm-up's own budget (0.02 s)


class SlowFlow:
    """Stands in for a big frame on a slow CPU: the on-screen preset's step takes SLOW_STEP_S
    (the flow sleeps, moving nothing), more than the warm-up's budget."""

    active = True

    def advect(self, field: Any, out: Any = None) -> Any:
        time.sleep(SLOW_STEP_S)
        return field


def test_a_slow_frame_does_not_starve_the_warm_up(logic_only):
    # With the budget counted from the tick's start, the on-screen step used it all and the
    # warm-up got one step per tick: 800 ticks for a Lenia change (at 512² on a CPU, 27 s at
    # 30 fps; the next change came first). Its own budget covers dozens of steps at 128² even
    # on a loaded machine (a step takes 0.2-2 ms), so the change lands in a few dozen ticks.
    sim = Simulation(BACKEND, width=128, height=128, preset="coral", **logic_only)
    sim.change.current.flow = SlowFlow()  # the organism on screen only; the warm-up's flow is still
    sim.set_preset("amoeba")
    grow, shape = ENGINE_CLASSES["lenia"].warmup_steps
    ticks = 0
    while sim.health()["warming"]:
        sim.tick()
        ticks += 1
        assert ticks < (grow + shape) // 4, "the warm-up is getting about one step per tick"
    assert sim.health()["crossfading"]


def test_a_change_builds_no_flow_fields_and_brings_its_renderer(logic_only):
    # Flow fields took ~1 s at 1024² (0.25 s at 512²), built for every new organism inside a
    # tick; now once per grid, before the first frame. The incoming renderer (and its colour
    # table) is built by the warm-up, not by the crossfade's first frame.
    sim = Simulation(
        BACKEND,
        width=512,
        height=512,
        preset="mnca_worm",
        warmup_steps_per_tick=10**6,
        renderer_factory=logic_only["renderer_factory"],
    )
    built = build_flow_fields.cache_info().misses
    sim.set_preset("amoeba")  # warms up at 256², then is built at 512²
    sim.tick()
    assert sim.health()["crossfading"]
    assert sim.change.incoming is not None and sim.change.incoming.renderer is not None
    assert build_flow_fields.cache_info().misses == built


def shown_while_switching(sim: Simulation, requests: dict[int, str], ticks: int) -> list[str]:
    """The presets that reached the screen (began their crossfade), in order, over `ticks`
    ticks, asking for `requests[tick]` at those ticks."""
    shown: list[str] = []
    for tick in range(ticks):
        if tick in requests:
            sim.set_preset(requests[tick])
        sim.tick()
        if sim.arriving is not None and (not shown or shown[-1] != sim.arriving):
            shown.append(sim.arriving)
    return shown


def test_requests_faster_than_warm_ups_all_reach_the_screen(logic_only):
    # Issue 19 item 10: a request replaced a warm-up still under way, so a VJ switching every
    # 5 s at 512² on a CPU never saw the presets whose warm-up took longer (7 of 23, then 4).
    # Lenia's warm-up is 800 steps: 20 ticks at 40 steps a tick. Each request comes while the
    # one before it is still warming up, waits for it to land, then warms up during its
    # crossfade (warm-ups at ticks 0-20, 20-40, 40-60, 60-80; on main, each replaced the last).
    sim = Simulation(
        BACKEND,
        width=128,
        height=128,
        preset="coral",
        warmup_steps_per_tick=40,
        crossfade_frames=4,
        **logic_only,
    )
    names = ["amoeba", "lava_lamp", "tide_pool", "jellyfish"]
    requests = dict(zip([0, 12, 30, 55], names, strict=True))
    shown = shown_while_switching(sim, requests, 120)
    assert shown == names
    assert sim.showing == sim.preset_name == "jellyfish"


def test_the_newest_of_the_waiting_requests_wins(logic_only):
    # Two requests while one warm-up runs: the one under way lands, then the newest of them.
    sim = Simulation(
        BACKEND,
        width=128,
        height=128,
        preset="coral",
        warmup_steps_per_tick=40,
        crossfade_frames=4,
        **logic_only,
    )
    shown = shown_while_switching(sim, {0: "amoeba", 5: "lava_lamp", 10: "tide_pool"}, 80)
    assert shown == ["amoeba", "tide_pool"]
    assert sim.health()["preset"] == "tide_pool"


def test_a_waiting_warm_up_that_lands_during_a_crossfade_ends_it(logic_only):
    # The waiting request warms up during the crossfade of the one before it; with a crossfade
    # longer than its warm-up, it lands first: the fade under way ends at once (like a request
    # during a fade), and the new one fades in from there.
    sim = Simulation(
        BACKEND,
        width=128,
        height=128,
        preset="coral",
        warmup_steps_per_tick=40,
        crossfade_frames=50,
        **logic_only,
    )
    shown = shown_while_switching(sim, {0: "amoeba", 5: "lava_lamp"}, 45)
    assert shown == ["amoeba", "lava_lamp"]
    assert sim.showing == "amoeba" and sim.arriving == "lava_lamp"
