"""`record` streams frames to the encoder (issue 18, item 6): its memory does not grow with the
clip's length. A real ring written by a thread of this process at 512² and 30 fps; `record` runs
in-process under tracemalloc, which sees every numpy frame buffer (Pillow's own buffers are not
traced, so this bounds the frames we keep, which is what grew)."""

from __future__ import annotations

import threading
import time
import tracemalloc
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ca_server.cli.frames import record
from ca_server.wire.ring import RingWriter

pytestmark = pytest.mark.timeout(120)
SIDE = 512
FRAME_BYTES = SIDE * SIDE * 3
CLIP_S = 3.0


def test_record_keeps_a_bounded_number_of_frames_in_memory(
    runtime_dir, shm_dir, tmp_path: Path
) -> None:
    name = f"rec{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    # Few colours, so the GIF's quantiser keeps up with 30 fps on a loaded CI box.
    frame = np.zeros((SIDE, SIDE, 3), np.uint8)
    frame[:, :, 0] = (np.arange(SIDE) // 64 * 32).astype(np.uint8)
    with RingWriter(name, SIDE, SIDE, slots=8, nominal_fps=30.0) as writer:
        writer.write(frame, sim_step=0, params_version=0)

        def publish() -> None:
            step = 0
            while not stop.is_set():
                step += 1
                frame[0, 0, 1] = step % 256  # no two neighbours equal: GIF would merge them
                writer.write(frame, sim_step=step, params_version=0)
                time.sleep(1 / 30)

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        out = tmp_path / "clip.gif"
        tracemalloc.start()
        try:
            record(out, seconds=CLIP_S, name=name)
            _, peak_bytes = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            stop.set()
            thread.join(10)
    with Image.open(out) as clip:
        frames = clip.n_frames
    assert frames >= 30, f"only {frames} frames recorded in {CLIP_S} s"
    # Streaming holds a read batch (≤ 7 frames) and one frame waiting for its duration; keeping
    # the clip would hold every recorded frame.
    assert peak_bytes < 12 * FRAME_BYTES, (
        f"record peaked at {peak_bytes / 2**20:.0f} MiB of traced memory for {frames} frames "
        f"of {FRAME_BYTES / 2**20:.2f} MiB"
    )
