"""The renderer's settings: a preset's `[render]` table, validated once into a frozen dataclass.

Keys (all optional; defaults in `RenderSettings`):

| key | range | meaning |
|---|---|---|
| palette | one of `PALETTE_NAMES` | the cosine palette |
| hue | any real, wraps to [0, 1) | hue rotation in turns (colour only, not structure) |
| brightness | `op_range("brightness")` | exposure before the tonemap |
| thickness | [0, 20] px | fattens and softens thin strands by about this much (< 0.5: off) |
| smoothing | [0, 0.99] | temporal EMA weight of the previous frame, for binary engines (0: off) |
| bloom | [0, 2] | glow strength |
| relief | [0, 2] | strength of the raking light that embosses the film |
| iridescence | [0, 2] | how far slopes shift the colour (the thin-film viewing-angle shift) |
| film | [0, 4] | palette cycles across density 0→1 (how many colour bands a body shows) |
| floor | [0, 0.99] | density treated as empty: display = clip((world − floor)·gain, 0, 1) |
| gain | [0.01, 20] | density gain after `floor` (Gray-Scott V wants about 3.5) |

An unknown key or a bad value is a ValueError naming the key and the valid choices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from ca_server.render.palettes import PALETTE_NAMES
from ca_server.wire.protocol import op_range

# Inclusive numeric ranges; `hue` has none because it wraps.
SETTING_RANGES: dict[str, tuple[float, float]] = {
    "brightness": op_range("brightness"),
    "thickness": (0.0, 20.0),
    "smoothing": (0.0, 0.99),
    "bloom": (0.0, 2.0),
    "relief": (0.0, 2.0),
    "iridescence": (0.0, 2.0),
    "film": (0.0, 4.0),
    "floor": (0.0, 0.99),
    "gain": (0.01, 20.0),
}


@dataclass(frozen=True)
class RenderSettings:
    """Validated render settings; build with `RenderSettings.from_mapping`."""

    palette: str = "oil_slick"
    hue: float = 0.0
    brightness: float = 1.0
    thickness: float = 0.0
    smoothing: float = 0.0
    bloom: float = 0.7
    relief: float = 1.0
    iridescence: float = 1.0
    film: float = 1.0
    floor: float = 0.0
    gain: float = 1.0

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(field.name for field in fields(cls))

    @classmethod
    def from_mapping(
        cls, settings: Mapping[str, Any] | None, base: RenderSettings | None = None
    ) -> RenderSettings:
        """`base` (default: the defaults) with the keys of `settings` applied and validated."""
        base = base or cls()
        if settings is None:
            return base
        if not isinstance(settings, Mapping):
            raise ValueError(f"render settings must be a mapping, got {type(settings).__name__}")
        valid = cls.keys()
        changes: dict[str, Any] = {}
        for key, value in settings.items():
            if key not in valid:
                raise ValueError(f"unknown render setting {key!r}; valid keys: {', '.join(valid)}")
            changes[key] = validate_setting(key, value)
        return replace(base, **changes)


def validate_setting(key: str, value: Any) -> Any:
    """The checked value for render setting `key` (hue wrapped to [0, 1)); ValueError if bad."""
    if key == "palette":
        if value not in PALETTE_NAMES:
            raise ValueError(
                f"render setting 'palette' is {value!r}; choose one of {', '.join(PALETTE_NAMES)}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"render setting {key!r} must be a finite number, got {value!r}")
    if key == "hue":
        return float(value) % 1.0
    low, high = SETTING_RANGES[key]
    if not low <= value <= high:
        raise ValueError(f"render setting {key!r} is {value!r}; it must be in [{low}, {high}]")
    return float(value)
