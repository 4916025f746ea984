"""Worker processes for the ring tests: a pattern writer, a checking reader, a naive reader.

Run as `python ring_workers.py <role> ...`; each prints JSON lines (`ready`, then `done` with its
counters) so the tests can drive real processes. Frame f is filled with f % 256, except its first
16 bytes, which hold the frame id and the writer's epoch (u64 little-endian), written last; a
frame whose body is not uniform, or whose embedded id disagrees with its body, is torn.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import signal
import sys
import time

import numpy as np

from ca_server.wire import layout
from ca_server.wire.errors import RingError
from ca_server.wire.paths import ring_path
from ca_server.wire.ring import RingReader, RingWriter

STAMP_BYTES = 16


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def check_frame(frame: np.ndarray, frame_id: int, epoch: int | None) -> str:
    """'ok', 'torn', 'wrong_id' or 'wrong_epoch' for one (H, W, 3) uint8 frame."""
    flat = frame.reshape(-1)
    stamp = flat[:STAMP_BYTES].view("<u8")
    body = flat[STAMP_BYTES:]
    value = int(body[0])
    if int(body.min()) != int(body.max()) or int(stamp[0]) % 256 != value:
        return "torn"
    if int(stamp[0]) != frame_id:
        return "wrong_id"
    if epoch is not None and int(stamp[1]) != epoch:
        return "wrong_epoch"
    return "ok"


def run_writer(args: argparse.Namespace) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        writer = RingWriter(args.name, args.width, args.height, slots=args.slots)
    except RingError as exc:
        emit("done", error=type(exc).__name__, message=str(exc))
        return
    emit("ready", epoch=writer.epoch, pid=os.getpid(), t_mono_ns=time.monotonic_ns())
    bands = np.array_split(np.arange(args.height), args.chunks)
    stamp = np.zeros(2, dtype="<u8")
    stamp[1] = writer.epoch
    period_s = 1.0 / args.fps if args.fps > 0 else 0.0
    deadline = time.monotonic() + args.duration_s
    next_frame_at = time.monotonic()
    while not stop and time.monotonic() < deadline:
        frame_id = writer.published
        slot = writer.next_slot()
        for rows in bands:
            slot[rows[0] : rows[-1] + 1] = frame_id % 256
        stamp[0] = frame_id
        slot.reshape(-1)[:STAMP_BYTES] = stamp.view(np.uint8)
        writer.publish(sim_step=frame_id, params_version=1)
        if period_s:
            next_frame_at += period_s
            time.sleep(max(0.0, next_frame_at - time.monotonic()))
    published = writer.published
    writer.close()
    emit("done", published=published, epoch=writer.epoch)


def run_reader(args: argparse.Namespace) -> None:
    reader = RingReader(args.name, stale_after_s=args.stale_after_s)
    counts = dict.fromkeys(("ok", "torn", "wrong_id", "wrong_epoch"), 0)
    reads = noncontiguous = dropped = 0
    max_call_s = 0.0
    epochs: list[dict] = []
    statuses: list[dict] = []
    last_id: int | None = None
    out = None
    emit("ready", pid=os.getpid())
    deadline = time.monotonic() + args.duration_s
    while time.monotonic() < deadline:
        shape = reader.frame_shape
        if shape is not None and (out is None or out.shape[1:] != shape):
            out = np.empty((args.frames, *shape), dtype=np.uint8)
        started = time.monotonic()
        result = reader.read_new(args.frames, out=out)
        max_call_s = max(max_call_s, time.monotonic() - started)
        if not statuses or statuses[-1]["status"] != result.status.name:
            statuses.append({"status": result.status.name, "t_mono_ns": time.monotonic_ns()})
        if result.meta:
            reads += 1
            dropped += result.dropped
            epoch = result.meta[0].epoch
            ids = [m.frame_id for m in result.meta]
            if not epochs or epochs[-1]["epoch"] != epoch:
                epochs.append({"epoch": epoch, "t_mono_ns": time.monotonic_ns(), "ids": ids})
                last_id = None
            if ids != list(range(ids[0], ids[0] + len(ids))) or (
                last_id is not None and ids[0] <= last_id
            ):
                noncontiguous += 1
            last_id = ids[-1]
            for frame, meta in zip(result.pixels, result.meta, strict=True):
                counts[check_frame(frame, meta.frame_id, meta.epoch)] += 1
        if args.sleep_s:
            time.sleep(args.sleep_s)
    header = reader.header()
    reader.close()
    emit(
        "done",
        reads=reads,
        frames=counts["ok"],
        **{k: v for k, v in counts.items() if k != "ok"},
        noncontiguous=noncontiguous,
        dropped=dropped,
        max_call_s=max_call_s,
        epochs=epochs,
        statuses=statuses,
        published=header["published"] if header else None,
    )


def run_naive_reader(args: argparse.Namespace) -> None:
    """Copies the newest frames the way a reader without the seqlock re-check would."""
    fd = os.open(ring_path(args.name), os.O_RDONLY)
    mm = mmap.mmap(fd, os.fstat(fd).st_size, prot=mmap.PROT_READ)
    os.close(fd)
    header = layout.RingHeader.decode(mm)
    shape = (header.height, header.width, 3)
    words = memoryview(mm)[: header.data_offset].cast("Q")
    slots = [
        np.frombuffer(
            mm, np.uint8, header.frame_nbytes, header.data_offset + i * header.slot_stride
        )
        for i in range(header.slot_count)
    ]
    out = np.empty((args.frames, *shape), dtype=np.uint8)
    counts = dict.fromkeys(("ok", "torn", "wrong_id", "wrong_epoch"), 0)
    emit("ready", pid=os.getpid())
    deadline = time.monotonic() + args.duration_s
    while time.monotonic() < deadline and (counts["torn"] == 0 or not args.until_torn):
        published = words[layout.PUBLISHED_OFFSET // 8]
        ids = range(max(0, published - args.frames), published)
        for k, frame_id in enumerate(ids):
            np.copyto(out[k].reshape(-1), slots[frame_id % header.slot_count])
        for k, frame_id in enumerate(ids):
            counts[check_frame(out[k], frame_id, None)] += 1
    del words, slots
    emit("done", frames=counts["ok"], torn=counts["torn"], wrong_id=counts["wrong_id"])


def run_attach_and_exit(args: argparse.Namespace) -> None:
    reader = RingReader(args.name)
    reader.attach()
    result = reader.read_new(2)
    emit("done", status=result.status.name, frames=len(result.meta), attached=reader.epoch)


def run_create(args: argparse.Namespace) -> None:
    """Try to create a ring and report the outcome plus what is left in the shm folder."""
    free = (lambda _folder: 1 << 40) if args.skip_preflight else None
    try:
        with RingWriter(args.name, args.width, args.height, slots=args.slots, shm_free_bytes=free):
            outcome = {"error": None}
    except RingError as exc:
        outcome = {"error": type(exc).__name__, "message": str(exc)}
    folder = ring_path(args.name).parent
    emit("done", left=sorted(os.listdir(folder)), **outcome)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["writer", "reader", "naive", "attach-exit", "create"])
    parser.add_argument("name")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--fps", type=float, default=0.0)
    parser.add_argument("--chunks", type=int, default=1)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--duration-s", type=float, default=2.0)
    parser.add_argument("--sleep-s", type=float, default=0.0)
    parser.add_argument("--stale-after-s", type=float, default=2.0)
    parser.add_argument("--until-torn", action="store_true")
    parser.add_argument("--skip-preflight", action="store_true")
    args = parser.parse_args()
    roles = {
        "writer": run_writer,
        "reader": run_reader,
        "naive": run_naive_reader,
        "attach-exit": run_attach_and_exit,
        "create": run_create,
    }
    roles[args.role](args)


if __name__ == "__main__":
    sys.exit(main())
