"""Ring writer and reader in one process: content, ordering, drop accounting, statuses, errors,
file lifecycle, and a hypothesis property over publish/read interleavings."""

from __future__ import annotations

import os
import stat
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca_server.wire.errors import (
    RingError,
    RingInUseError,
    RingLayoutError,
    RingNotFoundError,
    ShmTooSmallError,
)
from ca_server.wire.paths import lock_path, ring_path
from ca_server.wire.ring import RingReader, RingStatus, RingWriter

H, W = 16, 24


def publish_frames(writer: RingWriter, count: int) -> None:
    for _ in range(count):
        frame_id = writer.published
        writer.next_slot()[:] = frame_id % 256
        writer.publish(sim_step=frame_id * 2, params_version=7)


def wait_for_status(reader: RingReader, wanted: RingStatus, timeout_s: float = 3.0) -> float:
    """Seconds until `reader.status` is `wanted`; fails after `timeout_s`."""
    started = time.monotonic()
    while reader.status != wanted:
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"status stayed {reader.status} ({reader.read_new(0).message})")
        time.sleep(0.01)
    return time.monotonic() - started


def test_reads_newest_unseen_frames_oldest_first(ring_env) -> None:
    with RingWriter("basic", W, H, slots=8) as writer, RingReader("basic") as reader:
        publish_frames(writer, 10)
        first = reader.read_new(3)
        assert first.status is RingStatus.LIVE and first.message == ""
        assert [m.frame_id for m in first.meta] == [7, 8, 9]
        assert first.pixels.shape == (3, H, W, 3) and first.pixels.dtype == np.uint8
        assert [int(p[0, 0, 0]) for p in first.pixels] == [7, 8, 9]
        assert [(m.sim_step, m.params_version, m.epoch) for m in first.meta] == [
            (f * 2, 7, writer.epoch) for f in (7, 8, 9)
        ]
        assert first.dropped == 0  # nothing was "since the previous read" on the first read
        assert reader.read_new(3).meta == ()
        publish_frames(writer, 6)  # frames 10..15; the reader takes 13..15
        second = reader.read_new(3)
        assert [m.frame_id for m in second.meta] == [13, 14, 15]
        assert second.dropped == 3
        publish_frames(writer, 1)
        assert [m.frame_id for m in reader.read_new(3).meta] == [16]


def test_max_frames_is_capped_below_slot_count(ring_env) -> None:
    with RingWriter("cap", W, H, slots=4) as writer, RingReader("cap") as reader:
        publish_frames(writer, 20)
        result = reader.read_new(10)
        assert [m.frame_id for m in result.meta] == [17, 18, 19]  # the 4th slot is being reused


def test_out_buffer_is_filled_in_place_or_replaced_when_it_does_not_fit(ring_env) -> None:
    with RingWriter("out", W, H, slots=8) as writer, RingReader("out") as reader:
        out = np.zeros((4, H, W, 3), np.uint8)
        publish_frames(writer, 2)
        result = reader.read_new(4, out=out)
        assert np.shares_memory(result.pixels, out) and result.pixels.shape[0] == 2
        assert int(out[1, 0, 0, 0]) == 1
        publish_frames(writer, 1)
        wrong = np.zeros((4, H + 1, W, 3), np.uint8)
        result = reader.read_new(4, out=wrong)
        assert not np.shares_memory(result.pixels, wrong)
        assert result.pixels.shape == (1, H, W, 3) and int(result.pixels[0, 0, 0, 0]) == 2


def test_results_survive_reader_close(ring_env) -> None:
    with RingWriter("keep", W, H) as writer:
        reader = RingReader("keep")
        publish_frames(writer, 3)
        result = reader.read_new(2)
        reader.close()
        reader.close()
        assert [int(p[0, 0, 0]) for p in result.pixels] == [1, 2]
        assert reader.read_new(2).meta == () and reader.status is RingStatus.CLOSED


def test_missing_ring_is_absent_and_attach_explains(ring_env) -> None:
    reader = RingReader("nobody")
    result = reader.read_new(4)
    assert result.status is RingStatus.ABSENT and result.meta == ()
    assert str(ring_path("nobody")) in result.message and "ca-server serve" in result.message
    with pytest.raises(RingNotFoundError, match="ca-server serve"):
        reader.attach()
    assert reader.header() is None and reader.epoch is None and reader.frame_shape is None


