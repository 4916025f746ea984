"""Benchmark of the ring's read path: `RingReader.read_new(4, out=...)` against a bare `np.copyto`
of the same four frames' bytes, with a writer in another process publishing 1024×1024×3 frames.

Each timed call gets four freshly published frames; the two measurements alternate, so both see
the same cache and memory-bandwidth conditions. Prints a markdown table (milliseconds).
Run: `.venv/bin/python bench/bench_ring.py [--iterations 200] [--fps 240] [--size 1024]`.
"""

from __future__ import annotations

import argparse
import mmap
import multiprocessing
import os
import statistics
import tempfile
import time

import numpy as np

from ca_server.wire import layout
from ca_server.wire.paths import ring_path
from ca_server.wire.ring import RingReader, RingWriter

FRAMES_PER_READ = 4
RING_NAME = "bench"


def run_writer(size_px: int, slots: int, fps: float, stop) -> None:
    """Publish frames of `size_px`² at `fps` until `stop` is set (runs in a child process)."""
    patterns = [np.full((size_px, size_px, 3), v, np.uint8) for v in (40, 160)]
    with RingWriter(RING_NAME, size_px, size_px, slots=slots) as writer:
        next_at = time.monotonic()
        while not stop.is_set():
            np.copyto(writer.next_slot(), patterns[writer.published % 2])
            writer.publish(sim_step=writer.published, params_version=0)
            next_at += 1.0 / fps
            time.sleep(max(0.0, next_at - time.monotonic()))


def wait_for_frames(words: memoryview, after: int, timeout_s: float = 5.0) -> int:
    """Poll `published` until ≥ FRAMES_PER_READ frames past `after` exist; return it."""
    deadline = time.monotonic() + timeout_s
    while (published := words[layout.PUBLISHED_OFFSET // 8]) < after + FRAMES_PER_READ:
        if time.monotonic() > deadline:
            raise SystemExit("the writer stopped publishing")
        time.sleep(0.0002)
    return published


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(iterations: int, size_px: int, slots: int) -> dict[str, list[float]]:
    """Alternate read_new and bare copies of the newest four slots, then time private copies;
    seconds per call."""
    path = ring_path(RING_NAME)
    fd = os.open(path, os.O_RDONLY)
    mm = mmap.mmap(fd, os.fstat(fd).st_size, prot=mmap.PROT_READ)
    os.close(fd)
    header = layout.RingHeader.decode(mm)
    words = memoryview(mm)[: header.data_offset].cast("Q")
    slot_views = [
        np.frombuffer(
            mm, np.uint8, header.frame_nbytes, header.data_offset + i * header.slot_stride
        )
        for i in range(slots)
    ]
    out = np.empty((FRAMES_PER_READ, size_px, size_px, 3), np.uint8)
    out_flat = out.reshape(FRAMES_PER_READ, -1)
    private = np.full((FRAMES_PER_READ, size_px * size_px * 3), 7, np.uint8)
    timings: dict[str, list[float]] = {"read_new": [], "copyto": [], "copyto_private": []}
    reader = RingReader(RING_NAME)
    reader.read_new(FRAMES_PER_READ, out=out)
    seen = words[layout.PUBLISHED_OFFSET // 8]
    for i in range(2 * iterations):
        seen = wait_for_frames(words, seen)
        started = time.perf_counter()
        if i % 2 == 0:
            result = reader.read_new(FRAMES_PER_READ, out=out)
            timings["read_new"].append(time.perf_counter() - started)
            if len(result.meta) != FRAMES_PER_READ:
                raise SystemExit(f"read_new returned {len(result.meta)} frames: {result.message}")
        else:
            for k, frame_id in enumerate(range(seen - FRAMES_PER_READ, seen)):
                np.copyto(out_flat[k], slot_views[frame_id % slots])
            timings["copyto"].append(time.perf_counter() - started)
    for _ in range(iterations):  # after the pair, so its cache footprint cannot skew them
        seen = wait_for_frames(words, seen)
        started = time.perf_counter()
        np.copyto(out_flat, private)
        timings["copyto_private"].append(time.perf_counter() - started)
    reader.close()
    del slot_views, words
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--fps", type=float, default=240.0)
    parser.add_argument("--size", type=int, default=1024, help="frame side in pixels")
    parser.add_argument("--slots", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm, tempfile.TemporaryDirectory() as run:
        os.environ["CA_SERVER_SHM_DIR"], os.environ["CA_SERVER_RUNTIME_DIR"] = shm, run
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        writer = context.Process(target=run_writer, args=(args.size, args.slots, args.fps, stop))
        writer.start()
        try:
            deadline = time.monotonic() + 30
            while not ring_path(RING_NAME).exists():
                if time.monotonic() > deadline or not writer.is_alive():
                    raise SystemExit("the writer process did not create the ring")
                time.sleep(0.01)
            timings = measure(args.iterations, args.size, args.slots)
        finally:
            stop.set()
            writer.join(10)
    base = statistics.median(timings["copyto"])
    mib = FRAMES_PER_READ * args.size * args.size * 3 / (1 << 20)
    print(
        f"ring read, T={FRAMES_PER_READ} frames of {args.size}×{args.size}×3 uint8 "
        f"({mib:.0f} MiB per call), writer at {args.fps:g} fps in another process, "
        f"{args.iterations} calls each\n"
    )
    print("| measurement | median ms | p90 ms | ratio to copyto (median) |")
    print("|---|---|---|---|")
    labels = {
        "read_new": "`RingReader.read_new(4, out=…)`",
        "copyto": "`np.copyto` of the same 4 slots (shm → out)",
        "copyto_private": "`np.copyto` private → out (reference)",
    }
    for key, label in labels.items():
        median = statistics.median(timings[key])
        print(
            f"| {label} | {median * 1e3:.3f} | {percentile(timings[key], 0.9) * 1e3:.3f} "
            f"| {median / base:.2f} |"
        )


if __name__ == "__main__":
    main()
