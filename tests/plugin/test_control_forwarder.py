"""ControlForwarder: Scope's re-sent parameters become only the ops that change something."""

from __future__ import annotations

import pytest

from ca_scope_client.control_forwarder import ControlForwarder, trigger_level


def drain(forwarder: ControlForwarder) -> list[tuple[str, dict]]:
    sent = []
    for op in list(forwarder.pending()):
        forwarder.mark_sent(op)
        sent.append((op.op, dict(op.args)))
    return sent


def test_unchanged_parameters_are_sent_once() -> None:
    forwarder = ControlForwarder()
    params = {"ca_preset": "orbium", "ca_speed": 2.0, "prompts": ["ignored"], "base_seed": 7}
    sent = []
    for _ in range(100):
        forwarder.observe(params)
        sent += drain(forwarder)
    assert sorted(sent) == [("preset", {"name": "orbium"}), ("speed", {"value": 2.0})]


def test_a_change_is_sent_and_only_the_change() -> None:
    forwarder = ControlForwarder()
    forwarder.observe({"ca_hue_shift": 0.25, "ca_brightness": 1.5})
    drain(forwarder)
    forwarder.observe({"ca_hue_shift": 0.5, "ca_brightness": 1.5})
    assert drain(forwarder) == [("hue", {"value": 0.5})]


def test_untouched_parameters_are_never_sent() -> None:
    forwarder = ControlForwarder()
    forwarder.observe({"pipeline_ids": ["x"], "input_mode": "text", "init_cache": True})
    assert drain(forwarder) == []


@pytest.mark.parametrize(
    ("param", "raw", "expected"),
    [
        ("ca_speed", 99, ("speed", {"value": 8.0})),
        ("ca_speed", -1, ("speed", {"value": 0.0})),
        ("ca_hue_shift", "0.5", ("hue", {"value": 0.5})),
        ("ca_brightness", 2, ("brightness", {"value": 2.0})),
    ],
)
def test_values_are_coerced_into_the_daemons_range(param, raw, expected) -> None:
    forwarder = ControlForwarder()
    forwarder.observe({param: raw})
    assert drain(forwarder) == [expected]


def test_garbage_values_are_reported_once_and_never_sent() -> None:
    forwarder = ControlForwarder()
    for _ in range(5):
        forwarder.observe({"ca_speed": "fast", "ca_hue_shift": float("nan"), "ca_preset": 3})
    assert drain(forwarder) == []
    assert len(forwarder.rejected) == 3
    assert any("ca_speed" in why for why in forwarder.rejected)


def test_reseed_held_on_for_1000_calls_reseeds_once() -> None:
    forwarder = ControlForwarder()
    sent = []
    for _ in range(1000):
        forwarder.observe({"ca_reseed": True})
        sent += drain(forwarder)
    assert sent == [("reseed", {})]


def test_reseed_fires_on_each_off_to_on_edge_only() -> None:
    forwarder = ControlForwarder()
    sent = []
    for value in [False, True, True, False, False, True, False]:
        forwarder.observe({"ca_reseed": value})
        sent += drain(forwarder)
    assert sent == [("reseed", {}), ("reseed", {})]


def test_integer_trigger_reseeds_on_every_increase() -> None:
    forwarder = ControlForwarder()
    sent = []
    for value in [0, 1, 1, 2, 5, 5, 0, 1]:
        forwarder.observe({"ca_reseed": value})
        sent += drain(forwarder)
    assert sent.count(("reseed", {})) == 4  # 0→1, 1→2, 2→5, 0→1


def test_a_restarted_daemon_is_told_the_wanted_values_again_but_not_reseeded() -> None:
    forwarder = ControlForwarder()
    forwarder.observe({"ca_preset": "coral", "ca_reseed": True})
    assert len(drain(forwarder)) == 2
    forwarder.forget_sent()
    forwarder.observe({"ca_preset": "coral", "ca_reseed": True})
    assert drain(forwarder) == [("preset", {"name": "coral"})]


def test_a_pending_reseed_can_be_dropped() -> None:
    forwarder = ControlForwarder()
    forwarder.observe({"ca_reseed": 1})
    forwarder.drop_reseeds()
    assert drain(forwarder) == []


@pytest.mark.parametrize(
    ("raw", "level"), [(True, 1.0), (False, 0.0), (3, 3.0), ("on", 1.0), ("off", 0.0), (None, 0.0)]
)
def test_trigger_level(raw, level) -> None:
    assert trigger_level(raw) == level
