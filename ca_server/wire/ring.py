"""The shared-memory frame ring: one wait-free writer (the daemon), any number of lock-free readers.

The ring is a file in the shared-memory folder (`paths.ring_path`) laid out as `layout` describes:
a header, one seqlock meta line per slot, and N pixel slots of (H, W, 3) uint8. The writer marks a
slot's `seq` odd (2f+1), fills the pixels, marks it even (2f+2) and bumps `published`; it never
looks at readers. A reader maps the file read-only, copies the newest unseen slots oldest first
and re-checks each slot's `seq` after the copy, retrying a bounded number of times; it never
blocks, never locks and never writes. Liveness comes from an flock the writer holds on
`paths.lock_path` for its whole life (the kernel drops it even on SIGKILL) plus a heartbeat; a
restarted writer makes a new file (new inode, new random epoch) that readers re-attach to. The
store/load ordering relies on x86-64's TSO plus `_fence` (an uncontended lock round trip: a
locked instruction on x86-64, acquire/release on arm64). A reader object is not thread-safe:
give each thread its own.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import mmap
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ca_server.wire import layout
from ca_server.wire.errors import (
    RingError,
    RingInUseError,
    RingLayoutError,
    RingNotFoundError,
    ShmTooSmallError,
    WireError,
)
from ca_server.wire.layout import RingHeader, RingState
from ca_server.wire.paths import lock_path, ring_path

READ_ATTEMPTS = 4
LIVENESS_PERIOD_NS = 100_000_000  # readers stat the file and probe the lock at most at 10 Hz
LOCK_ACQUIRE_WINDOW_S = 0.3  # a reader's lock probe holds a shared lock for microseconds
MIB = 1 << 20
_W_STATE = layout.STATE_OFFSET // 8  # u64 word holding writer_pid (low) and state (high)
_W_PUBLISHED = layout.PUBLISHED_OFFSET // 8
_W_HEARTBEAT = layout.HEARTBEAT_OFFSET // 8
_W_PARAMS_VERSION = layout.PARAMS_VERSION_OFFSET // 8
_W_SIM_STEP = layout.SIM_STEP_OFFSET // 8
_META_FIRST, _META_END = layout.META_T_MONO_NS, layout.META_PARAMS_VERSION + 1
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_fence_lock = threading.Lock()


def _fence() -> None:
    """Order this process's loads/stores to the ring before the call against those after it."""
    _fence_lock.acquire()
    _fence_lock.release()


class RingStatus(enum.Enum):
    """What a reader knows about its ring's writer."""

    ABSENT = "absent"  # no ring file (daemon not started, or another name)
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