def test_foreign_file_is_incompatible(ring_env) -> None:
    ring_path("foreign").write_bytes(b"not a ring" * 1000)
    reader = RingReader("foreign")
    result = reader.read_new(4)
    assert result.status is RingStatus.INCOMPATIBLE and "not a ca-server ring" in result.message
    with pytest.raises(RingLayoutError, match="not a ca-server ring"):
        reader.attach()


def test_newer_layout_is_incompatible(ring_env) -> None:
    with RingWriter("newer", W, H) as writer:
        with open(writer.path, "r+b") as raw:
            raw.seek(0x08)
            raw.write((2).to_bytes(2, "little"))
        reader = RingReader("newer")
        assert reader.status is RingStatus.INCOMPATIBLE
        with pytest.raises(RingLayoutError, match=r"layout 2\.0"):
            reader.attach()


def test_paused_heartbeat_and_stale_heartbeat(ring_env) -> None:
    with RingWriter("pause", W, H) as writer:
        reader = RingReader("pause", stale_after_s=0.5)
        publish_frames(writer, 1)
        assert reader.status is RingStatus.LIVE
        assert len(reader.read_new(4).meta) == 1
        writer.set_paused(True)
        wait_for_status(reader, RingStatus.PAUSED)
        for _ in range(8):  # a paused daemon keeps its heartbeat going: never stale
            writer.heartbeat()
            time.sleep(0.1)
            assert reader.status is RingStatus.PAUSED
        assert reader.read_new(4).meta == ()
        writer.set_paused(False)
        wait_for_status(reader, RingStatus.LIVE)
        # The lock is held but nothing beats: a hung writer.
        wait_for_status(reader, RingStatus.STALE, timeout_s=3)
        assert "heartbeat" in reader.read_new(1).message
        reader.close()


def test_header_reports_geometry_and_counters(ring_env) -> None:
    with RingWriter("hdr", W, H, slots=5, control_endpoint="ipc:///tmp/x.ctl", nominal_fps=30):
        reader = RingReader("hdr")
        reader.attach()
        header = reader.header()
        assert (header["width"], header["height"], header["slot_count"]) == (W, H, 5)
        assert header["control_endpoint"] == "ipc:///tmp/x.ctl"
        assert header["state"] == "LIVE" and header["writer_pid"] == os.getpid()
        assert header["nominal_fps"] == 30 and header["published"] == 0
        assert 0 <= header["heartbeat_age_s"] < 60
        assert reader.frame_shape == (H, W, 3)
        reader.close()


def test_close_removes_files_and_reader_sees_closed(ring_env) -> None:
    writer = RingWriter("bye", W, H)
    reader = RingReader("bye")
    publish_frames(writer, 2)
    reader.read_new(1)
    assert stat.S_IMODE(writer.path.stat().st_mode) == 0o600
    writer.close()
    writer.close()
    assert not ring_path("bye").exists() and not lock_path("bye").exists()
    wait_for_status(reader, RingStatus.CLOSED)
    result = reader.read_new(4)
    assert "ca-server serve" in result.message and result.status is RingStatus.CLOSED
    with pytest.raises(RingError, match="closed"):
        writer.next_slot()
    reader.close()


def test_restart_in_process_gives_new_epoch_and_counts_drops(ring_env) -> None:
    first = RingWriter("again", W, H)
    reader = RingReader("again")
    publish_frames(first, 3)
    assert len(reader.read_new(4).meta) == 3
    old_epoch = first.epoch
    first.close()
    with RingWriter("again", W, H) as second:
        publish_frames(second, 6)
        time.sleep(0.15)  # past the reader's liveness period
        result = reader.read_new(2)
        assert reader.epoch == second.epoch != old_epoch
        assert [m.frame_id for m in result.meta] == [4, 5]
        assert {m.epoch for m in result.meta} == {second.epoch}
        assert result.dropped == 4  # frames 0..3 of the new epoch were never returned
    reader.close()


