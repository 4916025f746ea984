"""The ring's byte layout, version 1.0, defined once: header, slot meta lines and pixel slots.

Both the writer (the daemon) and every reader (the Scope plugin, the CLI) decode the shared-memory
file through this module, so a layout change is a change here plus a version bump. All integers
are little-endian and naturally aligned; the words that change while the ring lives (`state`,
`published`, `heartbeat_mono_ns`, `params_version`, `sim_step`, each slot's meta) are aligned so a
single load or store moves them whole. Readers refuse a file whose magic differs or whose
`layout_major` is not 1; `layout_minor` grows only by additive changes in reserved bytes.

    offset  size  type      field
    0x000      8  char[8]   magic "CA_RING\\0"
    0x008      2  u16       layout_major (1)
    0x00A      2  u16       layout_minor (0)
    0x00C      4  u32       header_bytes = align4096(0x200 + 64 * slot_count)
    0x010      8  u64       epoch (random, nonzero, new per writer start)
    0x018      4  u32       writer_pid (informational)
    0x01C      4  u32       state: 0 INIT, 1 LIVE, 2 PAUSED, 3 CLOSED
    0x020      4  u32       width (pixels)
    0x024      4  u32       height (pixels)
    0x028      4  u32       channels (3)
    0x02C      4  u32       dtype: 1 u8, 2 u16, 3 f16, 4 f32 (v1 writers use 1)
    0x030      4  u32       fourcc, 'RGB3' = RGB24 HWC
    0x034      4  u32       row_stride (bytes per row; v1: width * channels)
    0x038      4  u32       slot_count N
    0x03C      4  u32       slot_meta_bytes (64)
    0x040      8  u64       frame_nbytes = height * row_stride
    0x048      8  u64       slot_stride = align4096(frame_nbytes)
    0x050      8  u64       data_offset = header_bytes
    0x058      8  u64       segment_bytes = data_offset + N * slot_stride (= file size)
    0x060      8  i64       created_unix_ns (wall clock, for humans)
    0x068      4  u32       nominal_fps_milli (0 = free-running)
    0x06C      4  u32       flags (0)
    0x070     16  u8[16]    boot_id (monotonic times compare only within one boot)
    0x080     64  -         reserved (0)
    0x0C0      8  u64       published: frames completed; newest id = published - 1
    0x0C8      8  u64       heartbeat_mono_ns (CLOCK_MONOTONIC)
    0x0D0      8  u64       params_version of the newest frame
    0x0D8      8  u64       sim_step of the newest frame
    0x0E0     32  -         reserved (0)
    0x100     32  char[32]  name (UTF-8, NUL-padded)
    0x120    128  char[128] control endpoint (UTF-8, NUL-padded)
    0x1A0     96  -         reserved (0)
    0x200 + 64*i            slot meta i (below), one cache line each
    data_offset + i*slot_stride   pixels of slot i, frame_nbytes bytes, (H, W, 3) uint8

    slot meta (64 bytes)
    +0x00      8  u64       seq: 0 never written, 2f+1 writing frame f, 2f+2 frame f complete
    +0x08      8  u64       frame_id (= f, redundant with seq, for debugging)
    +0x10      8  u64       t_mono_ns (when the frame was made)
    +0x18      8  u64       sim_step
    +0x20      8  u64       params_version
    +0x28      4  u32       width
    +0x2C      4  u32       height
    +0x30      4  u32       checksum (0 = unused)
    +0x34     12  -         reserved (0)
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ca_server.wire.errors import RingLayoutError

MAGIC = b"CA_RING\0"
LAYOUT_MAJOR = 1
LAYOUT_MINOR = 0
PAGE_BYTES = 4096
FIXED_HEADER_BYTES = 0x200
SLOT_META_BYTES = 64
CHANNELS = 3
DTYPE_U8 = 1
NAME_BYTES = 32
ENDPOINT_BYTES = 128
MAX_SIDE_PX = 16384
MIN_SLOTS = 2
MAX_SLOTS = 4096

# Byte offsets of the words that change while the ring lives.
STATE_OFFSET = 0x01C
PUBLISHED_OFFSET = 0x0C0
HEARTBEAT_OFFSET = 0x0C8
PARAMS_VERSION_OFFSET = 0x0D0
SIM_STEP_OFFSET = 0x0D8
NAME_OFFSET = 0x100
ENDPOINT_OFFSET = 0x120

# Word index (u64) of each slot-meta field inside its 64-byte line.
META_SEQ, META_FRAME_ID, META_T_MONO_NS, META_SIM_STEP, META_PARAMS_VERSION = range(5)

_STATIC = struct.Struct("<8sHHIQ" + "I" * 10 + "QQQQqII16s")  # 0x000 .. 0x080
_DYNAMIC = struct.Struct("<QQQQ")  # 0x0C0 .. 0x0E0
_SLOT_META = struct.Struct("<QQQQQIII12x")
assert _STATIC.size == 0x80 and _SLOT_META.size == SLOT_META_BYTES


def fourcc(code: str) -> int:
    """The u32 of a four-character code as stored little-endian, e.g. fourcc('RGB3')."""
    return int.from_bytes(code.encode("ascii"), "little")


FOURCC_RGB3 = fourcc("RGB3")


class RingState(enum.IntEnum):
    """The writer's state word at 0x01C."""

    INIT = 0
    LIVE = 1
    PAUSED = 2
    CLOSED = 3


