"""The single writer of a frame ring (`RingWriter`, used by the daemon) and what creating a ring
takes: the writer's flock on the lock file, removal of a killed writer's leftovers, the free-space
check, and the atomic create-size-map-rename of the ring file. Import it through `ring`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ca_server.wire import layout
from ca_server.wire.errors import RingError, RingInUseError, RingTruncatedError, ShmTooSmallError
from ca_server.wire.layout import RingHeader, RingState
from ca_server.wire.paths import check_private_file, lock_path, open_private_file, ring_path
from ca_server.wire.ring_memory import (
    _MAP_POPULATE,
    _W_HEARTBEAT,
    _W_PARAMS_VERSION,
    _W_PUBLISHED,
    _W_SIM_STEP,
    _fence,
    slot_views,
)

LOCK_ACQUIRE_WINDOW_S = 0.3  # a reader's lock probe holds a shared lock for microseconds
MIB = 1 << 20


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
        self._slots = slot_views(self._mm, planned)
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
        self._check_intact()
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
        self._check_intact()
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
        if self._intact():  # a truncated file's pages are gone: touching them is SIGBUS
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

    def _intact(self) -> bool:
        return os.fstat(self._fd).st_size >= self._header.segment_bytes

    def _check_intact(self) -> None:
        # One fstat (~1 µs) per frame: another process of ours truncating the file would turn the
        # next store into SIGBUS, which kills the daemon without a word.
        if not self._intact():
            raise RingTruncatedError(
                f"ring file {self.path} was truncated by another process; the daemon cannot "
                "publish into it: restart `ca-server serve`"
            )

    def _check_open(self) -> None:
        if self._closed:
            raise RingError(f"ring writer {self.name!r} is closed")


def _acquire_writer_lock(name: str, lock_file: Path, mode: int) -> int:
    deadline = time.monotonic() + LOCK_ACQUIRE_WINDOW_S
    while True:
        fd = open_private_file(lock_file, os.O_RDWR | os.O_CREAT, mode, what="lock file")
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
    """Remove a ring (and half-made temporaries) of a writer that died; we hold the lock.

    Only our own regular files: another user's file at the ring path is refused (UnsafePathError,
    the CLI's exit 73), never deleted, even by root, which could.
    """
    for stale in [path, *path.parent.glob(path.name + ".tmp-*")]:
        try:
            check_private_file(os.lstat(stale), stale, what="stale ring file")
            os.unlink(stale)
        except FileNotFoundError:
            pass


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
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
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
