"""Reading and validating preset files: one TOML file per preset, stdlib only.

A preset file has the tables `[preset]` (name, title, engine, description, order, optional speed
and beat), `[engine]` (the engine's parameters, named as in the prototype plug-in), `[seed]` (kind,
density), `[flow]` (the seven flow strengths) and `[render]` (palette, hue, brightness,
thickness). Every field is checked against the schema below, and every failure is a
`PresetFileError` naming the file and the dotted field, so a typo in a user file is one clear
line, not a crash deep in an engine. This module imports only the standard library and
ca_server's light modules (the errors, the control protocol's ranges): the Scope plugin imports
`ca_server.presets` to fill its dropdown without numpy, scipy or the engines.
"""

from __future__ import annotations

import re
import reprlib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ca_server.errors import CAServerError
from ca_server.exit_codes import ExitCode
from ca_server.wire.protocol import op_range

DEFAULT_PRESET = "coral"
FLOW_NAMES: tuple[str, ...] = ("radial", "rotate", "swirl", "bubble", "ring", "vortex", "vertical")
DEFAULT_SEED_DENSITY = 0.5
_NAME_PATTERN = re.compile(r"[a-z0-9_]{1,64}")
_brief_repr = reprlib.Repr()
_brief_repr.maxlevel, _brief_repr.maxstring, _brief_repr.maxother = 2, 60, 60
brief = _brief_repr.repr  # quotes a user's value in an error line: bounded, never too deep


class PresetError(CAServerError):
    """Base of the preset errors."""

    exit_code = ExitCode.CONFIG


class UnknownPresetError(PresetError, KeyError):
    """No preset has the requested name; the message lists the valid ones."""

    exit_code = ExitCode.USAGE

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown preset"


class PresetFileError(PresetError, ValueError):
    """A preset file is unreadable or has a bad field; the message names the file and field."""


@dataclass(frozen=True)
class PresetInfo:
    """What a preset menu needs: the key, the UI title, the engine and one line of description."""

    name: str
    title: str
    engine: str
    description: str


@dataclass(frozen=True, eq=False)
class Preset:
    """A validated preset. Mappings are read-only; `source` is the file it came from."""

    name: str
    title: str
    engine: str
    description: str
    order: int
    speed: float
    engine_params: Mapping[str, Any]
    seed_kind: str
    seed_density: float
    flow: Mapping[str, float]
    render: Mapping[str, Any]
    source: str = field(default="")
    beat: float | None = None  # `[preset] beat`; None: the engine's default (ca_server.beat_pulse)

    @property
    def info(self) -> PresetInfo:
        return PresetInfo(self.name, self.title, self.engine, self.description)


# ---------------------------------------------------------------------------------------------
# Field checks. Each returns the cleaned value or raises ValueError with the reason; the caller
# adds the file and field.


def _number(low: float, high: float, *, low_open: bool = False) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {type(value).__name__} {brief(value)}")
        value = float(value)
        if value < low or value > high or (low_open and value == low):
            bracket = "(" if low_open else "["
            raise ValueError(f"must be in {bracket}{low:g}, {high:g}], got {value}")
        return value

    return check


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {brief(value)}")
        if not low <= value <= high:
            raise ValueError(f"must be in [{low}, {high}], got {value}")
        return value

    return check


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {brief(value)}")
    return value


def _number_list(low: float, high: float, *, low_open: bool = False) -> Callable[[Any], tuple]:
    item = _number(low, high, low_open=low_open)

    def check(value: Any) -> tuple[float, ...]:
        if not isinstance(value, list) or not value:
            raise ValueError(f"must be a non-empty list of numbers, got {brief(value)}")
        return tuple(item(v) for v in value)

    return check


def _rings(value: Any) -> tuple[tuple[float, float], ...]:
    radius = _number(0.0, 200.0)
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of [inner, outer] radius pairs")
    rings = []
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError(f"each ring must be [inner, outer], got {brief(pair)}")
        inner, outer = radius(pair[0]), radius(pair[1])
        if outer <= inner:
            raise ValueError(f"ring {brief(pair)} needs outer > inner")
        rings.append((inner, outer))
    return tuple(rings)


def _rules(value: Any) -> tuple[tuple[tuple[float, float], ...], ...]:
    bound = _number(0.0, 1.0)
    if not isinstance(value, list) or not value:
        raise ValueError("must be a list (one per ring) of lists of [low, high] intervals")
    per_ring = []
    for intervals in value:
        if not isinstance(intervals, list) or not intervals:
            raise ValueError(f"each ring's rules must be a non-empty list, got {brief(intervals)}")
        cleaned = []
        for interval in intervals:
            if not isinstance(interval, list) or len(interval) != 2:
                raise ValueError(f"each rule must be [low, high], got {brief(interval)}")
            low, high = bound(interval[0]), bound(interval[1])
            if high < low:
                raise ValueError(f"rule {brief(interval)} needs high >= low")
            cleaned.append((low, high))
        per_ring.append(tuple(cleaned))
    return tuple(per_ring)


