"""The Scope pipeline driven by a reproduction of Scope's call loop, against a fake daemon."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from plugin_testkit import HANG_BOUND_S, FakeDaemon, decode_frame_id
from scope_call_loop import ScopeCallLoop, load_pipeline

from ca_scope_client.pipeline import CellularAutomataPipeline, resolve_ring_name

torch = pytest.importorskip("torch")

NO_HANG_S = 0.5


def make_pipeline(ring_name: str, **load_params) -> CellularAutomataPipeline:
    return load_pipeline(
        CellularAutomataPipeline, {"ca_ring_name": ring_name, "ca_device": "cpu", **load_params}
    )


def test_calls_return_new_frames_as_float_thwc_in_unit_range(fake_daemon: FakeDaemon) -> None:
    pipeline = make_pipeline(fake_daemon.name, ca_frames_per_call=3)
    loop = ScopeCallLoop(pipeline)
    ids: list[int] = []
    rates: list[float | None] = []
    for _ in range(15):
        fake_daemon.publish(2)
        record = loop.step()
        video = record.output["video"]
        assert isinstance(video, torch.Tensor) and video.dtype == torch.float32
        assert video.device.type == "cpu"
        assert video.shape[1:] == (fake_daemon.height, fake_daemon.width, 3)
        assert 1 <= video.shape[0] <= 3
        assert float(video.min()) >= 0.0 and float(video.max()) <= 1.0
        rates.append(record.output.get("frame_rate"))
        # Scope turns floats back into uint8; the frame ids must survive that exactly.
        uint8 = (video * 255.0).clamp(0, 255).to(torch.uint8).numpy()
        ids += [decode_frame_id(frame) for frame in uint8]
        assert loop.step().output == {}  # nothing new: {} (and the loop sleeps 10 ms)
    assert ids == list(range(30))
    # The rate is reported once per session (Scope latches it), not on every call.
    assert rates[0] == pytest.approx(30.0) and rates[1:] == [None] * 14
    fake_daemon.publish(1)
    assert pipeline(init_cache=True)["frame_rate"] == pytest.approx(30.0)
    pipeline.close()


def test_pixels_survive_the_round_trip_through_scope_exactly(fake_daemon: FakeDaemon) -> None:
    pipeline = make_pipeline(fake_daemon.name)
    loop = ScopeCallLoop(pipeline)
    frames: list[np.ndarray] = []
    loop.on_video = lambda uint8, _output: frames.extend(uint8)
    fake_daemon.publish(1)
    loop.step()
    expected = np.arange(fake_daemon.width, dtype=np.uint8)  # the blue ramp of frame_pattern
    assert len(frames) == 1 and np.array_equal(frames[0][5, :, 2], expected)
    pipeline.close()


def test_uint8_output_is_fresh_memory_each_call(fake_daemon: FakeDaemon) -> None:
    pipeline = make_pipeline(fake_daemon.name, ca_output_dtype="uint8")
    loop = ScopeCallLoop(pipeline)
    fake_daemon.publish(1)
    first = loop.step().output["video"]
    fake_daemon.publish(1)
    second = loop.step().output["video"]
    assert first.dtype == torch.uint8 and second.dtype == torch.uint8
    assert first.data_ptr() != second.data_ptr()
    assert decode_frame_id(first[0].numpy()) == 0 and decode_frame_id(second[0].numpy()) == 1
    pipeline.close()


def test_parameters_are_forwarded_without_waiting(fake_daemon: FakeDaemon) -> None:
    pipeline = make_pipeline(fake_daemon.name)
    loop = ScopeCallLoop(pipeline, {"pipeline_ids": ["x"], "input_mode": "text"})
    loop.update_parameters({"ca_preset": "labyrinth"})
    loop.update_parameters({"ca_hue_shift": 0.25})
    deadline = time.monotonic() + HANG_BOUND_S
    while len(fake_daemon.ops) < 2 and time.monotonic() < deadline:
        fake_daemon.publish(1)
        loop.step()
        fake_daemon.serve(0.002)
    assert sorted(fake_daemon.ops) == [("hue", {"value": 0.25}), ("preset", {"name": "labyrinth"})]
    assert loop.max_call_s < NO_HANG_S
    pipeline.close()


def test_absent_daemon_never_raises_and_shows_the_placeholder(ring_name: str, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="ca_scope_client")
    pipeline = make_pipeline(ring_name)
    loop = ScopeCallLoop(pipeline, {"ca_preset": "coral", "ca_speed": "garbage"})
    placeholders = []
    loop.on_video = lambda uint8, output: placeholders.append((uint8, output.get("frame_rate")))
    loop.run(seconds=1.2)
    assert 2 <= len(placeholders) <= 4
    frame, rate = placeholders[0]
    assert frame.shape == (1, 512, 512, 3) and rate <= 2.0
    assert loop.max_call_s < NO_HANG_S
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert f"ca-server serve --name {ring_name}" in messages
    pipeline.close()


def test_a_failure_inside_a_call_is_logged_once_and_answered_with_nothing(
    fake_daemon: FakeDaemon, caplog
) -> None:
    pipeline = make_pipeline(fake_daemon.name)

    def broken(params=None):
        raise RuntimeError("simulated bug")

    pipeline.source.poll = broken
    caplog.set_level(logging.ERROR, logger="ca_scope_client")
    assert all(pipeline(init_cache=False) == {} for _ in range(20))
    assert sum("simulated bug" in r.getMessage() for r in caplog.records) == 1
    pipeline.close()


def test_prepare_asks_for_no_input_frames(ring_name: str) -> None:
    pipeline = make_pipeline(ring_name)
    assert pipeline.prepare(video=True, input_mode="video") is None
    pipeline.close()


def test_ring_name_defaults(monkeypatch) -> None:
    monkeypatch.delenv("CA_SERVER_NAME", raising=False)
    assert resolve_ring_name("") == "gpu0"
    monkeypatch.setenv("CA_SERVER_NAME", "gpu3")
    assert resolve_ring_name("") == "gpu3"
    assert resolve_ring_name(" mine ") == "mine"


def test_bad_load_params_fail_the_load_with_a_clear_message(ring_name: str) -> None:
    with pytest.raises(ValueError, match="ca_output_dtype"):
        make_pipeline(ring_name, ca_output_dtype="float64")
    with pytest.raises(Exception, match="invalid ring name"):
        make_pipeline("bad name!")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            make_pipeline(ring_name, ca_device="cuda")
