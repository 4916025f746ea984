"""Turn Scope's parameter dicts into the few control ops the daemon needs, and nothing more.

Scope re-sends every accumulated parameter on every `__call__`, so forwarding them as they come
would flood the daemon. `ControlForwarder` remembers what the current daemon has already been
told and yields only changes: a value op when a `ca_*` value differs from the one last
acknowledged as sent, and one `reseed` on each rising edge of `ca_reseed` (a bool going
off→on, or any increase of an integer trigger counter), and Scope's tempo sync as an occasional
timestamped `beat_lock` (`tempo_lock.py`). It holds no sockets and never touches
the network, so tests drive it with plain dicts. Values outside the op's range are clamped to
it; values of the wrong type, infinite or too large for a float, and preset names that cannot
be encoded are ignored with a reason, because a bad OSC message must not stop the stream.
Pending ops come least recently sent first, so under a send budget a field modulated on every
call cannot starve the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ca_scope_client.tempo_lock import TempoLock
from ca_server.wire.protocol import OPS

PRESET_PARAM = "ca_preset"
SPEED_PARAM = "ca_speed"
HUE_PARAM = "ca_hue_shift"
BRIGHTNESS_PARAM = "ca_brightness"
RESEED_PARAM = "ca_reseed"
BEAT_PARAM = "ca_beat"
TEMPO_PARAM = "bpm"  # Scope's tempo sync (with beat_phase, beat_count): see tempo_lock.py


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
    ValueParam(BEAT_PARAM, "beat", "value"),
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
        if not isinstance(raw, str) or not raw:
            return None, f"{spec.param} must be a preset name, got {raw!r}"
        try:
            raw.encode("utf-8")  # a lone surrogate cannot go on the wire
        except UnicodeEncodeError:
            return None, f"{spec.param} must be a preset name, got {raw!r} (not valid text)"
        return raw, None
    try:
        value = float(raw)  # ints past 1e308 raise OverflowError
    except (TypeError, ValueError, OverflowError):
        return None, f"{spec.param} must be a finite number, got {_short(raw)}"
    if not math.isfinite(value):
        return None, f"{spec.param} must be a finite number, got {_short(raw)}"
    low, high = spec.bounds
    if low is not None:
        value = max(value, float(low))
    if high is not None:
        value = min(value, float(high))
    return value, None


def _short(raw: Any) -> str:
    """`raw` for a log line, cut short: a 400-digit integer is not worth printing."""
    try:
        text = repr(raw)
    except ValueError:  # an int past Python's digit limit cannot even be printed
        return f"a {type(raw).__name__} too large to print"
    return text if len(text) <= 40 else f"{text[:37]}..."


def trigger_level(raw: Any) -> float:
    """The level of a reseed trigger: bools as 0/1, finite numbers as themselves (numbers too
    large for a float as ±1e308), anything else as its truthiness (so "true" from a text field
    counts as pressed)."""
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, int):
        try:
            return float(raw)
        except OverflowError:
            return 1e308 if raw > 0 else -1e308
    if isinstance(raw, float) and math.isfinite(raw):
        return raw
    if isinstance(raw, str):
        return 1.0 if raw.strip().lower() in ("1", "true", "on", "yes") else 0.0
    return 1.0 if raw else 0.0


class ControlForwarder:
    """Diff Scope's parameters against what the daemon was last told; no I/O.

    `observe(params)` records the wanted values and any reseed edge; `pending()` lists the ops
    still to send; `mark_sent(op)` records one as delivered to the socket; `forget_sent()`
    makes every wanted value pending again (after the daemon restarted with its own defaults);
    `start_session()` forgets what the previous Scope session wanted and sent, so the next
    `observe` makes the daemon follow the new session's panel. Parameters Scope never sent are
    never forwarded, so the daemon keeps what `ca-server ctl` set until the user touches that
    control in Scope.
    """

    def __init__(self) -> None:
        self._wanted: dict[str, Any] = {}
        self._sent: dict[str, Any] = {}
        self._last_sent_turn: dict[str, int] = {}  # param -> when it was last sent (a counter)
        self._turn = 0
        self._trigger_level = 0.0
        self._reseeds_pending = 0
        self._tempo = TempoLock()
        self._tempo_lock: dict[str, Any] | None = None  # the newest beat_lock not yet sent
        self.rejected: list[str] = []  # reasons for ignored values, drained by the caller

    def observe(self, params: Mapping[str, Any]) -> None:
        """Take one call's parameters; unknown keys are ignored; never raises."""
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
        lock = self._tempo.observe(params)
        if lock is not None:
            self._tempo_lock = lock

    def pending(self) -> list[ControlOp]:
        """The ops not yet sent to the current daemon, the least recently sent first (ties in
        table order, a reseed after the values it may depend on)."""
        ops = []
        for spec in VALUE_PARAMS:
            value = self._wanted.get(spec.param)
            if value is not None and self._sent.get(spec.param) != value:
                ops.append(ControlOp(spec.op, {spec.arg: value}, spec.param))
        if self._reseeds_pending:
            ops.append(ControlOp("reseed", {}, RESEED_PARAM))
        if self._tempo_lock is not None:
            ops.append(ControlOp("beat_lock", self._tempo_lock, TEMPO_PARAM))
        return sorted(ops, key=lambda op: self._last_sent_turn.get(op.param, -1))

    def mark_sent(self, op: ControlOp) -> None:
        """Record that `op` reached the socket (or was refused for good)."""
        self._turn += 1
        self._last_sent_turn[op.param] = self._turn
        if op.param == RESEED_PARAM:
            self._reseeds_pending = 0
        elif op.param == TEMPO_PARAM:
            self._tempo_lock = None
        else:
            self._sent[op.param] = next(iter(op.args.values()))

    def drop_reseeds(self) -> None:
        """Forget a pending reseed (reseeding a daemon that is not there means nothing)."""
        self._reseeds_pending = 0

    def forget_sent(self) -> None:
        """Make every wanted value pending again, e.g. for a freshly started daemon."""
        self._sent.clear()
        self._tempo.reset()

    def start_session(self) -> None:
        """A new Scope session: its parameters, not the last session's, are what to send.

        The trigger level is kept, so a reseed toggle left on does not fire again by itself.
        """
        self._wanted.clear()
        self._sent.clear()
        self._reseeds_pending = 0
        self._tempo.reset()
