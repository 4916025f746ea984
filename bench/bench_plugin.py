"""Benchmark: the cost of one Scope `__call__` of the plugin against the floor of its work.

One call at T=4 frames of 1024x1024 reads four new frames from the shared-memory ring and
returns them as a (4, 1024, 1024, 3) float32 tensor in [0, 1] on the CPU. The floor is the least
any reader must do to produce that tensor: copy the same four ring slots out of shared memory
(12 MiB) and convert them into a preallocated float32 buffer (48 MiB). Each measurement is
preceded by the writer publishing four fresh frames, so both see the same cache state. The goal
is a median call cost of at most 1.5x the floor.

    .venv/bin/python bench/bench_plugin.py [--size 1024] [--frames 4] [--repeats 60]

Needs torch (the pipeline's output type) and the Scope stand-in from tests/plugin.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "plugin" / "scope_standin"))
os.environ.setdefault("CA_SERVER_RUNTIME_DIR", tempfile.mkdtemp(prefix="ca-bench-"))

import torch  # noqa: E402
from scope_call_loop import load_pipeline  # noqa: E402

from ca_scope_client.pipeline import CellularAutomataPipeline  # noqa: E402
from ca_server.wire.layout import RingHeader  # noqa: E402
from ca_server.wire.ring import RingWriter  # noqa: E402

GOAL_RATIO = 1.5


def slot_views(path: Path) -> tuple[np.memmap, list[np.ndarray]]:
    """Read-only (H, W, 3) uint8 views of every slot of the ring file at `path`."""
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    header = RingHeader.decode(bytes(mapped[:4096]))
    shape = (header.height, header.width, 3)
    views = [
        mapped[
            header.data_offset + i * header.slot_stride : header.data_offset
            + i * header.slot_stride
            + header.frame_nbytes
        ].reshape(shape)
        for i in range(header.slot_count)
    ]
    return mapped, views


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    size, frames = args.size, args.frames
    name = f"bench{uuid.uuid4().hex[:8]}"
    source_frames = [
        np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8) for i in range(8)
    ]
    writer = RingWriter(name, size, size, slots=frames + 4, nominal_fps=30.0)
    pipeline = load_pipeline(
        CellularAutomataPipeline,
        {"ca_ring_name": name, "ca_device": "cpu", "ca_frames_per_call": frames},
    )
    params = {"ca_preset": "coral", "ca_speed": 1.0, "ca_hue_shift": 0.0, "init_cache": False}
    _, slots = slot_views(writer.path)
    floor_u8 = np.empty((frames, size, size, 3), dtype=np.uint8)
    floor_f32 = torch.empty((frames, size, size, 3), dtype=torch.float32)
    inv_255 = 1.0 / 255.0

    def publish() -> list[int]:
        ids = []
        for k in range(frames):
            ids.append(writer.write(source_frames[k % 8], sim_step=k, params_version=0))
        return ids

    def floor_once() -> float:
        ids = publish()
        started = time.perf_counter()
        for k, frame_id in enumerate(ids):
            np.copyto(floor_u8[k], slots[frame_id % len(slots)])
        floor_f32.copy_(torch.from_numpy(floor_u8)).mul_(inv_255)
        return time.perf_counter() - started

    def call_once() -> float:
        publish()
        started = time.perf_counter()
        output = pipeline(**params)
        elapsed = time.perf_counter() - started
        assert output["video"].shape == (frames, size, size, 3), output.get("video")
        return elapsed

    for _ in range(5):  # warm-up: attach, first-touch page faults, buffer allocation
        floor_once()
        call_once()
    floor_s, call_s = [], []
    for i in range(args.repeats):
        order = (floor_once, call_once) if i % 2 == 0 else (call_once, floor_once)
        for measure in order:
            (floor_s if measure is floor_once else call_s).append(measure())
    pipeline.close()
    writer.close()

    floor_ms = statistics.median(floor_s) * 1e3
    call_ms = statistics.median(call_s) * 1e3
    ratio = call_ms / floor_ms
    print(
        f"plugin __call__ T={frames} {size}x{size} float32 CPU, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.repeats} repeats"
    )
    print(
        f"  floor (copy slots + convert): median {floor_ms:.2f} ms, "
        f"p90 {percentile(floor_s, 90) * 1e3:.2f} ms"
    )
    print(
        f"  __call__:                     median {call_ms:.2f} ms, "
        f"p90 {percentile(call_s, 90) * 1e3:.2f} ms"
    )
    verdict = "meets" if ratio <= GOAL_RATIO else "MISSES"
    print(f"  ratio {ratio:.2f}x ({verdict} the goal of <= {GOAL_RATIO}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
