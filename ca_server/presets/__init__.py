"""The preset catalogue: names, titles and validated parameters, readable with the stdlib alone.

Presets are data files (`ca_server/presets/data/*.toml`, one per preset) plus optional user files
in a `presets_dir`, where a file with the same name overrides the packaged one. The Scope plugin
imports this package for its dropdown, so nothing here imports numpy, scipy or the engines.
"""

from __future__ import annotations

from pathlib import Path

from ca_server.presets.catalog import (
    DEFAULT_PRESET,
    ENGINE_NAMES,
    FLOW_NAMES,
    Preset,
    PresetError,
    PresetFileError,
    PresetInfo,
    UnknownPresetError,
    parse_preset,
)
from ca_server.presets.loading import (
    MAX_PRESET_FILE_BYTES,
    Catalog,
    catalog,
    load_all,
    load_one,
)

__all__ = [
    "DEFAULT_PRESET",
    "ENGINE_NAMES",
    "FLOW_NAMES",
    "MAX_PRESET_FILE_BYTES",
    "Catalog",
    "Preset",
    "PresetError",
    "PresetFileError",
    "PresetInfo",
    "UnknownPresetError",
    "catalog",
    "list_presets",
    "load_all",
    "load_one",
    "load_preset",
    "parse_preset",
    "preset_names",
]


def list_presets(presets_dir: Path | None = None) -> list[PresetInfo]:
    """Name, title, engine and description of every preset, in menu order.

    The prototype viewer's eleven (UNIFIED_ORDER) come first, then the default `coral` and the
    rest. Raises PresetFileError naming the file and field if any file is invalid.
    """
    return [preset.info for preset in load_all(presets_dir)]


def preset_names(presets_dir: Path | None = None) -> list[str]:
    """The preset names in menu order."""
    return [preset.name for preset in load_all(presets_dir)]


def load_preset(name: str, presets_dir: Path | None = None) -> Preset:
    """The validated preset `name`; UnknownPresetError (a KeyError) lists the valid names."""
    return load_one(name, presets_dir)
