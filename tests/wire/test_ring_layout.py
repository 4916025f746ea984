"""Golden bytes of the ring layout: a known header and slot meta encode to exact bytes, decode
round-trips, and a real writer's file puts each live word at its documented offset."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ca_server.wire import layout
from ca_server.wire.errors import RingLayoutError
from ca_server.wire.layout import RingHeader, RingState, SlotMeta
from ca_server.wire.ring import RingWriter


def known_header() -> RingHeader:
    return RingHeader.plan(
        name="gpu0",
        width=2,
        height=2,
        slot_count=4,
        epoch=0x0123456789ABCDEF,
        writer_pid=4242,
        state=RingState.LIVE,
        control_endpoint="ipc:///run/ca/gpu0.ctl",
        created_unix_ns=1_700_000_000_000_000_000,
        nominal_fps_milli=30_000,
        boot_id=bytes(range(16)),
        published=5,
        heartbeat_mono_ns=777,
        params_version=3,
        sim_step=99,
    )


# The first 0x40 bytes, written out by hand from the table in layout's docstring.
GOLDEN_HEAD_HEX = (
    "43415f52494e4700"  # 0x000 magic "CA_RING\0"
    "0100" "0000"  # 0x008 layout 1.0
    "00100000"  # 0x00C header_bytes 4096
    "efcdab8967452301"  # 0x010 epoch
    "92100000" "01000000"  # 0x018 writer_pid 4242, state LIVE
    "02000000" "02000000" "03000000" "01000000"  # width, height, channels, dtype u8
    "52474233" "06000000" "04000000" "40000000"  # fourcc RGB3, row_stride, slots, meta bytes
)  # fmt: skip


def test_header_encodes_to_golden_bytes() -> None:
    encoded = known_header().encode()
    assert len(encoded) == 0x200
    assert encoded[:0x40].hex() == GOLDEN_HEAD_HEX
    expected = bytearray(0x200)
    expected[:0x40] = bytes.fromhex(GOLDEN_HEAD_HEX)
    for offset, value in [(0x40, 12), (0x48, 4096), (0x50, 4096), (0x58, 4096 + 4 * 4096)]:
        expected[offset : offset + 8] = value.to_bytes(8, "little")
    expected[0x60:0x68] = (1_700_000_000_000_000_000).to_bytes(8, "little")
    expected[0x68:0x6C] = (30_000).to_bytes(4, "little")
    expected[0x70:0x80] = bytes(range(16))
    for offset, value in [(0xC0, 5), (0xC8, 777), (0xD0, 3), (0xD8, 99)]:
        expected[offset : offset + 8] = value.to_bytes(8, "little")
    expected[0x100:0x104] = b"gpu0"
    expected[0x120 : 0x120 + 22] = b"ipc:///run/ca/gpu0.ctl"
    assert encoded == bytes(expected)


def test_header_round_trips() -> None:
    header = known_header()
    assert RingHeader.decode(header.encode()) == header


def test_slot_meta_golden_bytes_and_round_trip() -> None:
    meta = SlotMeta(
        seq=7, frame_id=3, t_mono_ns=1000, sim_step=12, params_version=2, width=640, height=480
    )
    golden = bytes.fromhex(
        "0700000000000000" "0300000000000000" "e803000000000000" "0c00000000000000"
        "0200000000000000" "80020000" "e0010000" "00000000"
    ) + bytes(12)  # fmt: skip
    assert meta.encode() == golden
    assert SlotMeta.decode(bytes(64) + golden, 64) == meta


def test_sizes_grow_the_header_past_56_slots() -> None:
    assert layout.header_bytes_for(56) == 4096
    assert layout.header_bytes_for(57) == 8192
    sizes = layout.derived_sizes(1024, 1024, 16)
    assert sizes["frame_nbytes"] == 3 * 1024 * 1024
    assert sizes["segment_bytes"] == 4096 + 16 * 3 * 1024 * 1024


def test_foreign_bytes_and_newer_major_are_refused() -> None:
    with pytest.raises(RingLayoutError, match="not a ca-server ring"):
        RingHeader.decode(b"\x7fELF" + bytes(0x200))
    newer = bytearray(known_header().encode())
    newer[0x08:0x0A] = (2).to_bytes(2, "little")
    with pytest.raises(RingLayoutError, match=r"layout 2\.0"):
        RingHeader.decode(bytes(newer))
    newer_minor = bytearray(known_header().encode())
    newer_minor[0x0A:0x0C] = (7).to_bytes(2, "little")
    assert RingHeader.decode(bytes(newer_minor)).layout_minor == 7


def test_inconsistent_sizes_are_refused() -> None:
    header = known_header()
    header.check_readable(header.segment_bytes)
    with pytest.raises(RingLayoutError, match="the file has"):
        header.check_readable(header.segment_bytes - 4096)
    bad = bytearray(header.encode())
    bad[0x48:0x50] = (8).to_bytes(8, "little")  # slot stride smaller than a frame
    with pytest.raises(RingLayoutError, match="disagree"):
        RingHeader.decode(bytes(bad)).check_readable(header.segment_bytes)


def test_plan_rejects_bad_geometry_with_ranges() -> None:
    with pytest.raises(ValueError, match=r"1\.\.16384"):
        layout.derived_sizes(0, 10, 8)
    with pytest.raises(ValueError, match=r"2\.\.4096 slots"):
        layout.derived_sizes(10, 10, 1)


def test_writer_file_matches_documented_offsets(ring_env) -> None:
    with RingWriter("golden", 8, 4, slots=4, control_endpoint="ipc:///x.ctl") as writer:
        for frame_id in range(6):
            pixels = np.full((4, 8, 3), frame_id, np.uint8)
            writer.write(pixels, sim_step=10 + frame_id, params_version=frame_id // 2)
        raw = writer.path.read_bytes()
    assert raw[:8] == b"CA_RING\0"
    assert struct.unpack_from("<I", raw, 0x1C)[0] == RingState.LIVE
    assert struct.unpack_from("<IIII", raw, 0x20) == (8, 4, 3, 1)
    assert struct.unpack_from("<QQQQ", raw, 0xC0)[0::2] == (6, 2)  # published, params_version
    assert struct.unpack_from("<Q", raw, 0xD8)[0] == 15  # newest sim_step
    # Frame 5 lives in slot 1: seq 2f+2 = 12, then frame id, time, sim step, params version.
    seq, frame_id, t_mono_ns, sim_step, params_version, width, height = struct.unpack_from(
        "<QQQQQII", raw, 0x200 + 64 * 1
    )
    assert (seq, frame_id, sim_step, params_version, width, height) == (12, 5, 15, 2, 8, 4)
    assert t_mono_ns > 0
    header = RingHeader.decode(raw)
    assert (header.name, header.control_endpoint) == ("golden", "ipc:///x.ctl")
    slot1 = header.data_offset + 1 * header.slot_stride
    assert raw[slot1 : slot1 + header.frame_nbytes] == bytes([5]) * 96
