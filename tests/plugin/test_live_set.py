"""What a VJ hits in a live set, each found in real Scope (issue 19, items 1–9).

Sessions come and go on one pipeline instance, the daemon takes seconds to start, Scope shows
only warnings, streams keep the size they opened with, modulation changes a field on every call,
and a panel can hold a value no float can. Driven by the Scope stand-in's call loop against a
fake daemon (a real ring and a real ZeroMQ endpoint).
"""

from __future__ import annotations

import logging
import time

import pytest
from plugin_testkit import HANG_BOUND_S, FakeDaemon
from scope_call_loop import ScopeCallLoop, load_pipeline

from ca_scope_client.frame_source import FrameSource
from ca_scope_client.input_source import CellularAutomataInputSource
from ca_scope_client.pipeline import CellularAutomataPipeline
from ca_scope_client.schema import PRESET_NAMES
from ca_server.presets import DEFAULT_PRESET, ENGINE_NAMES, load_all
from ca_server.wire.ring import RingWriter

torch = pytest.importorskip("torch")


def make_pipeline(ring_name: str, **load_params) -> CellularAutomataPipeline:
    return load_pipeline(
        CellularAutomataPipeline, {"ca_ring_name": ring_name, "ca_device": "cpu", **load_params}
    )


def run_session(loop: ScopeCallLoop, daemon: FakeDaemon, until, bound_s=HANG_BOUND_S) -> None:
    """Step Scope's loop (the daemon publishing and answering) until `until()`."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        daemon.publish(1)
        loop.step()
        daemon.serve(0.002)
        if until():
            return
    raise AssertionError(f"condition not met within {bound_s} s")


# -- 1. a new session makes the daemon follow what its panel shows ----------------------------


def test_a_new_session_resends_what_its_panel_shows(fake_daemon: FakeDaemon) -> None:
    pipeline = make_pipeline(fake_daemon.name)
    panel = {"ca_preset": "labyrinth", "ca_hue_shift": 0.5}
    session_a = ScopeCallLoop(pipeline, panel)
    run_session(session_a, fake_daemon, lambda: len(fake_daemon.ops) >= 2)
    run_session(session_a, fake_daemon, lambda: session_a.calls >= 10)  # it plays a while
    # `ca-server ctl preset coral` and `ctl hue 0` change the daemon behind Scope's back;
    # then the user stops the stream and starts another with the same panel.
    fake_daemon.ops.clear()
    session_b = ScopeCallLoop(pipeline, panel)  # a new processor around the same instance
    run_session(session_b, fake_daemon, lambda: len(fake_daemon.ops) >= 2)
    for _ in range(20):  # and once, not on every call
        fake_daemon.publish(1)
        session_b.step()
        fake_daemon.serve(0.002)
    assert sorted(fake_daemon.ops) == [("hue", {"value": 0.5}), ("preset", {"name": "labyrinth"})]
    pipeline.close()


def test_init_cache_held_while_no_video_comes_back_is_one_session(fake_daemon: FakeDaemon) -> None:
    pipeline = make_pipeline(fake_daemon.name)
    fake_daemon.publish(1)
    for _ in range(200):  # Scope keeps init_cache=True until a call returns video
        pipeline(init_cache=True, ca_preset="labyrinth")
        fake_daemon.serve(0.002)
    assert fake_daemon.ops_named("preset") == [{"name": "labyrinth"}]
    pipeline.close()


# -- 2. a starting daemon is starting, not hung ------------------------------------------------


def test_a_daemon_slow_to_start_is_shown_as_starting_never_as_hung(ring_name: str, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ca_scope_client")
    source = FrameSource(ring_name, stale_after_s=0.2)
    # The ring exists and its writer holds the lock, but it has published nothing for longer
    # than the heartbeat bound (a daemon building its simulation).
    with RingWriter(ring_name, 40, 30, nominal_fps=30.0) as writer:
        placeholders = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            batch = source.poll({})
            if batch is not None:
                placeholders.append(batch)
        assert source.status == "STARTING"
        assert placeholders and placeholders[-1].pixels.shape == (1, 30, 40, 3)  # its size
        np_frame = placeholders[-1].pixels
        writer.write(np_frame[0], sim_step=0, params_version=0)
        deadline = time.monotonic() + HANG_BOUND_S
        batch = None
        while (batch is None or batch.placeholder) and time.monotonic() < deadline:
            batch = source.poll({})
        assert batch is not None and batch.frame_ids == (0,)
    messages = " ".join(caplog.messages)
    assert "starting" in messages
    assert "hung" not in messages and "not updating" not in messages
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    source.close()


# -- 4. recovery is visible at the level of the problem ----------------------------------------


def test_after_a_warning_the_recovery_line_is_a_warning_too(ring_name: str, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="ca_scope_client")  # what Scope shows
    source = FrameSource(ring_name)
    source.poll({})
    assert len(caplog.records) == 1 and "no ca-server daemon" in caplog.messages[0]
    daemon = FakeDaemon(ring_name)
    try:
        deadline = time.monotonic() + HANG_BOUND_S
        batch = None
        while (batch is None or batch.placeholder) and time.monotonic() < deadline:
            daemon.publish(1)
            batch = source.poll({})
        assert batch is not None and not batch.placeholder
        assert len(caplog.records) == 2 and "frames are flowing" in caplog.messages[1]
    finally:
        source.close()
        daemon.close()


def test_without_a_warning_the_attach_line_stays_info(fake_daemon: FakeDaemon, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ca_scope_client")
    source = FrameSource(fake_daemon.name)
    fake_daemon.publish(1)
    assert source.poll({}) is not None
    attached = [r for r in caplog.records if "attached" in r.getMessage()]
    assert len(attached) == 1 and attached[0].levelno == logging.INFO
    source.close()


# -- 5. the placeholder has the size the daemon will serve -------------------------------------


def test_the_placeholder_has_the_size_the_daemon_will_serve(ring_name: str, monkeypatch) -> None:
    monkeypatch.delenv("CA_SERVER_WIDTH", raising=False)
    monkeypatch.delenv("CA_SERVER_HEIGHT", raising=False)
    side = 1024 if torch.cuda.is_available() else 512  # `ca-server serve`'s default here
    # Scope passes the main pipeline's resolution (Krea's 320x576) to every node it loads.
    pipeline = make_pipeline(ring_name, height=320, width=576)
    card = pipeline(init_cache=True)["video"]
    assert tuple(card.shape) == (1, side, side, 3)
    pipeline.close()

    from ca_scope_client.placeholder import CPU_DEFAULT_SIZE, GPU_DEFAULT_SIZE, expected_frame_size
    from ca_server.config import CPU_DEFAULT_SIZE as SERVE_CPU
    from ca_server.config import GPU_DEFAULT_SIZE as SERVE_GPU

    assert (CPU_DEFAULT_SIZE, GPU_DEFAULT_SIZE) == (SERVE_CPU, SERVE_GPU)
    monkeypatch.setenv("CA_SERVER_WIDTH", "640")  # what `ca-server serve` will read too
    assert expected_frame_size(cuda=False) == (CPU_DEFAULT_SIZE, 640)


def test_the_placeholder_keeps_the_size_of_the_last_ring_seen(ring_name: str) -> None:
    source = FrameSource(ring_name, placeholder_size=(512, 512))
    daemon = FakeDaemon(ring_name)
    daemon.publish(1)
    assert source.poll({}) is not None
    daemon.close()
    deadline = time.monotonic() + HANG_BOUND_S
    batch = None
    while (batch is None or not batch.placeholder) and time.monotonic() < deadline:
        batch = source.poll({})
    assert batch is not None and batch.pixels.shape == (1, daemon.height, daemon.width, 3)
    source.close()


# -- 6. Scope's resolution probe ---------------------------------------------------------------


def test_the_input_source_answers_the_resolution_probe(ring_name: str, monkeypatch) -> None:
    monkeypatch.delenv("CA_SERVER_WIDTH", raising=False)
    monkeypatch.delenv("CA_SERVER_HEIGHT", raising=False)
    source = CellularAutomataInputSource()
    daemon = FakeDaemon(ring_name, width=80, height=48)
    try:
        assert source.get_source_resolution(ring_name, timeout_ms=100) == (80, 48)
    finally:
        daemon.close()
    from ca_scope_client.placeholder import expected_frame_size

    height, width = expected_frame_size()  # no daemon yet: what it will serve (the card's size)
    assert source.get_source_resolution(ring_name, timeout_ms=100) == (width, height)
    assert source.get_source_resolution("bad name!", timeout_ms=100) is None


# -- 7. a bad value is ignored once and the video goes on --------------------------------------


@pytest.mark.parametrize(
    ("param", "bad"),
    [
        ("ca_speed", 10**400),
        ("ca_hue_shift", -(10**400)),
        ("ca_speed", float("inf")),
        ("ca_reseed", 10**400),
        ("ca_preset", "coral\ud800"),
    ],
    ids=["huge-speed", "huge-negative-hue", "infinite-speed", "huge-reseed", "lone-surrogate"],
)
def test_a_held_bad_value_never_stops_the_video(
    fake_daemon: FakeDaemon, caplog, param: str, bad
) -> None:
    caplog.set_level(logging.WARNING, logger="ca_scope_client")
    pipeline = make_pipeline(fake_daemon.name)
    loop = ScopeCallLoop(pipeline, {param: bad})
    for _ in range(30):  # Scope re-sends the bad value on every call
        fake_daemon.publish(1)
        assert loop.step().frames >= 1, "the video stopped"
        fake_daemon.serve(0.002)
    assert len(caplog.records) <= 1  # one warning (none for a reseed: a huge press is a press)
    # The value is replaced; nothing is stuck in the pending sends.
    loop.update_parameters({param: 1 if param == "ca_reseed" else None, "ca_speed": 2.0})
    run_session(loop, fake_daemon, lambda: fake_daemon.ops_named("speed"))
    assert fake_daemon.ops_named("speed")[-1] == {"value": 2.0}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    pipeline.close()


# -- 8. modulation is rate-limited, and the last value always arrives --------------------------


def test_modulation_is_coalesced_to_about_60_sends_a_second(fake_daemon: FakeDaemon) -> None:
    fake_time = [0.0]
    source = FrameSource(fake_daemon.name, clock=lambda: fake_time[0])
    fake_daemon.publish(1)
    calls, step_s = 2000, 0.001  # Scope calls every ms; tempo modulation moves two fields
    for i in range(calls):
        source.poll({"ca_speed": 1.0 + (i % 97) / 100, "ca_hue_shift": (i % 89) / 100})
        if i % 50 == 0:
            fake_daemon.publish(1)  # its heartbeat: a daemon that stops beating gets nothing
        fake_daemon.serve(0.0)
        fake_time[0] += step_s
    final = {"ca_speed": 1.0 + ((calls - 1) % 97) / 100, "ca_hue_shift": ((calls - 1) % 89) / 100}
    for _ in range(50):  # the drag has stopped; the budget refills
        source.poll(final)
        fake_daemon.serve(0.002)
        fake_time[0] += 0.01
    fake_daemon.serve(0.1)
    sent = sum(source.ops_sent.values())
    assert sent == len(fake_daemon.ops)
    assert sent <= 5 + 60 * (calls * step_s + 0.5) + 2  # burst + 60/s over the fake time
    speeds, hues = fake_daemon.ops_named("speed"), fake_daemon.ops_named("hue")
    assert len(speeds) >= 30 and len(hues) >= 30  # neither field starves the other
    assert speeds[-1] == {"value": final["ca_speed"]}
    assert hues[-1] == {"value": final["ca_hue_shift"]}
    source.close()


# -- 9. the dropdown is ordered for people, with the ids users type ----------------------------


def test_the_dropdown_lists_the_show_presets_then_the_rest_by_engine() -> None:
    presets = {p.name: p for p in load_all()}
    assert sorted(PRESET_NAMES) == sorted(presets)  # every id, as `ctl preset` takes it
    default_order = presets[DEFAULT_PRESET].order
    show = [name for name in PRESET_NAMES if presets[name].order < default_order]
    assert list(PRESET_NAMES[: len(show)]) == show  # the curated show first, in its order
    assert show == sorted(show, key=lambda name: presets[name].order)
    rest = list(PRESET_NAMES[len(show) :])
    ranks = [(ENGINE_NAMES.index(presets[name].engine), name) for name in rest]
    assert ranks == sorted(ranks)  # then grouped by engine, alphabetical within one


def test_an_op_the_socket_cannot_take_is_dropped_not_retried_forever() -> None:
    from ca_scope_client.control_link import ControlLink

    class EncodingFailsOnce:  # the transport seam: ControlClient.send / poll_replies
        def __init__(self) -> None:
            self.sent: list[str] = []

        def send(self, op: str, **args) -> int:
            if op == "preset":
                raise UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed")
            self.sent.append(op)
            return len(self.sent)

        def poll_replies(self) -> list:
            return []

    warnings: list[str] = []
    link = ControlLink(warnings.append)
    link.observe({"ca_preset": "coral", "ca_speed": 2.0})
    client = EncodingFailsOnce()
    for call in range(10):
        link.exchange(client, now=call * 0.1)
    assert client.sent == ["speed"] and link.forwarder.pending() == []
    assert len(warnings) == 1 and "UnicodeEncodeError" in warnings[0]