def align_up(value: int, alignment: int = PAGE_BYTES) -> int:
    """`value` rounded up to a multiple of `alignment`."""
    return -(-value // alignment) * alignment


def header_bytes_for(slot_count: int) -> int:
    """Bytes before the first pixel slot: the fixed header plus one meta line per slot."""
    return align_up(FIXED_HEADER_BYTES + SLOT_META_BYTES * slot_count)


def slot_meta_offset(slot: int) -> int:
    """Byte offset of slot `slot`'s 64-byte meta line."""
    return FIXED_HEADER_BYTES + SLOT_META_BYTES * slot


def derived_sizes(width: int, height: int, slot_count: int) -> dict[str, int]:
    """The size fields a v1 ring of this geometry has; ValueError naming the valid ranges."""
    if not (0 < width <= MAX_SIDE_PX and 0 < height <= MAX_SIDE_PX):
        raise ValueError(
            f"frame size {width}x{height} is out of range: width and height must be "
            f"1..{MAX_SIDE_PX} pixels"
        )
    if not MIN_SLOTS <= slot_count <= MAX_SLOTS:
        raise ValueError(
            f"slot count {slot_count} is out of range: use {MIN_SLOTS}..{MAX_SLOTS} slots "
            "(8-16 is typical)"
        )
    row_stride = width * CHANNELS
    frame_nbytes = row_stride * height
    slot_stride = align_up(frame_nbytes)
    header_bytes = header_bytes_for(slot_count)
    return {
        "row_stride": row_stride,
        "frame_nbytes": frame_nbytes,
        "slot_stride": slot_stride,
        "header_bytes": header_bytes,
        "data_offset": header_bytes,
        "segment_bytes": header_bytes + slot_count * slot_stride,
    }


@dataclass(frozen=True)
class RingHeader:
    """Every header field of one ring file, decoded (see the module docstring for offsets)."""

    epoch: int
    writer_pid: int
    state: RingState
    width: int
    height: int
    slot_count: int
    name: str
    control_endpoint: str = ""
    created_unix_ns: int = 0
    nominal_fps_milli: int = 0
    boot_id: bytes = bytes(16)
    published: int = 0
    heartbeat_mono_ns: int = 0
    params_version: int = 0
    sim_step: int = 0
    layout_major: int = LAYOUT_MAJOR
    layout_minor: int = LAYOUT_MINOR
    channels: int = CHANNELS
    dtype: int = DTYPE_U8
    fourcc: int = FOURCC_RGB3
    flags: int = 0
    # Sizes derived from the geometry (`derived_sizes`); `plan` fills them in.
    row_stride: int = 0
    frame_nbytes: int = 0
    slot_stride: int = 0
    header_bytes: int = 0
    data_offset: int = 0
    segment_bytes: int = 0
    slot_meta_bytes: int = SLOT_META_BYTES

    @classmethod
    def plan(cls, *, name: str, width: int, height: int, slot_count: int, **fields) -> RingHeader:
        """A v1 header for a new ring, with every derived size filled in."""
        sizes = derived_sizes(width, height, slot_count)
        return cls(name=name, width=width, height=height, slot_count=slot_count, **sizes, **fields)

    def encode(self) -> bytes:
        """The first 0x200 bytes of the file (the slot meta lines follow, zeroed at creation)."""
        buf = bytearray(FIXED_HEADER_BYTES)
        _STATIC.pack_into(
            buf,
            0,
            MAGIC,
            self.layout_major,
            self.layout_minor,
            self.header_bytes,
            self.epoch,
            self.writer_pid,
            int(self.state),
            self.width,
            self.height,
            self.channels,
            self.dtype,
            self.fourcc,
            self.row_stride,
            self.slot_count,
            self.slot_meta_bytes,
            self.frame_nbytes,
            self.slot_stride,
            self.data_offset,
            self.segment_bytes,
            self.created_unix_ns,
            self.nominal_fps_milli,
            self.flags,
            self.boot_id,
        )
        _DYNAMIC.pack_into(
            buf,
            PUBLISHED_OFFSET,
            self.published,
            self.heartbeat_mono_ns,
            self.params_version,
            self.sim_step,
        )
        buf[NAME_OFFSET : NAME_OFFSET + NAME_BYTES] = _padded(self.name, NAME_BYTES, "name")
        buf[ENDPOINT_OFFSET : ENDPOINT_OFFSET + ENDPOINT_BYTES] = _padded(
            self.control_endpoint, ENDPOINT_BYTES, "control endpoint"
        )
        return bytes(buf)

    @classmethod
    def decode(cls, buf, *, source: str = "ring") -> RingHeader:
        """Decode a header from the first 0x200 bytes of `buf`; RingLayoutError if not ours/v1."""
        if len(buf) < FIXED_HEADER_BYTES or bytes(buf[:8]) != MAGIC:
            raise RingLayoutError(
                f"{source} is not a ca-server ring (bad magic); remove it or pick another "
                "ring name / CA_SERVER_SHM_DIR"
            )
        static = _STATIC.unpack_from(buf, 0)
        major, minor = static[1], static[2]
        if major != LAYOUT_MAJOR:
            raise RingLayoutError(
                f"{source} has ring layout {major}.{minor} but this ca-server reads "
                f"{LAYOUT_MAJOR}.x; install the same ca-server version on both sides"
            )
        published, heartbeat, params_version, sim_step = _DYNAMIC.unpack_from(buf, PUBLISHED_OFFSET)
        try:
            state = RingState(static[6])
        except ValueError:
            raise RingLayoutError(f"{source} has an unknown state {static[6]}") from None
        return cls(
            layout_major=major,
            layout_minor=minor,
            header_bytes=static[3],
            epoch=static[4],
            writer_pid=static[5],
            state=state,
            width=static[7],
            height=static[8],
            channels=static[9],
            dtype=static[10],
            fourcc=static[11],
            row_stride=static[12],
            slot_count=static[13],
            slot_meta_bytes=static[14],
            frame_nbytes=static[15],
            slot_stride=static[16],
            data_offset=static[17],
            segment_bytes=static[18],
            created_unix_ns=static[19],
            nominal_fps_milli=static[20],
            flags=static[21],
            boot_id=static[22],
            published=published,
            heartbeat_mono_ns=heartbeat,
            params_version=params_version,
            sim_step=sim_step,
            name=_unpadded(buf, NAME_OFFSET, NAME_BYTES),
            control_endpoint=_unpadded(buf, ENDPOINT_OFFSET, ENDPOINT_BYTES),
        )

    def check_readable(self, file_bytes: int, *, source: str = "ring") -> None:
        """Raise RingLayoutError unless this header describes a v1 RGB24 ring of `file_bytes`."""
        problems = []
        if (self.channels, self.dtype, self.fourcc) != (CHANNELS, DTYPE_U8, FOURCC_RGB3):
            problems.append("pixel format is not RGB24 uint8")
        if self.slot_meta_bytes != SLOT_META_BYTES:
            problems.append(f"slot meta is {self.slot_meta_bytes} bytes, not {SLOT_META_BYTES}")
        try:
            expected = derived_sizes(self.width, self.height, self.slot_count)
        except ValueError as exc:
            problems.append(str(exc))
        else:
            if any(getattr(self, field) != value for field, value in expected.items()):
                problems.append("size fields disagree with the geometry")
            elif self.segment_bytes != file_bytes:
                problems.append(
                    f"header says {self.segment_bytes} bytes, the file has {file_bytes}"
                )
        if problems:
            raise RingLayoutError(
                f"{source} cannot be read: {'; '.join(problems)}; restart `ca-server serve` "
                "with the same ca-server version as this client"
            )


@dataclass(frozen=True)
class SlotMeta:
    """One slot's meta line, decoded (offsets in the module docstring)."""

    seq: int
    frame_id: int
    t_mono_ns: int
    sim_step: int
    params_version: int
    width: int
    height: int
    checksum: int = 0

    def encode(self) -> bytes:
        """The 64 bytes of this meta line."""
        return _SLOT_META.pack(
            self.seq,
            self.frame_id,
            self.t_mono_ns,
            self.sim_step,
            self.params_version,
            self.width,
            self.height,
            self.checksum,
        )

    @classmethod
    def decode(cls, buf, offset: int = 0) -> SlotMeta:
        """Decode the 64-byte meta line at `offset` of `buf`."""
        return cls(*_SLOT_META.unpack_from(buf, offset))


def _padded(text: str, size: int, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) >= size:
        raise ValueError(f"{what} {text!r} is {len(raw)} bytes; at most {size - 1} fit the header")
    return raw.ljust(size, b"\0")


def _unpadded(buf, offset: int, size: int) -> str:
    return bytes(buf[offset : offset + size]).split(b"\0", 1)[0].decode("utf-8", "replace")
