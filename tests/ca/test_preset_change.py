"""A preset change has one home (`ca_server.preset_change`), which runs without a Simulation: an
organism factory gives warm-ups what they build, so `warmup` never reaches back for the screen."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import ca_server
from ca_server.health import HealthCounters
from ca_server.organism import Organism, OrganismFactory
from ca_server.preset_change import PresetChange
from ca_server.presets import load_preset
from ca_server.simulation import Simulation
from ca_server.warmup import WarmUp
from ca_server.xp import numpy_backend

BACKEND = numpy_backend(fft_workers=1)
PACKAGE = Path(ca_server.__file__).parent


def factory(logic_only, prepared: list[Organism] | None = None, size: int = 96):
    """Organisms of a `size`² frame with the stand-in flow; renderers "prepared" into a list."""
    prepared = [] if prepared is None else prepared
    flow = logic_only["flow_factory"]
    return OrganismFactory(BACKEND, size, size, flow_factory=flow, prepare_renderer=prepared.append)


def test_a_warm_up_needs_only_an_organism_factory(logic_only) -> None:
    prepared: list[Organism] = []
    warm = WarmUp(factory(logic_only, prepared), load_preset("medusa"), seed=3)
    for _ in range(200):
        warm.advance(float("inf"), 50)
        if warm.finished:
            break
    assert warm.result is not None and warm.result.on_screen
    assert warm.result.world.shape == (96, 96)
    assert prepared == [warm.result]


def test_a_change_lands_through_the_preset_change_alone(logic_only) -> None:
    change = PresetChange(
        factory(logic_only),
        load_preset("coral"),
        5,
        warmup_budget_s=0.0,
        warmup_steps_per_tick=100,
        crossfade_frames=3,
    )
    change.request(load_preset("medusa"), 5)
    change.request(load_preset("mnca_worm"), 6)  # waits: the medusa warm-up is under way
    assert (change.preset_name, change.seed) == ("mnca_worm", 6)
    stage_s = {"step": 0.0, "render": 0.0, "copy": 0.0}
    shown = []
    for _ in range(200):
        unsettled: list[Organism] = []
        change.advance(0.0, 1.0, 0.0, stage_s, unsettled)
        shown.append(change.current.preset.name)
        if change.current.preset.name == "mnca_worm":
            break
    assert shown[-1] == "mnca_worm" and "medusa" in shown  # the first request landed first
    assert change.incoming is None and change.warmup is None and change.change_error is None


def test_warmup_and_preset_change_import_no_simulation() -> None:
    for module in ("warmup.py", "preset_change.py", "organism.py"):
        tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
        imported = [
            node.module if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        ]
        assert "ca_server.simulation" not in imported, module


def test_no_dead_regrowth_state_and_status_reports_regrowths(logic_only) -> None:
    organism = factory(logic_only, size=64).new(load_preset("coral"), 0, 1)
    organism.hold()
    assert organism.holding and "wants_regrowth" not in vars(organism)
    assert "regrowths" not in {field.name for field in dataclasses.fields(HealthCounters)}
    sim = Simulation(BACKEND, width=96, height=96, preset="coral", **logic_only)
    assert sim.health()["regrowths"] == sim.regrowths == 0
