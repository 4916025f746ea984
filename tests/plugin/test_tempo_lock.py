"""Scope's tempo sync reaches the daemon as occasional timestamped locks, and the beat amount is
a modulatable slider (Scope passes `bpm`, `beat_phase`, `beat_count`, `bar_position` and
`is_playing` to `__call__` when tempo sync is on; it modulates `modulatable` fields per frame)."""

from __future__ import annotations

from ca_scope_client.control_forwarder import ControlForwarder
from ca_scope_client.tempo_lock import REFRESH_S, TempoLock


class FakeClock:
    def __init__(self) -> None:
        self.t_ns = 5_000_000_000

    def __call__(self) -> int:
        return self.t_ns

    def advance(self, seconds: float) -> None:
        self.t_ns += int(seconds * 1e9)


def scope_params(t_s: float, bpm: float = 120.0, start: float = 10.0) -> dict:
    beat = start + t_s * bpm / 60
    return {"bpm": bpm, "beat_phase": beat % 1, "beat_count": int(beat), "is_playing": True}


def test_a_steady_beat_is_locked_once_a_second_not_on_every_call() -> None:
    clock = FakeClock()
    tempo = TempoLock(clock)
    locks = []
    for frame in range(300):  # 10 s of calls at 30 a second
        t_s = frame / 30
        clock.t_ns = 5_000_000_000 + round(t_s * 1e9)
        lock = tempo.observe(scope_params(t_s))
        if lock is not None:
            locks.append(lock)
    assert 8 <= len(locks) <= 11  # about one per REFRESH_S
    assert REFRESH_S == 1.0
    first = locks[0]
    assert first == {"bpm": 120.0, "beat": 10.0, "t_ns": 5_000_000_000, "source": "scope"}


def test_a_tempo_change_or_a_jump_is_locked_at_once() -> None:
    clock = FakeClock()
    tempo = TempoLock(clock)
    assert tempo.observe(scope_params(0.0)) is not None
    clock.advance(0.1)
    assert tempo.observe(scope_params(0.1)) is None
    clock.advance(0.1)
    assert (
        tempo.observe(scope_params(0.2, bpm=128.0, start=10.0 - 0.2 * 128 / 60 + 0.4)) is not None
    )
    clock.advance(0.1)
    assert tempo.observe({**scope_params(0.3), "beat_phase": 0.9}) is not None  # a jump


def test_no_tempo_sync_or_a_stopped_transport_sends_nothing() -> None:
    tempo = TempoLock(FakeClock())
    assert tempo.observe({"ca_speed": 1.0}) is None
    assert tempo.observe({**scope_params(0.0), "is_playing": False}) is None
    assert tempo.observe({**scope_params(0.0), "bpm": float("nan")}) is None
    assert tempo.observe({**scope_params(0.0), "bpm": 0.0}) is None


def test_the_forwarder_sends_the_lock_and_the_beat_amount() -> None:
    forwarder = ControlForwarder()
    forwarder.observe({**scope_params(0.0), "ca_beat": 1.5})
    ops = {op.op: dict(op.args) for op in forwarder.pending()}
    assert ops["beat"] == {"value": 1.5}
    assert ops["beat_lock"]["bpm"] == 120.0 and ops["beat_lock"]["source"] == "scope"
    for op in forwarder.pending():
        forwarder.mark_sent(op)
    forwarder.observe({**scope_params(0.0), "ca_beat": 1.5})
    assert forwarder.pending() == []  # Scope re-sends everything: nothing new
    forwarder.forget_sent()  # a restarted daemon: the tempo again, at once
    forwarder.observe({**scope_params(0.0), "ca_beat": 1.5})
    assert {op.op for op in forwarder.pending()} == {"beat", "beat_lock"}


def test_beat_is_a_modulatable_slider_with_the_daemons_range() -> None:
    from ca_scope_client.schema import CellularAutomataConfig

    prop = CellularAutomataConfig.model_json_schema()["properties"]["ca_beat"]
    assert (prop["minimum"], prop["maximum"], prop["default"]) == (0.0, 2.0, 1.0)
    assert prop["ui"]["modulatable"] is True and prop["ui"]["is_load_param"] is False
