"""Drive a pipeline the way Scope's `PipelineProcessor` does (a stand-in; Scope is not on PyPI).

`load_pipeline` builds the instance as Scope's pipeline manager does for a plugin: every config
field with a non-None default, overlaid with the load params, passed unvalidated to `__init__`.
`ScopeCallLoop` reproduces the worker loop's contract: parameter updates go through a bounded
queue (8, overflow dropped) and one is merged per iteration into the accumulated dict; every
call gets the whole dict plus `init_cache`, which is True until a call has returned video and
again on the call after `reset_cache()`; a falsy return makes the loop sleep 10 ms, anything
else is called again at once; returned float video is turned into uint8 as Scope does
(`(x * 255).clamp(0, 255)` truncated), uint8 passes through.

One `ScopeCallLoop` is one session. Scope loads a pipeline instance once and reuses it: every
session gets a new processor (a new loop) with its own initial parameters around the same
instance, so a test of a second session makes a second `ScopeCallLoop` on the same pipeline.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EMPTY_SLEEP_S = 0.01
PARAMETER_QUEUE_SIZE = 8


def load_pipeline(pipeline_class: type, load_params: dict[str, Any] | None = None) -> Any:
    config_class = pipeline_class.get_config_class()
    defaults = {
        name: info.default
        for name, info in config_class.model_fields.items()
        if info.default is not None
    }
    return pipeline_class(**{**defaults, **(load_params or {})})


def to_uint8_frames(video: Any) -> np.ndarray:
    """Scope's output conversion: (T, H, W, 3) float [0, 1] or uint8 → (T, H, W, 3) uint8 numpy."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and isinstance(video, torch.Tensor):
        if video.dtype != torch.uint8:
            video = (video * 255.0).clamp(0, 255).to(dtype=torch.uint8)
        return video.detach().cpu().numpy()
    array = np.asarray(video)
    if array.dtype != np.uint8:
        array = np.clip(array * 255.0, 0, 255).astype(np.uint8)
    return array


@dataclass
class CallRecord:
    """One call: its wall time, whether it returned video, and the returned dict."""

    duration_s: float
    frames: int
    output: dict[str, Any] = field(repr=False)


class ScopeCallLoop:
    def __init__(self, pipeline: Any, initial_parameters: dict[str, Any] | None = None) -> None:
        self.pipeline = pipeline
        self.parameters: dict[str, Any] = dict(initial_parameters or {})
        self.parameter_queue: queue.Queue[dict[str, Any]] = queue.Queue(PARAMETER_QUEUE_SIZE)
        self.prepared = False  # Scope's `is_prepared`: set by the first call that returns video
        self.pending_cache_init = False
        self.calls = 0
        self.max_call_s = 0.0
        self.frames_out = 0
        self.on_video: Callable[[np.ndarray, dict[str, Any]], None] | None = None

    def update_parameters(self, parameters: dict[str, Any]) -> bool:
        try:
            self.parameter_queue.put_nowait(parameters)
        except queue.Full:
            return False
        return True

    def reset_cache(self) -> None:
        """The user's cache reset: the next call gets `init_cache=True` again."""
        self.pending_cache_init = True

    def step(self) -> CallRecord:
        with contextlib.suppress(queue.Empty):  # one update merged per iteration, as Scope does
            self.parameters = {**self.parameters, **self.parameter_queue.get_nowait()}
        self.pipeline.prepare(**self.parameters)
        call_params = dict(self.parameters)
        call_params["init_cache"] = not self.prepared or self.pending_cache_init
        started = time.perf_counter()
        output = self.pipeline(**call_params)
        duration_s = time.perf_counter() - started
        self.calls += 1
        self.max_call_s = max(self.max_call_s, duration_s)
        if not output:
            time.sleep(EMPTY_SLEEP_S)
            return CallRecord(duration_s, 0, {})
        video = output.get("video")
        frames = 0
        if video is not None:
            self.prepared, self.pending_cache_init = True, False
            uint8 = to_uint8_frames(video)
            frames = uint8.shape[0]
            self.frames_out += frames
            if self.on_video is not None:
                self.on_video(uint8, output)
        return CallRecord(duration_s, frames, output)

    def run(
        self,
        *,
        seconds: float,
        until: Callable[[], bool] | None = None,
    ) -> bool:
        """Call in a tight loop for at most `seconds`; True if `until()` became true."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.step()
            if until is not None and until():
                return True
        return until is None