def test_new_geometry_is_picked_up_on_reattach(ring_env) -> None:
    reader = RingReader("shape")
    with RingWriter("shape", W, H) as writer:
        publish_frames(writer, 1)
        assert reader.read_new(4).pixels.shape == (1, H, W, 3)
    out = np.empty((4, H, W, 3), np.uint8)  # sized for the old geometry
    with RingWriter("shape", 8, 6) as writer:
        publish_frames(writer, 3)
        time.sleep(0.15)
        result = reader.read_new(4, out=out)
        assert reader.frame_shape == (6, 8, 3) and result.pixels.shape == (3, 6, 8, 3)
        assert not np.shares_memory(result.pixels, out)
    reader.close()


def test_second_writer_is_refused_and_first_keeps_working(ring_env) -> None:
    with RingWriter("solo", W, H) as first:
        with pytest.raises(RingInUseError, match=r"'solo'.*already being served"):
            RingWriter("solo", W, H)
        publish_frames(first, 2)
        assert first.path.exists() and first.published == 2


def test_stale_ring_and_temporaries_are_replaced(ring_env) -> None:
    ring_path("left").write_bytes(b"junk from a killed writer")
    leftover_tmp = ring_path("left").with_name(ring_path("left").name + ".tmp-99999")
    leftover_tmp.write_bytes(b"half made")
    with RingWriter("left", W, H) as writer:
        assert not leftover_tmp.exists()
        reader = RingReader("left")
        reader.attach()
        assert reader.epoch == writer.epoch
        reader.close()


def test_injected_small_shm_is_a_clean_error_leaving_nothing(ring_env) -> None:
    with pytest.raises(ShmTooSmallError) as caught:
        RingWriter("big", 256, 256, slots=8, shm_free_bytes=lambda folder: 1 << 20)
    message = str(caught.value)
    assert "1.5 MiB" in message and "1.0 MiB" in message
    assert "--slots" in message and "--shm-size" in message
    assert caught.value.needed_bytes > caught.value.available_bytes == 1 << 20
    assert os.listdir(ring_env.shm_dir) == []
    with RingWriter("big", 256, 256, slots=8):  # the lock was released
        pass


def test_bad_arguments_are_clear_errors(ring_env) -> None:
    with pytest.raises(RingError, match="slot count 1"):
        RingWriter("args", W, H, slots=1)
    with pytest.raises(RingError, match="control endpoint"):
        RingWriter("args", W, H, control_endpoint="x" * 200)
    with RingWriter("args", W, H) as writer:
        with pytest.raises(RingError, match="next_slot"):
            writer.publish(sim_step=0, params_version=0)
        with pytest.raises(RingError, match=r"\(16, 24, 3\) uint8"):
            writer.write(np.zeros((H, W, 4), np.uint8), sim_step=0, params_version=0)
    assert os.listdir(ring_env.shm_dir) == []


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    slots=st.integers(2, 6),
    steps=st.lists(
        st.tuples(st.sampled_from(["publish", "read"]), st.integers(0, 9)), min_size=1, max_size=30
    ),
)
def test_returned_ids_are_contiguous_new_and_in_window(ring_env, slots, steps) -> None:
    with RingWriter("prop", 4, 2, slots=slots) as writer, RingReader("prop") as reader:
        next_unreturned, first_read = 0, True
        for action, amount in steps:
            if action == "publish":
                publish_frames(writer, amount)
                continue
            published = writer.published
            result = reader.read_new(amount)
            ids = [m.frame_id for m in result.meta]
            expected_n = min(amount, slots - 1, published - next_unreturned)
            assert len(ids) == max(expected_n, 0)
            if ids:
                assert ids == list(range(ids[-1] - len(ids) + 1, ids[-1] + 1))
                assert ids[-1] == published - 1 and ids[0] >= published - (slots - 1)
                assert ids[0] >= next_unreturned
                assert result.dropped == (0 if first_read else ids[0] - next_unreturned)
                assert [int(p[0, 0, 0]) for p in result.pixels] == [f % 256 for f in ids]
                next_unreturned, first_read = ids[-1] + 1, False


def test_data_region_covers_every_slot_at_its_stride(ring_env) -> None:
    with RingWriter("region", W, H, slots=4) as writer:
        region = writer.data_region()
        assert region.ctypes.data % 4096 == 0, "pinning wants page-aligned memory"
        stride = region.nbytes // writer.slot_count
        assert stride >= H * W * 3
        publish_frames(writer, 4)
        for slot in range(4):
            assert (region[slot * stride : slot * stride + H * W * 3] == slot).all()
        del region
