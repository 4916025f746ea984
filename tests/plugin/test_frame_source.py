"""FrameSource (the Scope-agnostic core) against a real ring and a real ZeroMQ endpoint."""

from __future__ import annotations

import gc
import logging
import time

import numpy as np
import pytest
from plugin_testkit import HANG_BOUND_S, FakeDaemon, decode_frame_id

from ca_scope_client.frame_source import FrameSource

NO_HANG_S = 0.5  # a poll is a bounded memcpy plus non-blocking sends; this only catches hangs


def poll_until(source: FrameSource, predicate, *, params=None, daemon=None, bound_s=HANG_BOUND_S):
    """Poll (serving the fake daemon between polls) until `predicate(batch)`; return batches."""
    batches = []
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        batch = source.poll(params)
        if batch is not None:
            batches.append(batch)
        if daemon is not None:
            daemon.serve(0.002)
        if predicate(batch):
            return batches
        time.sleep(0.002)
    raise AssertionError(f"condition not met within {bound_s} s")


def test_frames_arrive_unique_in_order_and_at_most_t_per_poll(fake_daemon: FakeDaemon) -> None:
    source = FrameSource(fake_daemon.name, frames_per_call=3)
    seen: list[int] = []
    for _ in range(20):
        fake_daemon.publish(2)
        batch = source.poll({})
        assert batch is not None and not batch.placeholder
        assert batch.pixels.shape[1:] == (fake_daemon.height, fake_daemon.width, 3)
        assert batch.pixels.dtype == np.uint8
        assert 1 <= len(batch.frame_ids) <= 3
        assert [decode_frame_id(f) for f in batch.pixels] == list(batch.frame_ids)
        seen += batch.frame_ids
        assert source.poll({}) is None  # nothing new: nothing returned
    assert seen == sorted(set(seen)) == list(range(40))
    assert source.fps == pytest.approx(30.0)
    source.close()


def test_a_slow_caller_gets_the_newest_frames(fake_daemon: FakeDaemon) -> None:
    source = FrameSource(fake_daemon.name, frames_per_call=4)
    source.poll({})
    fake_daemon.publish(7)
    batch = source.poll({})
    assert batch is not None and batch.frame_ids == (3, 4, 5, 6)
    source.close()


def test_reads_land_in_the_buffer_the_factory_made(fake_daemon: FakeDaemon) -> None:
    made = []

    def factory(frames: int, height: int, width: int) -> np.ndarray:
        made.append(np.zeros((frames, height, width, 3), dtype=np.uint8))
        return made[-1]

    source = FrameSource(fake_daemon.name, frames_per_call=2, buffer_factory=factory)
    fake_daemon.publish(1)
    source.poll({})  # attaches: learns the geometry and makes the buffer
    fake_daemon.publish(2)
    batch = source.poll({})
    assert len(made) == 1 and made[0].shape == (2, fake_daemon.height, fake_daemon.width, 3)
    assert batch is not None and np.shares_memory(batch.pixels, made[0])
    source.close()


def test_changed_parameters_reach_the_daemon_once(fake_daemon: FakeDaemon) -> None:
    source = FrameSource(fake_daemon.name)
    params = {"ca_preset": "labyrinth", "ca_speed": 3.0, "base_seed": 1}
    poll_until(
        source,
        lambda _: len(fake_daemon.ops) >= 2,
        params=params,
        daemon=fake_daemon,
    )
    for _ in range(200):
        source.poll(params)
        fake_daemon.serve(0.0)
    fake_daemon.serve(0.05)
    assert sorted(fake_daemon.ops) == [("preset", {"name": "labyrinth"}), ("speed", {"value": 3.0})]
    source.close()


def test_reseed_held_on_for_1000_polls_reseeds_the_daemon_once(fake_daemon: FakeDaemon) -> None:
    fake_daemon.publish(1)  # running, not starting: a reseed pressed during start-up is moot
    source = FrameSource(fake_daemon.name)
    for _ in range(1000):
        source.poll({"ca_reseed": True})
        fake_daemon.serve(0.0)
    poll_until(source, lambda _: fake_daemon.ops_named("reseed"), daemon=fake_daemon)
    fake_daemon.serve(0.05)
    assert fake_daemon.ops_named("reseed") == [{"seed": None}]
    assert source.ops_sent["reseed"] == 1
    source.close()


