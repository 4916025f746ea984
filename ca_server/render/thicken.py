"""Strand thickening: fattens and softens thin strands of the renderer's display field.

display = max(display, upsample(blur(dilate(box_mean(display))))), on a grid 2-4x smaller than
the frame (`pick_factor`, at least 32 cells a side), so the dilation and blur are cheap whatever
the thickness. Where the backend has fused kernels, the downsample is one launch
(`THICKEN_DOWNSAMPLE`) and the upsample plus maximum another (`THICKEN_UPSAMPLE_MAX`); the
maximum filter and the blur (`GaussianBlur`) run as the backend's ndimage calls on both paths.
The numpy sequence (`BoxDownsampler`, `BilinearUpsampler`, `maximum`) is the reference and the
CPU path.
"""

from __future__ import annotations

from typing import Any

from ca_server.fused import KernelSource
from ca_server.render.resample import (
    BILINEAR_TAP_CUDA,
    BOX_SUM_CUDA,
    BilinearUpsampler,
    BoxDownsampler,
    GaussianBlur,
    pick_factor,
)
from ca_server.xp import Backend

# small = box_mean(display): one thread per small cell, summed in BoxDownsampler's order.
THICKEN_DOWNSAMPLE = KernelSource(
    "thicken_downsample",
    BOX_SUM_CUDA
    + r"""
extern "C" __global__ void thicken_downsample(
    float* __restrict__ small, const float* __restrict__ display, const int width,
    const int factor, const float inverse_area, const long long n) {
    const int small_width = width / factor;
    CA_FOR_EACH(i, n) {
        const long long top = i / small_width * factor;
        const int left = (int)(i % small_width) * factor;
        small[i] = ca_box_sum(display, top, left, width, factor) * inverse_area;
    }
}
""",
)

# display = max(display, upsample(small)): one thread per full-size pixel, blending columns
# first, then rows, as BilinearUpsampler does. The maximum keeps a NaN from either side, as
# np.maximum does (fmaxf would drop it), so both paths agree on broken input too.
THICKEN_UPSAMPLE_MAX = KernelSource(
    "thicken_upsample_max",
    BILINEAR_TAP_CUDA
    + r"""
extern "C" __global__ void thicken_upsample_max(
    float* __restrict__ display, const float* __restrict__ small, const int width,
    const int small_height, const int small_width, const int factor, const long long n) {
    CA_FOR_EACH(i, n) {
        int top, bottom, left, right;
        float down, across;
        ca_bilinear_tap((int)(i / width), factor, small_height, &top, &bottom, &down);
        ca_bilinear_tap((int)(i % width), factor, small_width, &left, &right, &across);
        const float* upper_row = small + (long long)top * small_width;
        const float* lower_row = small + (long long)bottom * small_width;
        const float upper = upper_row[left] * (1.0f - across) + upper_row[right] * across;
        const float lower = lower_row[left] * (1.0f - across) + lower_row[right] * across;
        const float thick = upper * (1.0f - down) + lower * down;
        const float value = display[i];
        display[i] = (thick > value || thick != thick) ? thick : value;
    }
}
""",
)


class StrandThickener:
    """Fattens and softens strands: display = max(display, blur(dilate(downsampled display))).

    Works in place on a (height, width) float32 display field on the backend's device.
    """

    def __init__(self, backend: Backend, height: int, width: int) -> None:
        xp = backend.xp
        self._xp = xp
        self._ndimage = backend.ndimage
        factor = pick_factor(height, width, target_cells=32, factors=(4, 2))
        self._factor = factor
        small_shape = (height // factor, width // factor)
        self._small = xp.empty(small_shape, dtype=xp.float32)
        self._small_tmp = xp.empty_like(self._small)
        self._blur = GaussianBlur(backend, small_shape)
        # None on numpy, where the resamplers below (and their buffers) serve instead.
        self._fused_downsample = backend.fused_kernel(THICKEN_DOWNSAMPLE)
        self._fused_upsample_max = backend.fused_kernel(THICKEN_UPSAMPLE_MAX)
        if self._fused_downsample is None or self._fused_upsample_max is None:
            self._down = BoxDownsampler(backend, height, width, factor)
            self._up = BilinearUpsampler(backend, *small_shape, factor)

    def apply(self, display: Any, thickness_px: float, scratch: Any) -> None:
        """Thicken `display` in place.

        `display` is (H, W) float32 in [0, 1] (NaN possible) on the device, C-contiguous where
        the backend has fused kernels. `scratch` is an (H, W) float32 device buffer the numpy
        path overwrites; the fused path leaves it alone.
        """
        ndimage, factor = self._ndimage, self._factor
        self._downsample(display)
        size = round(thickness_px / factor)
        if size >= 2:
            ndimage.maximum_filter(self._small, size=size, output=self._small_tmp, mode="wrap")
            self._small, self._small_tmp = self._small_tmp, self._small
        sigma = max(0.5, thickness_px / (2 * factor))
        self._blur(self._small, sigma, out=self._small_tmp)
        self._upsample_max(display, scratch)

    def _downsample(self, display: Any) -> None:
        """`small = box_mean(display)`."""
        if self._fused_downsample is not None:
            factor = self._factor
            inverse_area = 1.0 / (factor * factor)
            self._fused_downsample(
                self._small.size, self._small, display, display.shape[1], factor, inverse_area
            )
            return
        self._down(display, self._small)

    def _upsample_max(self, display: Any, scratch: Any) -> None:
        """`display = max(display, upsample(small_tmp))`, the blurred small grid."""
        if self._fused_upsample_max is not None:
            small_h, small_w = self._small_tmp.shape
            grid = (display.shape[1], small_h, small_w, self._factor)
            self._fused_upsample_max(display.size, display, self._small_tmp, *grid)
            return
        self._up(self._small_tmp, scratch)
        self._xp.maximum(display, scratch, out=display)
