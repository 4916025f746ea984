"""The plugin against a real `ca-server serve` subprocess, called the way Scope calls it.

The call loop runs on its own thread, as in Scope, while the test starts, kills and restarts
the daemon. Frame ids are observed by wrapping `FrameSource.poll`; everything else is what a
Scope user would see: the returned dicts, the daemon's status, the log.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from plugin_testkit import HANG_BOUND_S, RealDaemon
from scope_call_loop import ScopeCallLoop, load_pipeline

from ca_scope_client.pipeline import CellularAutomataPipeline
from ca_server.presets import preset_names

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.subprocess

FEW_CALLS = 50
NO_HANG_S = 0.5  # a call must return within "a few ms"; this bound only catches blocking
RESUME_BOUND_S = 2.0


class LoopThread:
    """Scope's worker thread: calls the pipeline in a tight loop and records what it returns."""

    def __init__(self, pipeline: CellularAutomataPipeline, initial: dict[str, Any] | None = None):
        self.loop = ScopeCallLoop(pipeline, initial)
        self.batches: list[tuple[float, bool, tuple[int, ...]]] = []
        self.videos: list[tuple[tuple[int, ...], Any, Any]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        poll = pipeline.source.poll

        def spy(params=None):
            batch = poll(params)
            if batch is not None:
                self.batches.append((time.monotonic(), batch.placeholder, batch.frame_ids))
            return batch

        pipeline.source.poll = spy
        self.loop.on_video = self._on_video
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_video(self, uint8, output) -> None:
        video = output["video"]
        self.videos.append((tuple(video.shape), video.dtype, output.get("frame_rate")))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.loop.step()
            except BaseException as exc:
                self.errors.append(exc)
                return

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=HANG_BOUND_S)
        assert not self._thread.is_alive(), "the call loop hung"

    def real_ids(self, since_s: float = 0.0) -> list[int]:
        return [i for t, ph, ids in self.batches if not ph and t >= since_s for i in ids]

    def first_real_frame_s(self, since_s: float) -> float | None:
        times = [t for t, ph, _ in self.batches if not ph and t >= since_s]
        return times[0] if times else None

    def wait(self, predicate, bound_s: float = HANG_BOUND_S) -> bool:
        deadline = time.monotonic() + bound_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            assert not self.errors, self.errors
            time.sleep(0.01)
        return False


def make_pipeline(name: str) -> CellularAutomataPipeline:
    return load_pipeline(CellularAutomataPipeline, {"ca_ring_name": name, "ca_device": "cpu"})


def test_frames_arrive_unique_in_order_with_the_right_shape(real_daemon: RealDaemon) -> None:
    real_daemon.start()
    pipeline = make_pipeline(real_daemon.name)
    with LoopThread(pipeline) as thread:
        assert thread.wait(lambda: len(thread.real_ids()) >= 20)
    ids = thread.real_ids()
    assert ids == sorted(set(ids)), "frames repeated or out of order"
    size = real_daemon.size
    real_videos = [v for v in thread.videos if v[0][1:] == (size, size, 3)]
    assert sum(shape[0] for shape, _, _ in real_videos) == len(ids)
    for shape, dtype, _ in real_videos:
        assert 1 <= shape[0] <= 4 and dtype == torch.float32
    assert real_videos[0][2] == pytest.approx(30.0)  # the daemon's rate, reported on change
    assert thread.loop.max_call_s < NO_HANG_S
    pipeline.close()


def test_a_preset_change_reaches_the_daemon_within_a_few_calls(real_daemon: RealDaemon) -> None:
    real_daemon.start()
    current = real_daemon.status()["preset"]
    other = next(name for name in preset_names() if name != current)
    pipeline = make_pipeline(real_daemon.name)
    loop = ScopeCallLoop(pipeline)
    deadline = time.monotonic() + HANG_BOUND_S
    while not pipeline.source.live and time.monotonic() < deadline:
        loop.step()
    loop.update_parameters({"ca_preset": other})
    # Usually the first call sends it; on a loaded box the control socket may still be
    # connecting, and the source retries every 20 ms, so allow a few dozen calls (≈ 0.5 s).
    for _ in range(FEW_CALLS):
        loop.step()
        if pipeline.source.ops_sent["preset"]:
            break
    for _ in range(3):
        loop.step()  # and it is sent once, not on every call
    assert pipeline.source.ops_sent["preset"] == 1
    deadline = time.monotonic() + HANG_BOUND_S
    while real_daemon.status()["preset"] != other and time.monotonic() < deadline:
        loop.step()
    assert real_daemon.status()["preset"] == other
    pipeline.close()


