"""The Scope pipeline: a thin layer that turns `FrameSource` batches into Scope's output dict.

Scope constructs the pipeline with every schema default plus the load parameters, then calls
it in a tight loop on a worker thread with all accumulated parameters. Each call forwards the
`ca_*` changes and returns `{"video": (t, H, W, 3) float32 in [0, 1]}` with the newest t ≤ T
frames not returned before, or `{}` when there is nothing new (Scope then sleeps 10 ms).
`"frame_rate"` (the daemon's rate, or the placeholder's) is added only when it differs from the
last one reported in this session: Scope latches it for playback, and forwards every extra
output key to the downstream pipeline's 8-slot parameter queue, so sending it on every call
would crowd out the user's own parameter updates to Krea. The instance outlives Scope's
sessions; a session's first call carries `init_cache=True` (Scope keeps it True until a call
returns video, and also sets it on a cache reset), so the rising edge of `init_cache`, or
`init_cache` after a pause in the calls, starts a new session: the daemon is then told what
this session's panel shows, whatever the last session or `ca-server ctl` set meanwhile. The
placeholder has the size the daemon will serve. A call never raises: whatever goes wrong is
logged once and answered with `{}`. Scope never calls a shutdown hook on pipelines, so
the ring mapping and the socket are released by a `weakref.finalize` when Scope drops the
instance. torch is imported at construction, not at plugin import; without torch (tests only)
frames come back as numpy float32 arrays.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from typing import Any

import numpy as np
from scope.core.pipelines.interface import Pipeline

from ca_scope_client.frame_source import FrameBatch, FrameSource
from ca_scope_client.placeholder import expected_frame_size
from ca_scope_client.schema import CellularAutomataConfig
from ca_server.wire.paths import default_ring_name

logger = logging.getLogger("ca_scope_client")

RING_NAME_ENV = "CA_SERVER_NAME"
INV_255 = np.float32(1.0 / 255.0)
SESSION_GAP_S = 1.0  # within a session Scope calls at least every ~10 ms


def resolve_ring_name(configured: str | None) -> str:
    """The ring to read: the configured name, else $CA_SERVER_NAME, else `gpu0`."""
    name = (configured or "").strip()
    return name or os.environ.get(RING_NAME_ENV, "").strip() or default_ring_name(0)


class _NumpyConverter:
    """Stand-in for `FrameConverter` when torch is missing: numpy arrays on the host."""

    def __init__(self, as_uint8: bool) -> None:
        self.as_uint8 = as_uint8

    def before_read(self) -> None:
        pass

    def host_buffer(self, frames: int, height: int, width: int) -> np.ndarray:
        return np.empty((frames, height, width, 3), dtype=np.uint8)

    def convert(self, pixels: np.ndarray) -> np.ndarray:
        if self.as_uint8:
            return np.array(pixels)
        return np.multiply(pixels, INV_255, dtype=np.float32)


class CellularAutomataPipeline(Pipeline):
    """Frames from a ca-server daemon's shared-memory ring, as a Scope text-mode pipeline."""

    @classmethod
    def get_config_class(cls) -> type[CellularAutomataConfig]:
        return CellularAutomataConfig

    def __init__(
        self,
        ca_ring_name: str = "",
        ca_frames_per_call: int = 4,
        ca_control_endpoint: str = "",
        ca_device: str = "auto",
        ca_output_dtype: str = "float32",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if ca_output_dtype not in ("float32", "uint8"):
            raise ValueError(
                f"ca_output_dtype must be 'float32' or 'uint8', got {ca_output_dtype!r}"
            )
        as_uint8 = ca_output_dtype == "uint8"
        self._converter = self._make_converter(ca_device, as_uint8)
        on_cuda = getattr(getattr(self._converter, "device", None), "type", "cpu") == "cuda"
        # Fresh read buffers for host uint8 output: Scope queues uint8 tensors without a copy.
        reuse_buffers = on_cuda or not as_uint8
        self.ring_name = resolve_ring_name(ca_ring_name)
        self.source = FrameSource(
            self.ring_name,
            frames_per_call=int(ca_frames_per_call),
            control_endpoint=ca_control_endpoint or "",
            buffer_factory=self._converter.host_buffer if reuse_buffers else None,
            placeholder_size=expected_frame_size(),
        )
        self._finalizer = weakref.finalize(self, self.source.close)
        self._failures: set[str] = set()
        self._reported_fps: float | None = None
        self._last_call_s = float("-inf")
        self._last_init_cache = False
        logger.info(
            "Cellular Automata pipeline reading ring %r (T=%d, output %s on %s)",
            self.ring_name,
            self.source.frames_per_call,
            ca_output_dtype,
            getattr(self._converter, "device", "cpu (numpy)"),
        )

    @staticmethod
    def _make_converter(device: str, as_uint8: bool) -> Any:
        try:
            import torch

            from ca_scope_client.frame_output import FrameConverter, resolve_device
        except ImportError:
            logger.warning("torch is not importable: returning numpy frames")
            return _NumpyConverter(as_uint8)
        dtype = torch.uint8 if as_uint8 else torch.float32
        return FrameConverter(resolve_device(device), dtype)

    def prepare(self, **kwargs: Any) -> None:
        """No input frames needed, even in video mode: the daemon is the source."""
        return None

    def __call__(self, **kwargs: Any) -> dict[str, Any]:
        """One Scope call: `{"video": (t, H, W, 3)[, "frame_rate": fps]}` or `{}`. Never raises."""
        try:
            self._watch_sessions(bool(kwargs.get("init_cache")))
            self._converter.before_read()
            batch = self.source.poll(kwargs)
            if batch is None:
                return {}
            return self._output(batch)
        except Exception as exc:  # Scope would log a traceback per call, thousands a second
            key = f"{type(exc).__name__}: {exc}"
            if key not in self._failures:
                self._failures.add(key)
                logger.exception("Cellular Automata call failed (returning no frame): %s", key)
            return {}

    def _watch_sessions(self, init_cache: bool) -> None:
        now = time.monotonic()
        if init_cache and (not self._last_init_cache or now - self._last_call_s > SESSION_GAP_S):
            self.source.start_session()
            self._reported_fps = None  # a new processor to tell the rate
        self._last_init_cache, self._last_call_s = init_cache, now

    def _output(self, batch: FrameBatch) -> dict[str, Any]:
        result: dict[str, Any] = {"video": self._converter.convert(batch.pixels)}
        if batch.fps and batch.fps != self._reported_fps:
            result["frame_rate"] = batch.fps
            self._reported_fps = batch.fps
        return result

    def close(self) -> None:
        """Release the ring and the control socket now (Scope itself never calls this)."""
        self._finalizer()
