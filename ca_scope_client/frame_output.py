"""Turn ring frames (host uint8) into the tensor Scope expects, on Scope's device.

Scope's documented contract for `{"video": ...}` is a (T, H, W, 3) tensor with values in
[0, 1]. On CUDA the bytes cross the bus as uint8 (a quarter of float32's size) from a pinned
staging buffer the ring reader copies into, and the scaling happens on the GPU. Both paths
convert into a preallocated float32 buffer (allocating 48 MiB per call costs more than the
conversion) in two in-place passes, `copy_` then `mul_`: torch 2.13's mixed-dtype
`torch.mul(u8, s, out=f32)` was measured 10x slower on the CPU.
Reusing the float output buffer across calls is safe because Scope turns float output into
fresh uint8 tensors before it calls the pipeline again (`PipelineProcessor.process_chunk`);
uint8 output is passed through by Scope without a copy, so that mode returns fresh tensors.
torch is imported here, lazily by the pipeline, never at plugin import.
"""

from __future__ import annotations

import numpy as np
import torch

INV_255 = 1.0 / 255.0


def resolve_device(choice: str) -> torch.device:
    """`auto` → CUDA when available, else CPU; `cuda` without a GPU is a clear error."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "ca_device='cuda' but torch sees no CUDA device; set ca_device to 'auto' or 'cpu'"
        )
    if choice not in ("cuda", "cpu"):
        raise ValueError(f"ca_device must be 'auto', 'cuda' or 'cpu', got {choice!r}")
    return torch.device(choice)


class FrameConverter:
    """Convert (n, H, W, 3) uint8 host frames to a (n, H, W, 3) tensor on `device`.

    `dtype` is torch.float32 (values in [0, 1]) or torch.uint8 ([0, 255]). `host_buffer` is the
    `FrameSource` buffer factory: pinned memory when the output goes to CUDA.
    """

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        if dtype not in (torch.float32, torch.uint8):
            raise ValueError(f"output dtype must be float32 or uint8, got {dtype}")
        self.device = device
        self.dtype = dtype
        self._cuda = device.type == "cuda"
        self._staging: torch.Tensor | None = None  # pinned host uint8, CUDA only
        self._device_u8: torch.Tensor | None = None
        self._output: torch.Tensor | None = None
        self._upload_done = torch.cuda.Event() if self._cuda else None

    def host_buffer(self, frames: int, height: int, width: int) -> np.ndarray:
        """A (frames, height, width, 3) uint8 host array for the ring reader to copy into."""
        shape = (frames, height, width, 3)
        if self._cuda:
            self._staging = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
            self._device_u8 = torch.empty(shape, dtype=torch.uint8, device=self.device)
            return self._staging.numpy()
        return np.empty(shape, dtype=np.uint8)

    def before_read(self) -> None:
        """Wait until the previous upload has left the pinned buffer (CUDA only; it normally
        has long since)."""
        if self._upload_done is not None:
            self._upload_done.synchronize()

    def convert(self, pixels: np.ndarray) -> torch.Tensor:
        """(n, H, W, 3) uint8 host array in [0, 255] → (n, H, W, 3) tensor on `self.device`:
        float32 in [0, 1], which may share memory with the previous call's result, or uint8 in
        [0, 255], always fresh memory (Scope queues uint8 frames without copying them)."""
        n = pixels.shape[0]
        pinned = self._cuda and _shares(pixels, self._staging)
        if pinned:
            assert self._staging is not None
            source = self._staging[:n]
        else:
            if not pixels.flags.writeable:  # the cached placeholder: never hand out its memory
                pixels = np.array(pixels)
            source = torch.from_numpy(np.ascontiguousarray(pixels))
        if not self._cuda:
            if self.dtype == torch.uint8:
                return source
            return self._output_buffer(pixels.shape)[:n].copy_(source).mul_(INV_255)
        if self.dtype == torch.uint8:
            uploaded = torch.empty(pixels.shape, dtype=torch.uint8, device=self.device)
        elif pinned and self._device_u8 is not None:
            uploaded = self._device_u8[:n]
        else:
            uploaded = torch.empty(pixels.shape, dtype=torch.uint8, device=self.device)
        uploaded.copy_(source, non_blocking=pinned)
        assert self._upload_done is not None
        self._upload_done.record()
        if self.dtype == torch.uint8:
            return uploaded
        return self._output_buffer(pixels.shape)[:n].copy_(uploaded).mul_(INV_255)

    def _output_buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The reused float32 output buffer, (≥ shape[0], H, W, 3) on `self.device`."""
        out = self._output
        if out is None or out.shape[1:] != tuple(shape[1:]) or out.shape[0] < shape[0]:
            staged = self._staging.shape[0] if self._staging is not None else 0
            frames = max(shape[0], staged)
            out = torch.empty((frames, *shape[1:]), dtype=torch.float32, device=self.device)
            self._output = out
        return out


def _shares(pixels: np.ndarray, staging: torch.Tensor | None) -> bool:
    """True when `pixels` is a view at the start of the pinned staging buffer."""
    return staging is not None and pixels.ctypes.data == staging.data_ptr()