# What a preset may set per engine. Each engine class points at its table (`preset_table`), but
# the tables live here: the Scope plugin validates presets without importing the engines.
# Parameter schemas: name -> (check, default or _REQUIRED). Ranges are the envelope in which the
# engines are numerically sane, not the prototype's slider ranges.
_REQUIRED = object()


@dataclass(frozen=True)
class EngineTable:
    """The `[engine]` fields one engine takes, its seed kinds, and checks across fields."""

    engine: str
    params: Mapping[str, tuple[Callable[[Any], Any], Any]]
    seed_kinds: tuple[str, ...]
    # (field, reason) of the first pair of `[engine]` fields that disagree, or None
    cross_check: Callable[[Mapping[str, Any]], tuple[str, str] | None] = lambda params: None


LENIA_TABLE = EngineTable(
    "lenia",
    {
        "R": (_number(2, 200), _REQUIRED),
        "T": (_number(1, 1000), _REQUIRED),
        "mu": (_number(0, 1, low_open=True), _REQUIRED),
        "sigma": (_number(0, 1, low_open=True), _REQUIRED),
        "peaks": (_number_list(0, 1), (0.5,)),
        "widths": (_number_list(0, 1, low_open=True), (0.15,)),
    },
    ("blobs", "ring", "random", "dense"),
    lambda params: (
        ("widths", "must have one width per peak")
        if len(params["peaks"]) != len(params["widths"])
        else None
    ),
)
SMOOTHLIFE_TABLE = EngineTable(
    "smoothlife",
    {
        "ri": (_number(1, 200), 4.0),
        "ra": (_number(2, 400), 12.0),
        "b1": (_number(0, 1), 0.278),
        "b2": (_number(0, 1), 0.365),
        "d1": (_number(0, 1), 0.267),
        "d2": (_number(0, 1), 0.445),
        # floor 0.01: the transition's exp((x - 1/2)/alpha) must stay finite in float32
        "alpha_n": (_number(0.01, 1), 0.028),
        "alpha_m": (_number(0.01, 1), 0.147),
        "dt": (_number(0, 1, low_open=True), 0.1),
    },
    ("blobs", "random", "ring"),
    lambda params: ("ra", "must be larger than ri") if params["ra"] <= params["ri"] else None,
)
MNCA_TABLE = EngineTable(
    "mnca",
    {
        "rings": (_rings, _REQUIRED),
        "rules": (_rules, _REQUIRED),
        "delta": (_number(0, 1, low_open=True), 0.05),
    },
    ("blobs", "random", "ring", "sparse"),
    lambda params: (
        ("rules", "must have one list of intervals per ring")
        if len(params["rules"]) != len(params["rings"])
        else None
    ),
)
GRAY_SCOTT_TABLE = EngineTable(
    "gray_scott",
    {
        "F": (_number(0, 0.2, low_open=True), _REQUIRED),
        "k": (_number(0, 0.2, low_open=True), _REQUIRED),
        # Explicit Euler with dt = 1 on the 9-point stencil is stable up to D = 1.25.
        "Du": (_number(0, 1.2, low_open=True), 0.2097),
        "Dv": (_number(0, 1.2, low_open=True), 0.105),
        "substeps": (_integer(1, 16), 2),
    },
    ("dense", "center", "random"),
)
ENGINE_TABLES: tuple[EngineTable, ...] = (
    LENIA_TABLE,
    SMOOTHLIFE_TABLE,
    MNCA_TABLE,
    GRAY_SCOTT_TABLE,
)
ENGINE_NAMES: tuple[str, ...] = tuple(table.engine for table in ENGINE_TABLES)
_TABLE_OF_ENGINE = {table.engine: table for table in ENGINE_TABLES}


class _FieldError(Exception):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(field_name, reason)
        self.field_name, self.reason = field_name, reason


def _table(document: Mapping[str, Any], name: str, *, required: bool) -> Mapping[str, Any]:
    table = document.get(name)
    if table is None:
        if required:
            raise _FieldError(name, "table is missing")
        return {}
    if not isinstance(table, dict):
        raise _FieldError(name, "must be a table")
    return table