class RingWriter:
    """The single writer of ring `name`: creates the file, publishes frames, closes it.

    Frames are (height, width, 3) uint8 RGB. Creating takes the writer lock (RingInUseError if a
    live writer has it), removes a stale ring left by a killed writer, checks free space
    (ShmTooSmallError), and creates the file atomically. Not thread-safe.
    """

    def __init__(
        self,
        name: str,
        width: int,
        height: int,
        *,
        slots: int = 8,
        control_endpoint: str = "",
        nominal_fps: float = 0.0,
        mode: int = 0o600,
        shm_free_bytes: Callable[[Path], int] | None = None,
    ) -> None:
        self.path = ring_path(name)
        self.name = name
        try:
            planned = RingHeader.plan(
                name=name,
                width=width,
                height=height,
                slot_count=slots,
                control_endpoint=control_endpoint,
                epoch=secrets.randbits(64) or 1,
                writer_pid=os.getpid(),
                state=RingState.LIVE,
                created_unix_ns=time.time_ns(),
                heartbeat_mono_ns=time.monotonic_ns(),
                nominal_fps_milli=round(max(nominal_fps, 0.0) * 1000),
                boot_id=_boot_id(),
            )
            planned.encode()  # validates name/endpoint lengths before touching any file
        except ValueError as exc:
            raise RingError(f"cannot create ring {name!r}: {exc}") from None
        self._lock_file = lock_path(name)
        self._lock_fd = _acquire_writer_lock(name, self._lock_file, mode)
        try:
            _remove_stale_files(self.path)
            _check_free_space(planned, self.path.parent, shm_free_bytes or _statvfs_free_bytes)
            self._fd, self._mm = _create_segment(self.path, planned, mode)
        except BaseException:
            _release_writer_lock(self._lock_fd, self._lock_file)
            raise
        self._header = planned
        self.epoch = planned.epoch
        self.slot_count = slots
        self.frame_shape = (height, width, layout.CHANNELS)
        self._words = np.frombuffer(self._mm, dtype="<u8", count=planned.data_offset // 8)
        self._state_word = np.frombuffer(self._mm, dtype="<u4", count=1, offset=layout.STATE_OFFSET)
        self._slots = [
            np.frombuffer(
                self._mm,
                dtype=np.uint8,
                count=planned.frame_nbytes,
                offset=planned.data_offset + i * planned.slot_stride,
            ).reshape(self.frame_shape)
            for i in range(slots)
        ]
        self._meta_words = [layout.slot_meta_offset(i) // 8 for i in range(slots)]
        self._published = 0
        self._writing = False
        self._closed = False

    @property
    def published(self) -> int:
        """Frames completed so far; the next frame's id."""
        return self._published

    def next_slot(self) -> np.ndarray:
        """The writable (H, W, 3) uint8 host view of the slot for frame `published`.

        Marks the slot as being written (seq = 2f+1); fill it, then call `publish`. Readers that
        copy this slot meanwhile discard their copy.
        """
        self._check_open()
        frame_id = self._published
        slot = frame_id % self.slot_count
        self._words[self._meta_words[slot] + layout.META_SEQ] = 2 * frame_id + 1
        _fence()
        self._writing = True
        return self._slots[slot]

    def publish(self, *, sim_step: int, params_version: int, t_mono_ns: int | None = None) -> int:
        """Complete the frame filled through `next_slot` and return its frame id."""
        self._check_open()
        if not self._writing:
            raise RingError("publish() needs a frame: call next_slot() and fill it first")
        frame_id = self._published
        base = self._meta_words[frame_id % self.slot_count]
        words = self._words
        words[base + layout.META_FRAME_ID] = frame_id
        words[base + layout.META_T_MONO_NS] = (
            time.monotonic_ns() if t_mono_ns is None else t_mono_ns
        )
        words[base + layout.META_SIM_STEP] = sim_step
        words[base + layout.META_PARAMS_VERSION] = params_version
        _fence()
        words[base + layout.META_SEQ] = 2 * frame_id + 2
        _fence()
        words[_W_PUBLISHED] = frame_id + 1
        words[_W_PARAMS_VERSION] = params_version
        words[_W_SIM_STEP] = sim_step
        words[_W_HEARTBEAT] = time.monotonic_ns()
        self._published = frame_id + 1
        self._writing = False
        return frame_id

    def data_region(self) -> np.ndarray:
        """All pixel slots as one flat uint8 host view, page-aligned.

        For registering the slots once as pinned memory with the GPU, so the loop's one
        device-to-host copy runs at full speed. Drop the view before `close()`.
        """
        self._check_open()
        first = self._header.data_offset
        return np.frombuffer(
            self._mm, dtype=np.uint8, count=self.slot_count * self._header.slot_stride, offset=first
        )

    def write(self, pixels: np.ndarray, *, sim_step: int, params_version: int) -> int:
        """Copy `pixels`, (H, W, 3) uint8 host array, into the next slot and publish it."""
        if pixels.shape != self.frame_shape or pixels.dtype != np.uint8:
            raise RingError(
                f"frame must be {self.frame_shape} uint8 for ring {self.name!r}, got "
                f"{pixels.shape} {pixels.dtype}"
            )
        np.copyto(self.next_slot(), pixels)
        return self.publish(sim_step=sim_step, params_version=params_version)

    def heartbeat(self) -> None:
        """Tell readers the writer is alive without publishing (call ≥ 2 Hz while paused)."""
        self._check_open()
        self._words[_W_HEARTBEAT] = time.monotonic_ns()

    def set_paused(self, paused: bool) -> None:
        """Set the state word to PAUSED or LIVE."""
        self._check_open()
        self._state_word[0] = RingState.PAUSED if paused else RingState.LIVE
        self.heartbeat()

    def close(self) -> None:
        """Mark the ring CLOSED, remove it and the lock file, release the lock. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._state_word[0] = RingState.CLOSED
        self._words[_W_HEARTBEAT] = time.monotonic_ns()
        _fence()
        _unlink_if_same(self.path, os.fstat(self._fd).st_ino)
        self._words = self._state_word = None
        self._slots = []
        # A caller may still hold a next_slot() view; the mapping then goes when that view does.
        with contextlib.suppress(BufferError):
            self._mm.close()
        os.close(self._fd)
        _release_writer_lock(self._lock_fd, self._lock_file)

    def __enter__(self) -> RingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RingError(f"ring writer {self.name!r} is closed")


class _Attachment:
    """One read-only mapping of one ring file (one inode, one epoch)."""

    def __init__(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RingNotFoundError(_absent_message(path)) from None
        except OSError as exc:
            raise RingError(
                f"cannot open ring {path}: {exc.strerror}; run as the daemon's user or start "
                "it with a wider file mode"
            ) from None
        try:
            info = os.fstat(fd)
            if info.st_size < layout.FIXED_HEADER_BYTES:
                raise RingLayoutError(
                    f"{path} is {info.st_size} bytes, too small to be a ca-server ring; remove "
                    "it or pick another ring name"
                )
            self.mm = mmap.mmap(
                fd, info.st_size, flags=mmap.MAP_SHARED | _MAP_POPULATE, prot=mmap.PROT_READ
            )
        finally:
            os.close(fd)
        try:
            header = RingHeader.decode(self.mm, source=str(path))
            header.check_readable(info.st_size, source=str(path))
            if header.state == RingState.INIT:
                raise RingNotFoundError(f"ring {path} is still being created; retrying")
        except BaseException:
            self.mm.close()
            raise
        self.header = header
        self.inode = info.st_ino
        self.epoch = header.epoch
        self.slot_count = header.slot_count
        self.frame_shape = (header.height, header.width, layout.CHANNELS)
        self.words = memoryview(self.mm)[: header.data_offset].cast("Q")
        self.slots = [
            np.frombuffer(
                self.mm,
                dtype=np.uint8,
                count=header.frame_nbytes,
                offset=header.data_offset + i * header.slot_stride,
            ).reshape(self.frame_shape)
            for i in range(header.slot_count)
        ]
        self.meta_words = [layout.slot_meta_offset(i) // 8 for i in range(header.slot_count)]
        self.empty = np.empty((0, *self.frame_shape), dtype=np.uint8)

    def state(self) -> int:
        return self.words[_W_STATE] >> 32

    def close(self) -> None:
        self.slots = []
        self.words.release()
        with contextlib.suppress(BufferError):  # no view escapes; still, teardown never raises
            self.mm.close()


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
        if att is None:
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
        if now_ns >= self._next_check_ns and not self._closed:
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
        elif age_ns > self._stale_after_ns:
            self._set(
                RingStatus.STALE,
                f"the writer of ring {self._path} (pid {pid}) sent no "
                f"heartbeat for {age_ns / 1e9:.1f} s; it may be hung: check `ca-server "
                "status` or restart it",
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


def _lock_is_free(lock_file: Path | None) -> bool:
    """True when no writer holds `lock_file`; a non-blocking shared probe, released at once."""
    if lock_file is None:
        return False
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False  # cannot tell: fall back to the heartbeat
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops the probe's lock
    return True


def _acquire_writer_lock(name: str, lock_file: Path, mode: int) -> int:
    deadline = time.monotonic() + LOCK_ACQUIRE_WINDOW_S
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            if time.monotonic() > deadline:
                raise RingInUseError(
                    f"ring {name!r} is already being served by a live daemon (pid {holder}, "
                    f"holding {lock_file}); stop it first or use another ring name"
                ) from None
            time.sleep(0.01)
            continue
        # The previous holder unlinks the file before releasing it: make sure ours is current.
        try:
            current = os.stat(lock_file).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def _release_writer_lock(fd: int, lock_file: Path) -> None:
    _unlink_if_same(lock_file, os.fstat(fd).st_ino)
    os.close(fd)


def _unlink_if_same(path: Path, inode: int) -> None:
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_stale_files(path: Path) -> None:
    """Remove a ring (and half-made temporaries) of a writer that died; we hold the lock."""
    for stale in [path, *path.parent.glob(path.name + ".tmp-*")]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)


def _statvfs_free_bytes(folder: Path) -> int:
    info = os.statvfs(folder)
    return info.f_bavail * info.f_frsize


def _too_small(header: RingHeader, folder: Path, free_bytes: int) -> ShmTooSmallError:
    return ShmTooSmallError(
        f"ring {header.name!r} needs {header.segment_bytes / MIB:.1f} MiB in {folder} but only "
        f"{free_bytes / MIB:.1f} MiB is free; use fewer slots (--slots, now "
        f"{header.slot_count}) or a smaller frame size, or give the container a bigger /dev/shm "
        "(docker run --shm-size=1g)",
        needed_bytes=header.segment_bytes,
        available_bytes=free_bytes,
    )


def _check_free_space(header: RingHeader, folder: Path, free_bytes: Callable[[Path], int]) -> None:
    try:
        available = free_bytes(folder)
    except FileNotFoundError:
        raise RingError(
            f"shared-memory folder {folder} does not exist; create it or set CA_SERVER_SHM_DIR"
        ) from None
    if available < header.segment_bytes:
        raise _too_small(header, folder, available)


def _create_segment(path: Path, header: RingHeader, mode: int) -> tuple[int, mmap.mmap]:
    """Create, size, fill and map the ring under a temporary name, then rename it into place."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not narrow or widen what was asked for
        try:
            # Reserve every page now: a too-small tmpfs is ENOSPC here, not SIGBUS on first write.
            os.posix_fallocate(fd, 0, header.segment_bytes)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM):
                raise _too_small(header, path.parent, _statvfs_free_bytes(path.parent)) from None
            raise RingError(f"cannot size ring {tmp}: {exc.strerror}") from None
        mm = mmap.mmap(fd, header.segment_bytes, flags=mmap.MAP_SHARED | _MAP_POPULATE)
        mm[: layout.FIXED_HEADER_BYTES] = header.encode()
        geometry = header.width.to_bytes(4, "little") + header.height.to_bytes(4, "little")
        for slot in range(header.slot_count):
            offset = layout.slot_meta_offset(slot) + 0x28
            mm[offset : offset + 8] = geometry
        os.rename(tmp, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return fd, mm


def _boot_id() -> bytes:
    try:
        text = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return bytes.fromhex(text.replace("-", ""))[:16].ljust(16, b"\0")
    except (OSError, ValueError):
        return bytes(16)
