"""How both sides of the frame ring touch the mapped file: the indices of the header's u64 words
that change while a ring lives, the mmap flag that pre-faults a mapping, the pixel slots as
arrays, and `_fence`, the ordering point between ring loads and stores (see `ring` for why
x86-64's TSO plus an uncontended lock round trip is enough). Private to `ring_writer` and
`ring_reader`.
"""

from __future__ import annotations

import mmap
import threading

import numpy as np

from ca_server.wire import layout
from ca_server.wire.layout import RingHeader

_W_STATE = layout.STATE_OFFSET // 8  # u64 word holding writer_pid (low) and state (high)
_W_PUBLISHED = layout.PUBLISHED_OFFSET // 8
_W_HEARTBEAT = layout.HEARTBEAT_OFFSET // 8
_W_PARAMS_VERSION = layout.PARAMS_VERSION_OFFSET // 8
_W_SIM_STEP = layout.SIM_STEP_OFFSET // 8
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_fence_lock = threading.Lock()


def _fence() -> None:
    """Order this process's loads/stores to the ring before the call against those after it."""
    _fence_lock.acquire()
    _fence_lock.release()


def slot_views(mapping: mmap.mmap, header: RingHeader) -> list[np.ndarray]:
    """Each slot's pixels as an (H, W, 3) uint8 host view into `mapping`, in slot order."""
    frame_shape = (header.height, header.width, layout.CHANNELS)
    return [
        np.frombuffer(
            mapping,
            dtype=np.uint8,
            count=header.frame_nbytes,
            offset=header.data_offset + i * header.slot_stride,
        ).reshape(frame_shape)
        for i in range(header.slot_count)
    ]
