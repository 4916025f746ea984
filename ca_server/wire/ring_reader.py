"""The read side of a frame ring: `RingReader` (used by the Scope plugin, the preview and the CLI),
its per-file mapping `_Attachment`, and what a read reports (`RingStatus`, `FrameMeta`,
`ReadResult`). A reader copies frames under the seqlock, re-attaches to a restarted writer, and
judges the writer's liveness from the lock file and the heartbeat; it never raises, blocks or
writes while reading. Import it through `ring`.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ca_server.wire import layout
from ca_server.wire.errors import (
    RingError,
    RingLayoutError,
    RingNotFoundError,
    RingUnavailableError,
    UnsafePathError,
    WireError,
)
from ca_server.wire.layout import RingHeader, RingState
from ca_server.wire.paths import lock_path, open_private_file, ring_path
from ca_server.wire.ring_memory import (
    _MAP_POPULATE,
    _W_HEARTBEAT,
    _W_PUBLISHED,
    _W_STATE,
    _fence,
    slot_views,
)

READ_ATTEMPTS = 4
LIVENESS_PERIOD_NS = 100_000_000  # readers stat the file and probe the lock at most at 10 Hz
_META_FIRST, _META_END = layout.META_T_MONO_NS, layout.META_PARAMS_VERSION + 1


class RingStatus(enum.Enum):
    """What a reader knows about its ring's writer."""

    ABSENT = "absent"  # no ring file (daemon not started, or another name)
    STARTING = "starting"  # writer alive, no frame published yet (warming up): never "hung"
    LIVE = "live"
    PAUSED = "paused"  # writer alive, simulation paused: no new frames expected
    STALE = "stale"  # writer dead (lock free) or hung (heartbeat old); last frames still readable
    CLOSED = "closed"  # writer shut down cleanly
    INCOMPATIBLE = "incompatible"  # not a ring of ours, or another layout version


@dataclass(frozen=True)
class FrameMeta:
    """Metadata of one returned frame; key frames by (epoch, frame_id) across writer restarts."""

    frame_id: int
    epoch: int
    t_mono_ns: int
    sim_step: int
    params_version: int


@dataclass(frozen=True)
class ReadResult:
    """The outcome of one `RingReader.read_new` call.

    `pixels` is (n, H, W, 3) uint8 on the host, n >= 0, oldest first: a fresh array, or a view of
    the caller's `out[:n]`. `meta` has n entries. `message` explains a status other than LIVE or
    PAUSED. `dropped` counts frames published since the previous read that were not returned.
    """

    pixels: np.ndarray
    meta: tuple[FrameMeta, ...]
    status: RingStatus
    message: str
    dropped: int


