"""Turn Scope's parameter dicts into the few control ops the daemon needs, and nothing more.

Scope re-sends every accumulated parameter on every `__call__`, so forwarding them as they come
would flood the daemon. `ControlForwarder` remembers what the current daemon has already been
told and yields only changes: a value op when a `ca_*` value differs from the one last
acknowledged as sent, and one `reseed` on each rising edge of `ca_reseed` (a bool going
off→on, or any increase of an integer trigger counter). It holds no sockets and never touches
the network, so tests drive it with plain dicts. Values outside the op's range are clamped to
it, values of the wrong type are ignored with a reason, because a bad OSC message must not stop
the stream.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ca_server.wire.protocol import OPS

PRESET_PARAM = "ca_preset"
SPEED_PARAM = "ca_speed"
HUE_PARAM = "ca_hue_shift"
BRIGHTNESS_PARAM = "ca_brightness"
RESEED_PARAM = "ca_reseed"


@dataclass(frozen=True)
class ValueParam:
    """One Scope parameter that maps onto one control op with one argument."""

    param: str
    op: str
    arg: str

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        """The (min, max) the daemon accepts for this op's argument, from the protocol table."""
        spec = next(a for a in OPS[self.op].args if a.name == self.arg)
        return spec.min, spec.max


VALUE_PARAMS: tuple[ValueParam, ...] = (
    ValueParam(PRESET_PARAM, "preset", "name"),
    ValueParam(SPEED_PARAM, "speed", "value"),
    ValueParam(HUE_PARAM, "hue", "value"),
    ValueParam(BRIGHTNESS_PARAM, "brightness", "value"),
)


@dataclass(frozen=True)
class ControlOp:
    """One op to send: `op` with `args`; `param` names the Scope parameter it came from."""

    op: str
    args: Mapping[str, Any]
    param: str


def _coerce(spec: ValueParam, raw: Any) -> tuple[Any, str | None]:
    """Return (value the daemon accepts, None) or (None, why `raw` was ignored)."""
    if spec.arg == "name":
        if isinstance(raw, str) and raw:
            return raw, None
        return None, f"{spec.param} must be a preset name, got {raw!r}"
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        try:
            raw = float(raw)
        except (TypeError, ValueError):
            return None, f"{spec.param} must be a number, got {raw!r}"
    value = float(raw)
    if not math.isfinite(value):
        return None, f"{spec.param} must be finite, got {raw!r}"
    low, high = spec.bounds
    if low is not None:
        value = max(value, float(low))
    if high is not None:
        value = min(value, float(high))
    return value, None


def trigger_level(raw: Any) -> float:
    """The level of a reseed trigger: bools as 0/1, numbers as themselves, anything else as
    its truthiness (so "true" from a text field counts as pressed)."""
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, int | float) and math.isfinite(raw):
        return float(raw)
    if isinstance(raw, str):
        return 1.0 if raw.strip().lower() in ("1", "true", "on", "yes") else 0.0
    return 1.0 if raw else 0.0


class ControlForwarder:
    """Diff Scope's parameters against what the daemon was last told; no I/O.

    `observe(params)` records the wanted values and any reseed edge; `pending()` lists the ops
    still to send; `mark_sent(op)` records one as delivered to the socket; `forget_sent()`
    makes every wanted value pending again (after the daemon restarted with its own defaults).
    Parameters Scope never sent are never forwarded, so the daemon keeps what `ca-server ctl`
    set until the user touches that control in Scope.
    """

    def __init__(self) -> None:
        self._wanted: dict[str, Any] = {}
        self._sent: dict[str, Any] = {}
        self._trigger_level = 0.0
        self._reseeds_pending = 0
        self.rejected: list[str] = []  # reasons for ignored values, drained by the caller

    def observe(self, params: Mapping[str, Any]) -> None:
        """Take one call's parameters; unknown keys are ignored."""
        for spec in VALUE_PARAMS:
            if spec.param not in params or params[spec.param] is None:
                continue
            value, why = _coerce(spec, params[spec.param])
            if why is not None:
                if self._wanted.get(spec.param, ...) is not None:
                    self.rejected.append(why)
                    self._wanted[spec.param] = None  # report once until a valid value arrives
                continue
            self._wanted[spec.param] = value
        if RESEED_PARAM in params:
            level = trigger_level(params[RESEED_PARAM])
            if level > self._trigger_level:
                self._reseeds_pending = 1  # presses faster than we can send collapse into one
            self._trigger_level = level

    def pending(self) -> Iterator[ControlOp]:
        """The ops not yet sent to the current daemon, value ops first, then a reseed."""
        for spec in VALUE_PARAMS:
            value = self._wanted.get(spec.param)
            if value is not None and self._sent.get(spec.param) != value:
                yield ControlOp(spec.op, {spec.arg: value}, spec.param)
        if self._reseeds_pending:
            yield ControlOp("reseed", {}, RESEED_PARAM)

    def mark_sent(self, op: ControlOp) -> None:
        """Record that `op` reached the socket."""
        if op.param == RESEED_PARAM:
            self._reseeds_pending = 0
        else:
            self._sent[op.param] = next(iter(op.args.values()))

    def drop_reseeds(self) -> None:
        """Forget a pending reseed (reseeding a daemon that is not there means nothing)."""
        self._reseeds_pending = 0

    def forget_sent(self) -> None:
        """Make every wanted value pending again, e.g. for a freshly started daemon."""
        self._sent.clear()
