"""The placeholder card, and the input source that exposes a ring to Scope's Workflow Builder."""

from __future__ import annotations

import numpy as np
import pytest
from plugin_testkit import FakeDaemon, decode_frame_id

from ca_scope_client.input_source import CellularAutomataInputSource, list_ring_names
from ca_scope_client.placeholder import BACKGROUND_RGB, STRIPE_RGB, placeholder_frame


def test_placeholder_is_a_recognisable_card_with_text() -> None:
    frame = placeholder_frame(120, 320, "no ca-server daemon on ring 'gpu0'", "start it")
    assert frame.shape == (1, 120, 320, 3) and frame.dtype == np.uint8
    assert not frame.flags.writeable
    colours = {tuple(int(c) for c in px) for px in frame[0].reshape(-1, 3)}
    assert tuple(STRIPE_RGB) in colours and tuple(BACKGROUND_RGB) in colours
    middle = frame[0, 40:80]
    assert len({tuple(px) for px in middle.reshape(-1, 3)}) > 2  # text drawn across the middle
    assert placeholder_frame(120, 320, "no ca-server daemon on ring 'gpu0'", "start it") is frame


def test_input_source_delivers_every_frame_in_order(fake_daemon: FakeDaemon) -> None:
    source = CellularAutomataInputSource()
    assert fake_daemon.name in [info.identifier for info in source.list_sources()]
    assert fake_daemon.name in list_ring_names()
    assert source.connect(fake_daemon.name)
    fake_daemon.publish(1)
    first = source.receive_frame(timeout_ms=1000)
    assert first is not None and decode_frame_id(first) == 0
    fake_daemon.publish(3)
    frames = [source.receive_frame(timeout_ms=1000) for _ in range(3)]
    assert [decode_frame_id(f) for f in frames] == [1, 2, 3]
    assert frames[0].shape == (fake_daemon.height, fake_daemon.width, 3)
    assert frames[0].dtype == np.uint8 and frames[0].flags.writeable
    assert source.receive_frame(timeout_ms=20) is None  # nothing new within the timeout
    source.close()
    assert source.receive_frame(timeout_ms=20) is None


def test_input_source_connects_before_the_daemon_exists(ring_name: str) -> None:
    source = CellularAutomataInputSource()
    assert source.connect(ring_name)
    card = source.receive_frame(timeout_ms=50)
    assert card is not None and card.ndim == 3 and card.flags.writeable  # the placeholder
    daemon = FakeDaemon(ring_name)
    try:
        daemon.publish(1)
        frame = None
        for _ in range(40):  # re-probed every 0.5 s; 40 × 100 ms is a hang bound
            frame = source.receive_frame(timeout_ms=100)
            if frame is not None and frame.shape[:2] == (daemon.height, daemon.width):
                break
        assert frame is not None and decode_frame_id(frame) == 0
    finally:
        source.close()
        daemon.close()


@pytest.mark.parametrize("identifier", ["bad name", "../x"])
def test_input_source_refuses_invalid_ring_names(identifier: str) -> None:
    assert CellularAutomataInputSource().connect(identifier) is False