def test_a_refused_value_is_logged_once(fake_daemon: FakeDaemon, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="ca_scope_client")
    source = FrameSource(fake_daemon.name)
    poll_until(
        source,
        lambda _: source.ops_refused["preset"] == 1,
        params={"ca_preset": "no_such_preset"},
        daemon=fake_daemon,
    )
    for _ in range(50):
        source.poll({"ca_preset": "no_such_preset"})
        fake_daemon.serve(0.0)
    refusals = [r for r in caplog.records if "refused preset" in r.getMessage()]
    assert len(refusals) == 1 and "no_such_preset" in refusals[0].getMessage()
    source.close()


def test_absent_daemon_gives_placeholders_at_a_low_rate_then_frames(ring_name: str, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ca_scope_client")
    source = FrameSource(ring_name, placeholder_size=(40, 60))
    placeholders, slowest_s = 0, 0.0
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        started = time.monotonic()
        batch = source.poll({"ca_preset": "coral", "ca_reseed": True})
        slowest_s = max(slowest_s, time.monotonic() - started)
        if batch is not None:
            assert batch.placeholder and batch.pixels.shape == (1, 40, 60, 3)
            assert batch.fps is not None and batch.fps <= 2.0
            placeholders += 1
    assert 2 <= placeholders <= 4  # about 2 per second, first one at once
    assert slowest_s < NO_HANG_S
    assert source.status == "ABSENT"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert ring_name in warnings[0] and f"ca-server serve --name {ring_name}" in warnings[0]

    daemon = FakeDaemon(ring_name)
    try:
        daemon.publish(3)
        batches = poll_until(
            source,
            lambda b: b is not None and not b.placeholder,
            params={"ca_preset": "coral", "ca_reseed": True},
            daemon=daemon,
            bound_s=2.0 + 1.0,  # re-probed every 0.5 s; 1 s of slack for a loaded box
        )
        assert batches[-1].frame_ids == (0, 1, 2)[-source.frames_per_call :]
        poll_until(source, lambda _: daemon.ops, params={"ca_preset": "coral"}, daemon=daemon)
        daemon.serve(0.05)
        # The preset wanted while absent is delivered; the reseed pressed meanwhile is not.
        assert daemon.ops == [("preset", {"name": "coral"})]
        assert any("attached" in r.getMessage() for r in caplog.records)
    finally:
        source.close()
        daemon.close()


def test_a_restarted_daemon_gets_frames_read_and_values_resent(ring_name: str) -> None:
    first = FakeDaemon(ring_name)
    source = FrameSource(ring_name)
    params = {"ca_speed": 2.5}
    poll_until(source, lambda _: first.ops, params=params, daemon=first)
    first.publish(5)
    source.poll(params)
    first.close()
    second = FakeDaemon(ring_name)
    try:
        second.publish(2)
        batches = poll_until(
            source, lambda b: b is not None and not b.placeholder, params=params, daemon=second
        )
        assert batches[-1].frame_ids == (0, 1)  # ids restart with the new epoch
        poll_until(source, lambda _: second.ops, params=params, daemon=second)
        assert second.ops == [("speed", {"value": 2.5})]
    finally:
        source.close()
        second.close()


def test_the_finalizer_releases_the_ring_when_the_source_is_dropped(
    fake_daemon: FakeDaemon,
) -> None:
    source = FrameSource(fake_daemon.name)
    fake_daemon.publish(1)
    source.poll({"ca_speed": 1.5})
    handles = source._handles
    assert handles.reader is not None and handles.client is not None
    del source
    gc.collect()
    assert handles.reader is None and handles.client is None


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_frames_per_call_is_a_clear_error(ring_name: str, bad) -> None:
    with pytest.raises(ValueError, match="frames_per_call"):
        FrameSource(ring_name, frames_per_call=bad)


def test_bad_ring_name_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="invalid ring name"):
        FrameSource("../etc/passwd")
