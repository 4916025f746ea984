"""The "Cellular Automata" pipeline's configuration as Scope sees it: identity, modes and fields.

Scope renders the settings panel from this class's JSON schema (a `Literal` becomes a dropdown,
a number with both `ge` and `le` a slider, a bool a toggle) and passes the fields as keyword
arguments: load-time ones to `__init__`, runtime ones to every `__call__`. Runtime fields carry a
`ca_` prefix because Scope broadcasts parameter updates to every pipeline of a chain. The preset
list is read from the preset data files (stdlib only, no engines) and the slider ranges from the
control protocol's op table, so neither can drift from what the daemon accepts. Scope shows a
dropdown's values as they are, so the preset ids (what `ca-server ctl preset` takes) are kept
and ordered for a person looking for one: the show presets first, in their curated order,
then the rest grouped by engine, alphabetically within each. Load-time
defaults work unconfigured, since headless Scope sessions load pipelines with no parameters.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from scope.core.pipelines.base_schema import (
    BasePipelineConfig,
    ModeDefaults,
    UsageType,
    ui_field_config,
)

from ca_server.presets import DEFAULT_PRESET, ENGINE_NAMES, Preset, load_all
from ca_server.wire.protocol import op_range

PIPELINE_ID = "ca-server-cellular-automata"


def dropdown_order(presets: list[Preset]) -> tuple[str, ...]:
    """Preset ids in the order the dropdown lists them.

    The show presets (the prototype viewer's curated set: the catalogue orders them before the
    default preset) come first in their curated order; the rest follow grouped by engine, in
    the engines' usual order, alphabetically within an engine.
    """
    default_order = next((p.order for p in presets if p.name == DEFAULT_PRESET), 0)
    show = sorted((p for p in presets if p.order < default_order), key=lambda p: (p.order, p.name))
    rest = sorted((p for p in presets if p.order >= default_order), key=_engine_then_name)
    return tuple(p.name for p in (*show, *rest))


def _engine_then_name(preset: Preset) -> tuple[int, str]:
    rank = ENGINE_NAMES.index(preset.engine) if preset.engine in ENGINE_NAMES else len(ENGINE_NAMES)
    return rank, preset.name


PRESET_NAMES: tuple[str, ...] = dropdown_order(load_all())
PresetName = Literal[PRESET_NAMES]  # type: ignore[valid-type]  # built from data at import
MAX_FRAMES_PER_CALL = 16


SPEED_MIN, SPEED_MAX = op_range("speed")
HUE_MIN, HUE_MAX = op_range("hue")
BRIGHTNESS_MIN, BRIGHTNESS_MAX = op_range("brightness")
BEAT_MIN, BEAT_MAX = op_range("beat")


class CellularAutomataConfig(BasePipelineConfig):
    """Settings of the pipeline that shows a ca-server daemon's frames in Scope."""

    pipeline_id = PIPELINE_ID
    pipeline_name = "Cellular Automata"
    pipeline_description = (
        "Live cellular-automaton video from a ca-server daemon (shared-memory ring). "
        "Start the daemon with `ca-server serve`; use as a source, or as a preprocessor "
        "feeding Krea Realtime in video mode."
    )
    pipeline_version = "0.1.0"
    supports_prompts = False
    usage: ClassVar[list[UsageType]] = [UsageType.PREPROCESSOR]
    modes: ClassVar[dict[str, ModeDefaults]] = {
        "text": ModeDefaults(default=True),
        "video": ModeDefaults(),
    }

    # Runtime: forwarded to the daemon when they change.
    ca_preset: PresetName = Field(
        default=DEFAULT_PRESET,
        description="Cellular-automaton preset the daemon runs: the show presets first, then "
        "the rest by engine (`ca-server presets` lists their titles)",
        json_schema_extra=ui_field_config(order=1, label="Preset"),
    )
    ca_speed: float = Field(
        default=1.0,
        ge=SPEED_MIN,
        le=SPEED_MAX,
        description="Simulation speed multiplier (0 freezes, 1 is normal)",
        json_schema_extra=ui_field_config(order=2, label="Speed", modulatable=True),
    )
    ca_hue_shift: float = Field(
        default=0.0,
        ge=HUE_MIN,
        le=HUE_MAX,
        description="Hue rotation of the palette, in turns",
        json_schema_extra=ui_field_config(order=3, label="Hue shift", modulatable=True),
    )
    ca_brightness: float = Field(
        default=1.0,
        ge=BRIGHTNESS_MIN,
        le=BRIGHTNESS_MAX,
        description="Output brightness gain",
        json_schema_extra=ui_field_config(order=4, label="Brightness", modulatable=True),
    )
    ca_reseed: bool = Field(
        default=False,
        description="Reseed the world once each time this is switched on (off→on)",
        json_schema_extra=ui_field_config(order=5, label="Reseed"),
    )
    ca_beat: float = Field(
        default=1.0,
        ge=BEAT_MIN,
        le=BEAT_MAX,
        description="How much the picture moves with the beat when tempo sync is on "
        "(× the preset's own amount; 0 off): flashes on the beat, surges on the bar",
        json_schema_extra=ui_field_config(order=6, label="Beat", modulatable=True),
    )

    # Load-time: read once when the pipeline loads.
    ca_ring_name: str = Field(
        default="",
        max_length=31,
        description="Ring the daemon serves (`ca-server serve --name`); empty: "
        "$CA_SERVER_NAME, else gpu0",
        json_schema_extra=ui_field_config(order=10, is_load_param=True, label="Ring name"),
    )
    ca_frames_per_call: int = Field(
        default=4,
        ge=1,
        le=MAX_FRAMES_PER_CALL,
        description="Most frames returned per call when catching up",
        json_schema_extra=ui_field_config(order=11, is_load_param=True, label="Frames per call"),
    )
    ca_control_endpoint: str = Field(
        default="",
        max_length=127,
        description="Daemon control endpoint; empty: the one the ring advertises",
        json_schema_extra=ui_field_config(order=12, is_load_param=True, label="Control endpoint"),
    )
    ca_device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto",
        description="Where output frames live: auto = CUDA when available",
        json_schema_extra=ui_field_config(order=13, is_load_param=True, label="Output device"),
    )
    ca_output_dtype: Literal["float32", "uint8"] = Field(
        default="float32",
        description="float32 in [0, 1] is Scope's documented contract; uint8 skips a conversion",
        json_schema_extra=ui_field_config(order=14, is_load_param=True, label="Output dtype"),
    )