def test_reseed_held_on_for_1000_calls_reseeds_exactly_once(real_daemon: RealDaemon) -> None:
    real_daemon.start()
    before = real_daemon.status()
    pipeline = make_pipeline(real_daemon.name)
    loop = ScopeCallLoop(pipeline)
    deadline = time.monotonic() + HANG_BOUND_S
    while not pipeline.source.live and time.monotonic() < deadline:
        loop.step()
    loop.update_parameters({"ca_reseed": True})
    for _ in range(1000):
        loop.step()
    deadline = time.monotonic() + HANG_BOUND_S  # until the daemon has applied what was sent
    while real_daemon.status()["params_version"] == before["params_version"]:
        assert time.monotonic() < deadline, "the reseed never arrived"
        loop.step()
    after = real_daemon.status()
    assert after["params_version"] - before["params_version"] == 1
    assert after["seed"] != before["seed"]
    assert pipeline.source.ops_sent == {"reseed": 1}
    assert not pipeline.source.ops_refused
    pipeline.close()


def test_killed_daemon_then_restarted_frames_resume(
    real_daemon: RealDaemon, ring_name: str, runtime_dir, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="ca_scope_client")
    real_daemon.start()
    pipeline = make_pipeline(ring_name)
    with LoopThread(pipeline, {"ca_speed": 2.0}) as thread:
        assert thread.wait(lambda: len(thread.real_ids()) >= 5)
        real_daemon.kill()
        killed_s = time.monotonic()
        # The dead writer is noticed (its lock is free) and the placeholder comes up.
        assert thread.wait(lambda: any(ph for t, ph, _ in thread.batches if t > killed_s))
        calls_while_dead = thread.loop.calls  # still being called, still returning:
        assert thread.wait(lambda: thread.loop.calls > calls_while_dead + 50)
        restarted = RealDaemon(ring_name, runtime_dir)
        try:
            restarted.start()
            ready_s = time.monotonic()
            assert thread.wait(lambda: thread.first_real_frame_s(killed_s) is not None)
            assert thread.first_real_frame_s(killed_s) <= ready_s + RESUME_BOUND_S
            # The restarted daemon is told the speed Scope still asks for.
            assert thread.wait(lambda: restarted.status()["speed"] == 2.0)
        finally:
            restarted.stop()
    assert not thread.errors
    assert thread.loop.max_call_s < NO_HANG_S
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    pipeline.close()


def test_daemon_absent_at_load_shows_the_placeholder_then_attaches(
    real_daemon: RealDaemon, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="ca_scope_client")
    pipeline = make_pipeline(real_daemon.name)
    with LoopThread(pipeline) as thread:
        assert thread.wait(lambda: len(thread.batches) >= 2)
        assert all(placeholder for _, placeholder, _ in thread.batches)
        shape, _, rate = thread.videos[0]
        assert shape == (1, 512, 512, 3) and rate <= 2.0
        real_daemon.start()
        ready_s = time.monotonic()
        assert thread.wait(lambda: thread.real_ids())
        assert thread.first_real_frame_s(0.0) <= ready_s + RESUME_BOUND_S
    assert not thread.errors
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # The problem, then (Scope shows only warnings) the recovery at the same level; the
    # daemon's start-up in between is never reported as a hang.
    assert len(warnings) == 2, warnings
    assert f"ca-server serve --name {real_daemon.name}" in warnings[0]
    assert "attached" in warnings[1] and "frames are flowing" in warnings[1]
    assert not any("hung" in m or "not updating" in m for m in caplog.messages)
    pipeline.close()


def test_a_new_session_brings_back_what_its_panel_shows(real_daemon: RealDaemon) -> None:
    real_daemon.start()
    pipeline = make_pipeline(real_daemon.name)
    panel = {"ca_preset": "labyrinth", "ca_hue_shift": 0.5}

    def shows_panel() -> bool:
        status = real_daemon.status()
        return status["preset"] == "labyrinth" and status["hue"] == 0.5

    with LoopThread(pipeline, panel) as session_a:
        assert session_a.wait(shows_panel)
    # Between sessions someone changes the daemon from the command line.
    assert real_daemon.ctl("preset", "coral").returncode == 0
    assert real_daemon.ctl("hue", "0").returncode == 0
    assert not shows_panel()
    with LoopThread(pipeline, panel) as session_b:  # same instance, a new session
        assert session_b.wait(shows_panel)
    pipeline.close()


def test_scopes_tempo_sync_reaches_the_daemons_beat_clock(real_daemon: RealDaemon) -> None:
    real_daemon.start()
    pipeline = make_pipeline(real_daemon.name)
    loop = ScopeCallLoop(pipeline)
    deadline = time.monotonic() + HANG_BOUND_S
    while not pipeline.source.live and time.monotonic() < deadline:
        loop.step()
    started_s = time.monotonic()
    loop.update_parameters({"bpm": 126.0, "beat_phase": 0.5, "beat_count": 7, "ca_beat": 0.25})
    while time.monotonic() < deadline:  # Scope sends tempo sync's values on every call
        beats = 7.5 + (time.monotonic() - started_s) * 126.0 / 60
        loop.update_parameters({"beat_phase": beats % 1, "beat_count": int(beats)})
        loop.step()
        beat = real_daemon.status()["beat"]
        if beat["source"] == "scope" and beat["amount"] == 0.25:
            break
    assert beat["bpm"] == 126.0 and beat["source"] == "scope" and beat["amount"] == 0.25
    assert pipeline.source.ops_sent["beat_lock"] <= 2 + (time.monotonic() - started_s)
    pipeline.close()