def _checked_table(
    table: Mapping[str, Any], prefix: str, schema: Mapping[str, tuple[Callable, Any]]
) -> dict[str, Any]:
    unknown = sorted(set(table) - set(schema))
    if unknown:
        raise _FieldError(f"{prefix}.{unknown[0]}", f"unknown field; known: {', '.join(schema)}")
    cleaned: dict[str, Any] = {}
    for key, (check, default) in schema.items():
        if key not in table:
            if default is _REQUIRED:
                raise _FieldError(f"{prefix}.{key}", "is required")
            if default is not None:
                cleaned[key] = default
            continue
        try:
            cleaned[key] = check(table[key])
        except ValueError as exc:
            raise _FieldError(f"{prefix}.{key}", str(exc)) from None
    return cleaned


_PRESET_SCHEMA = {
    "name": (_text, _REQUIRED),
    "title": (_text, _REQUIRED),
    "engine": (_text, _REQUIRED),
    "description": (_text, ""),
    "order": (_integer(-1_000_000, 1_000_000), 1000),
    "speed": (_number(*op_range("speed"), low_open=True), 1.0),
    "beat": (_number(0, 1), None),  # how much it moves with the beat; None: its engine's default
}
_SEED_SCHEMA = {"kind": (_text, _REQUIRED), "density": (_number(0, 1), DEFAULT_SEED_DENSITY)}
_FLOW_SCHEMA = {name: (_number(-1, 1), 0.0) for name in FLOW_NAMES}
_RENDER_SCHEMA = {
    "palette": (_text, "oil_slick"),
    "hue": (_number(*op_range("hue")), None),
    "brightness": (_number(*op_range("brightness")), None),
    "thickness": (_number(0, 20), None),
    # The renderer's finer controls (ranges as in ca_server/render/settings.py, repeated here so
    # a bad value is reported with its file at load time, without importing the renderer).
    "smoothing": (_number(0, 0.99), None),
    "bloom": (_number(0, 2), None),
    "relief": (_number(0, 2), None),
    "iridescence": (_number(0, 2), None),
    "film": (_number(0, 4), None),
    "floor": (_number(0, 0.99), None),
    "gain": (_number(0.01, 20), None),
}


def parse_preset(text: str, source: str, expected_name: str | None = None) -> Preset:
    """Parse and validate one preset file's text; `source` names it in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetFileError(f"{source}: not valid TOML ({exc})") from None
    except RecursionError:
        raise PresetFileError(f"{source}: nested too deeply to be a preset") from None
    try:
        return _validated(document, source, expected_name)
    except RecursionError:
        raise PresetFileError(f"{source}: nested too deeply to be a preset") from None


def _validated(document: dict[str, Any], source: str, expected_name: str | None) -> Preset:
    try:
        unknown = sorted(set(document) - {"preset", "engine", "seed", "flow", "render"})
        if unknown:
            raise _FieldError(
                unknown[0], "unknown table; known: preset, engine, seed, flow, render"
            )
        head = _checked_table(_table(document, "preset", required=True), "preset", _PRESET_SCHEMA)
        if not _NAME_PATTERN.fullmatch(head["name"]):
            raise _FieldError("preset.name", "must be lowercase letters, digits and _ only")
        if expected_name is not None and head["name"] != expected_name:
            raise _FieldError("preset.name", f"must match the file name {expected_name!r}")
        engine = head["engine"]
        table = _TABLE_OF_ENGINE.get(engine)
        if table is None:
            raise _FieldError("preset.engine", f"unknown engine; known: {', '.join(ENGINE_NAMES)}")
        params = _checked_table(_table(document, "engine", required=True), "engine", table.params)
        disagreement = table.cross_check(params)
        if disagreement is not None:
            field_name, reason = disagreement
            raise _FieldError(f"engine.{field_name}", reason)
        seed = _checked_table(_table(document, "seed", required=True), "seed", _SEED_SCHEMA)
        if seed["kind"] not in table.seed_kinds:
            kinds = ", ".join(table.seed_kinds)
            raise _FieldError("seed.kind", f"unknown seed for {engine}; known: {kinds}")
        flow = _checked_table(_table(document, "flow", required=False), "flow", _FLOW_SCHEMA)
        render = _checked_table(
            _table(document, "render", required=False), "render", _RENDER_SCHEMA
        )
    except _FieldError as exc:
        raise PresetFileError(f"{source}: field {exc.field_name} {exc.reason}") from None
    return Preset(
        name=head["name"],
        title=head["title"],
        engine=engine,
        description=head["description"],
        order=head["order"],
        speed=head["speed"],
        beat=head.get("beat"),
        engine_params=MappingProxyType(params),
        seed_kind=seed["kind"],
        seed_density=seed["density"],
        flow=MappingProxyType(flow),
        render=MappingProxyType(render),
        source=source,
    )
