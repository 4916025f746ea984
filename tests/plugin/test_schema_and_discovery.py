"""The plugin as Scope discovers it: entry point, hook, registered classes and their schema."""

from __future__ import annotations

import importlib.metadata

import pytest

from ca_server.presets import DEFAULT_PRESET, preset_names


@pytest.fixture(scope="module")
def loaded():
    from scope.core.plugins import load_plugins

    return load_plugins()


def test_the_plugin_is_found_through_its_installed_entry_point(loaded) -> None:
    entry_points = importlib.metadata.entry_points(group="scope")
    ours = [ep for ep in entry_points if ep.value == "ca_scope_client.plugin"]
    assert len(ours) == 1 and ours[0].dist is not None and ours[0].dist.name == "ca-server"
    assert ours[0].name not in loaded.failed
    from ca_scope_client.input_source import CellularAutomataInputSource
    from ca_scope_client.pipeline import CellularAutomataPipeline
    from ca_scope_client.schema import PIPELINE_ID

    assert loaded.pipelines[PIPELINE_ID] is CellularAutomataPipeline
    assert loaded.input_sources["ca-server"] is CellularAutomataInputSource


def test_the_hook_has_no_side_effects_and_can_run_twice(loaded) -> None:
    module = loaded.modules["ca_scope_client"]
    registered: list[type] = []
    module.register_pipelines(registered.append)
    module.register_pipelines(registered.append)
    assert len(registered) == 4 and registered[:2] == registered[2:]


def test_schema_has_every_preset_in_its_dropdown() -> None:
    from ca_scope_client.schema import CellularAutomataConfig

    schema = CellularAutomataConfig.model_json_schema()
    preset = schema["properties"]["ca_preset"]
    assert sorted(preset["enum"]) == sorted(preset_names())  # every id, unchanged
    assert len(preset["enum"]) >= 10
    assert preset["default"] == DEFAULT_PRESET
    assert preset["ui"]["is_load_param"] is False


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [("ca_speed", 0.0, 8.0), ("ca_hue_shift", 0.0, 1.0), ("ca_brightness", 0.0, 3.0)],
)
def test_sliders_carry_the_daemons_ranges(field, low, high) -> None:
    from ca_scope_client.schema import CellularAutomataConfig

    prop = CellularAutomataConfig.model_json_schema()["properties"][field]
    assert (prop["minimum"], prop["maximum"]) == (low, high)
    assert prop["type"] == "number" and prop["ui"]["is_load_param"] is False


def test_reseed_is_a_runtime_toggle_and_load_fields_are_load_params() -> None:
    from ca_scope_client.schema import CellularAutomataConfig

    props = CellularAutomataConfig.model_json_schema()["properties"]
    assert props["ca_reseed"]["type"] == "boolean"
    assert props["ca_reseed"]["default"] is False
    for name in ("ca_ring_name", "ca_frames_per_call", "ca_control_endpoint", "ca_device"):
        assert props[name]["ui"]["is_load_param"] is True, name
    assert (props["ca_frames_per_call"]["minimum"], props["ca_frames_per_call"]["maximum"]) == (
        1,
        16,
    )


def test_every_field_of_ours_is_namespaced_and_shown() -> None:
    from scope.core.pipelines.base_schema import BasePipelineConfig

    from ca_scope_client.schema import CellularAutomataConfig

    ours = set(CellularAutomataConfig.model_fields) - set(BasePipelineConfig.model_fields)
    assert ours and all(name.startswith("ca_") for name in ours)
    props = CellularAutomataConfig.model_json_schema()["properties"]
    assert all("ui" in props[name] for name in ours)


def test_identity_modes_and_usage() -> None:
    from scope.core.pipelines.base_schema import UsageType

    from ca_scope_client.schema import PIPELINE_ID, CellularAutomataConfig

    assert CellularAutomataConfig.pipeline_id == PIPELINE_ID == "ca-server-cellular-automata"
    assert CellularAutomataConfig.pipeline_name == "Cellular Automata"
    assert CellularAutomataConfig.supports_prompts is False
    assert CellularAutomataConfig.usage == [UsageType.PREPROCESSOR]
    modes = CellularAutomataConfig.modes
    assert set(modes) == {"text", "video"} and modes["text"].default is True


def test_defaults_validate_so_a_headless_load_needs_no_parameters() -> None:
    from ca_scope_client.schema import CellularAutomataConfig

    config = CellularAutomataConfig()
    assert config.ca_ring_name == "" and config.ca_frames_per_call == 4
    with pytest.raises(ValueError):
        CellularAutomataConfig(ca_preset="not_a_preset")