class _Attachment:
    """One read-only mapping of one ring file (one inode, one epoch)."""

    def __init__(self, path: Path) -> None:
        try:
            fd = open_private_file(path, os.O_RDONLY, what="ring")
        except FileNotFoundError:
            raise RingNotFoundError(_absent_message(path)) from None
        except UnsafePathError as exc:
            raise RingLayoutError(str(exc)) from None
        except OSError as exc:
            raise RingUnavailableError(
                f"cannot open ring {path}: {exc.strerror}; run as the daemon's user or start "
                "it with a wider file mode"
            ) from None
        try:
            header = self._map(fd, path)
        except BaseException:
            os.close(fd)
            raise
        # Kept open: each copy first checks the file still holds every slot (see `intact`).
        self.fd = fd
        self.path = path
        self.header = header
        self.epoch = header.epoch
        self.slot_count = header.slot_count
        self.frame_shape = (header.height, header.width, layout.CHANNELS)
        self.words = memoryview(self.mm)[: header.data_offset].cast("Q")
        self.slots = slot_views(self.mm, header)
        self.meta_words = [layout.slot_meta_offset(i) // 8 for i in range(header.slot_count)]
        self.empty = np.empty((0, *self.frame_shape), dtype=np.uint8)

    def _map(self, fd: int, path: Path) -> RingHeader:
        """Map the file after checking that its header, its size and its allocated blocks agree,
        so neither a sparse file (mapping it would fill tmpfs) nor a short one (SIGBUS) is used."""
        info = os.fstat(fd)
        if info.st_size < layout.FIXED_HEADER_BYTES:
            raise RingLayoutError(
                f"{path} is {info.st_size} bytes, too small to be a ca-server ring; remove "
                "it or pick another ring name"
            )
        with mmap.mmap(fd, layout.FIXED_HEADER_BYTES, prot=mmap.PROT_READ) as head:
            header = RingHeader.decode(head, source=str(path))
        header.check_readable(info.st_size, source=str(path))
        if info.st_blocks * 512 < header.segment_bytes:
            raise RingLayoutError(
                f"{path} is a sparse file ({info.st_blocks * 512} of {header.segment_bytes} "
                "bytes allocated), not a ring a ca-server daemon wrote; remove it"
            )
        if header.state == RingState.INIT:
            raise RingNotFoundError(f"ring {path} is still being created; retrying")
        self.mm = mmap.mmap(
            fd, header.segment_bytes, flags=mmap.MAP_SHARED | _MAP_POPULATE, prot=mmap.PROT_READ
        )
        self.inode = info.st_ino
        return header

    def intact(self) -> bool:
        """True while the file still holds every byte mapped; a copy from a truncated file's
        missing pages is SIGBUS, so check before each one."""
        try:
            return os.fstat(self.fd).st_size >= self.header.segment_bytes
        except OSError:
            return False

    def state(self) -> int:
        return self.words[_W_STATE] >> 32

    def close(self) -> None:
        self.slots = []
        self.words.release()
        with contextlib.suppress(BufferError):  # no view escapes; still, teardown never raises
            self.mm.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


class RingReader:
    """A read-only client of ring `name` that never raises for a missing or dead writer."""

    def __init__(self, name: str, *, stale_after_s: float = 2.0) -> None:
        self.name = name
        self._path = ring_path(name)
        try:
            self._lock_file: Path | None = lock_path(name)
        except WireError:
            self._lock_file = None  # liveness then rests on the heartbeat alone
        self._stale_after_ns = int(stale_after_s * 1e9)
        self._att: _Attachment | None = None
        self._status = RingStatus.ABSENT
        self._message = _absent_message(self._path)
        self._next_id = 0  # first frame id of the current epoch not yet returned
        self._count_drops = False  # no drops before the first read of the first attachment
        self._next_check_ns = 0
        self._closed = False

    @property
    def status(self) -> RingStatus:
        """The writer's status, refreshed at most every 100 ms (attaching lazily)."""
        self._maybe_check(time.monotonic_ns())
        return self._status

    @property
    def epoch(self) -> int | None:
        """The attached ring's epoch (random per writer start), or None."""
        return self._att.epoch if self._att else None

    @property
    def frame_shape(self) -> tuple[int, int, int] | None:
        """(H, W, 3) of the attached ring, or None."""
        return self._att.frame_shape if self._att else None

    def attach(self) -> None:
        """Attach now, raising RingNotFoundError or RingLayoutError with a clear message."""
        if self._att is None:
            self._install(_Attachment(self._path), new_epoch=False)
            self._check(time.monotonic_ns())

    def read_new(self, max_frames: int, out: np.ndarray | None = None) -> ReadResult:
        """Copy up to `max_frames` newest frames not returned before, oldest first.

        Returns (n, H, W, 3) uint8 host pixels: a view of `out[:n]` when `out` is a C-contiguous
        uint8 array of shape (≥ min(max_frames, slots-1), H, W, 3), else a fresh array. Never
        raises, blocks or locks.
        """
        try:
            self._maybe_check(time.monotonic_ns())
            att = self._att
            if att is None or self._closed or max_frames <= 0:
                return self._result(None, (), 0)
            return self._copy_newest(att, min(max_frames, att.slot_count - 1), out)
        except Exception as exc:  # the caller is Scope's frame loop: report, never raise
            return ReadResult(np.empty((0, 0, 0, 3), np.uint8), (), self._status, repr(exc), 0)

    def header(self) -> dict | None:
        """The attached ring's header fields decoded, or None when not attached."""
        att = self._att
        if att is None or not att.intact():
            return None
        decoded = RingHeader.decode(att.mm, source=str(self._path))
        return {
            "path": str(self._path),
            "name": decoded.name,
            "layout": f"{decoded.layout_major}.{decoded.layout_minor}",
            "epoch": decoded.epoch,
            "state": decoded.state.name,
            "writer_pid": decoded.writer_pid,
            "width": decoded.width,
            "height": decoded.height,
            "channels": decoded.channels,
            "slot_count": decoded.slot_count,
            "frame_nbytes": decoded.frame_nbytes,
            "segment_bytes": decoded.segment_bytes,
            "control_endpoint": decoded.control_endpoint,
            "nominal_fps": decoded.nominal_fps_milli / 1000,
            "created_unix_ns": decoded.created_unix_ns,
            "published": decoded.published,
            "params_version": decoded.params_version,
            "sim_step": decoded.sim_step,
            "heartbeat_age_s": (time.monotonic_ns() - decoded.heartbeat_mono_ns) / 1e9,
        }

    def close(self) -> None:
        """Unmap the ring; always safe, idempotent. Returned arrays stay valid (they are copies)."""
        self._closed = True
        if self._att is not None:
            self._att.close()
            self._att = None
        self._status, self._message = RingStatus.CLOSED, "this reader was closed"

    def _copy_newest(self, att: _Attachment, n_max: int, out: np.ndarray | None) -> ReadResult:
        if not att.intact():
            self._set(RingStatus.STALE, _truncated_message(self._path))
            return self._result(att, (), 0)
        words, slots, meta_words = att.words, att.slots, att.meta_words
        slot_count, epoch = att.slot_count, att.epoch
        buf = out if _fits(out, n_max, att.frame_shape) else None
        metas: list[FrameMeta] = []
        for attempt in range(READ_ATTEMPTS):
            published = words[_W_PUBLISHED]
            first = max(published - n_max, self._next_id)
            n = published - first
            if n <= 0:
                return self._result(att, (), 0, buf)
            if buf is None or len(buf) < n:
                buf = np.empty((n_max, *att.frame_shape), dtype=np.uint8)
            metas.clear()
            for frame_id in range(first, published):
                if not att.intact():
                    self._set(RingStatus.STALE, _truncated_message(self._path))
                    return self._result(att, (), 0, buf)
                base = meta_words[frame_id % slot_count]
                seq = words[base]
                if seq == 2 * frame_id + 2:
                    np.copyto(buf[len(metas)], slots[frame_id % slot_count])
                    meta = FrameMeta(frame_id, epoch, *words[base + _META_FIRST : base + _META_END])
                    _fence()
                    if words[base] == seq:
                        metas.append(meta)
                        continue
                # Lapped or being rewritten: keep only the newer frames, so ids stay contiguous.
                metas.clear()
            if len(metas) == n or (attempt == READ_ATTEMPTS - 1 and metas):
                break
        if not metas:
            return self._result(att, (), 0, buf)
        dropped = metas[0].frame_id - self._next_id if self._count_drops else 0
        self._next_id = metas[-1].frame_id + 1
        self._count_drops = True
        return self._result(att, tuple(metas), dropped, buf)

    def _result(self, att, metas: tuple[FrameMeta, ...], dropped: int, buf=None) -> ReadResult:
        if buf is not None:
            pixels = buf[: len(metas)]
        elif att is not None:
            pixels = att.empty
        else:
            pixels = np.empty((0, 0, 0, 3), np.uint8)
        return ReadResult(pixels, metas, self._status, self._message, dropped)

    def _maybe_check(self, now_ns: int) -> None:
        if self._closed:
            return
        # A starting writer's first frame is noticed at once, not at the next liveness check.
        first_frame = self._status is RingStatus.STARTING and self._att.words[_W_PUBLISHED] > 0
        if now_ns >= self._next_check_ns or first_frame:
            self._check(now_ns)

    def _check(self, now_ns: int) -> None:
        """Attach, re-attach to a restarted writer, and classify the writer's liveness."""
        self._next_check_ns = now_ns + LIVENESS_PERIOD_NS
        if self._att is None or self._replaced():
            try:
                self._install(_Attachment(self._path), new_epoch=self._att is not None)
            except RingNotFoundError as exc:
                if self._att is None:
                    self._set(RingStatus.ABSENT, str(exc))
                    return
            except RingError as exc:
                self._set(RingStatus.INCOMPATIBLE, str(exc))
                return
        att = self._att
        if not att.intact():
            self._set(RingStatus.STALE, _truncated_message(self._path))
            return
        state = att.state()
        age_ns = now_ns - att.words[_W_HEARTBEAT]
        pid = att.header.writer_pid
        if state == RingState.CLOSED:
            self._set(
                RingStatus.CLOSED,
                f"the daemon (pid {pid}) closed ring {self._path}; "
                "start it again with `ca-server serve`",
            )
        elif _lock_is_free(self._lock_file):
            self._set(
                RingStatus.STALE,
                f"the writer of ring {self._path} (pid {pid}) is gone: "
                "its lock is free; restart `ca-server serve`",
            )
        elif att.words[_W_PUBLISHED] == 0 and state != RingState.PAUSED:
            # Building its simulation can take longer than the heartbeat bound; it is alive
            # (its lock is held), so it is starting, not hung.
            self._set(RingStatus.STARTING, f"the daemon (pid {pid}) has not published a frame yet")
        elif age_ns > self._stale_after_ns:
            self._set(
                RingStatus.STALE,
                f"the writer of ring {self._path} (pid {pid}) sent no "
                f"heartbeat for {age_ns / 1e9:.1f} s; it may be hung: check "
                f"`ca-server ctl --name {self.name} status` or restart it",
            )
        elif state == RingState.PAUSED:
            self._set(RingStatus.PAUSED, "")
        else:
            self._set(RingStatus.LIVE, "")

    def _replaced(self) -> bool:
        try:
            return os.stat(self._path).st_ino != self._att.inode
        except OSError:
            return False  # removed (closed or cleaned up): keep the old mapping readable

    def _install(self, att: _Attachment, *, new_epoch: bool) -> None:
        if self._att is not None:
            self._att.close()
        self._att = att
        self._next_id = 0
        self._count_drops = new_epoch

    def _set(self, status: RingStatus, message: str) -> None:
        self._status, self._message = status, message

    def __enter__(self) -> RingReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _fits(out: np.ndarray | None, n: int, frame_shape: tuple[int, int, int]) -> bool:
    return (
        out is not None
        and out.dtype == np.uint8
        and out.ndim == 4
        and out.shape[0] >= n
        and out.shape[1:] == frame_shape
        and out.flags.c_contiguous
        and out.flags.writeable
    )


def _absent_message(path: Path) -> str:
    return (
        f"no ring at {path}: the daemon is not running or serves another ring name; "
        "start it with `ca-server serve`"
    )


def _truncated_message(path: Path) -> str:
    return (
        f"ring {path} was truncated under its readers; restart `ca-server serve` (and find "
        "what truncated it)"
    )


def _lock_is_free(lock_file: Path | None) -> bool:
    """True when no writer holds `lock_file`; a non-blocking shared probe, released at once."""
    if lock_file is None:
        return False
    try:
        fd = open_private_file(lock_file, os.O_RDONLY, what="lock file")
    except FileNotFoundError:
        return True
    except (OSError, WireError):
        return False  # cannot tell (or not a lock file of ours): fall back to the heartbeat
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops the probe's lock
    return True
