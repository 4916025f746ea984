"""Strand thickening: fattens and softens thin strands of the renderer's display field.

display = max(display, upsample(blur(dilate(box_mean(display))))), on a grid 2-4x smaller than
the frame (`pick_factor`, at least 32 cells a side), so the dilation and blur are cheap whatever
the thickness. Where the backend has fused kernels, the downsample is one launch
(`THICKEN_DOWNSAMPLE`) and the upsample plus maximum another (`THICKEN_UPSAMPLE_MAX`):
`ThickenResampleKernels`; the maximum filter and the blur (`GaussianBlur`) run as the backend's
ndimage calls on both paths, and on CuPy every variant of them a thickness can ask for is built
with the thickener (the renderer's, before its first frame), so a thickness drag compiles
nothing. The numpy sequence (`ThickenResamplePasses`: `BoxDownsampler`, `BilinearUpsampler`,
`maximum`) is the reference and the CPU path; which of the two runs is chosen once.
"""

from __future__ import annotations

from typing import Any

from ca_server.fused import KernelSource
from ca_server.render.resample import (
    BILINEAR_TAP_CUDA,
    BOX_SUM_CUDA,
    GAUSSIAN_TRUNCATE,
    BilinearUpsampler,
    BoxDownsampler,
    GaussianBlur,
    pick_factor,
)
from ca_server.render.settings import SETTING_RANGES
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


def dilation_size(thickness_px: float, factor: int) -> int:
    """The maximum filter's window side on the small grid (no dilation below 2)."""
    return round(thickness_px / factor)


def blur_sigma(thickness_px: float, factor: int) -> float:
    """The blur's sigma on the small grid, in cells."""
    return max(0.5, thickness_px / (2 * factor))


class StrandThickener:
    """Fattens and softens strands: display = max(display, blur(dilate(downsampled display))).

    Works in place on a (height, width) float32 display field on the backend's device.
    """

    def __init__(self, backend: Backend, height: int, width: int) -> None:
        xp = backend.xp
        factor = pick_factor(height, width, target_cells=32, factors=(4, 2))
        self._factor = factor
        small_shape = (height // factor, width // factor)
        self._small = xp.empty(small_shape, dtype=xp.float32)
        self._small_tmp = xp.empty_like(self._small)
        self._blur = GaussianBlur(backend, small_shape)
        resample = backend.hot_pass(ThickenResampleKernels, ThickenResamplePasses)
        self._resample = resample(backend, height, width, factor)
        self._resample.build_variants(self._small, self._small_tmp, self._blur)

    def apply(self, display: Any, thickness_px: float, scratch: Any) -> None:
        """Thicken `display` in place.

        `display` is (H, W) float32 in [0, 1] (NaN possible) on the device, C-contiguous where
        the backend has fused kernels. `scratch` is an (H, W) float32 device buffer the numpy
        path overwrites; the fused path leaves it alone.
        """
        factor = self._factor
        self._resample.downsample(display, self._small)
        size = dilation_size(thickness_px, factor)
        if size >= 2:
            self._resample.dilate(self._small, size, out=self._small_tmp)
            self._small, self._small_tmp = self._small_tmp, self._small
        sigma = blur_sigma(thickness_px, factor)
        self._blur(self._small, sigma, out=self._small_tmp)
        self._resample.upsample_max(display, self._small_tmp, scratch)


class ThickenResampleKernels:
    """The downsample as one `THICKEN_DOWNSAMPLE` launch and the upsample plus maximum as one
    `THICKEN_UPSAMPLE_MAX` launch; the dilation is the backend's `maximum_filter`."""

    def __init__(self, backend: Backend, height: int, width: int, factor: int) -> None:
        self._ndimage, self._factor = backend.ndimage, factor
        self._downsample_launch = backend.fused_kernel(THICKEN_DOWNSAMPLE)
        self._upsample_max_launch = backend.fused_kernel(THICKEN_UPSAMPLE_MAX)

    def downsample(self, display: Any, small: Any) -> None:
        """`small = box_mean(display)`; `display` (H, W) float32, C-contiguous."""
        factor = self._factor
        inverse_area = 1.0 / (factor * factor)
        self._downsample_launch(small.size, small, display, display.shape[1], factor, inverse_area)

    def dilate(self, small: Any, size: int, out: Any) -> None:
        """`out` = the maximum of `small` over a `size` x `size` window, wrapping."""
        self._ndimage.maximum_filter(small, size=size, output=out, mode="wrap")

    def build_variants(self, small: Any, out: Any, blur: GaussianBlur) -> None:
        """Build now every CuPy kernel a thickness in SETTING_RANGES can ask for: CuPy compiles
        `maximum_filter` per window size and `correlate1d` per weight length on first use, so a
        thickness drag would otherwise compile (NVRTC, a fraction of a second on a fresh pod) in
        the frames it reaches new values. At most ~20 small kernels, once per process (CuPy keeps
        them); on later thickeners these are ~60 launches on the small grid. `small` and `out`
        are the small grid's buffers, overwritten."""
        factor, largest = self._factor, SETTING_RANGES["thickness"][1]
        for size in range(2, dilation_size(largest, factor) + 1):
            self.dilate(small, size, out)
        smallest_radius = int(GAUSSIAN_TRUNCATE * blur_sigma(0.0, factor) + 0.5)
        largest_radius = int(GAUSSIAN_TRUNCATE * blur_sigma(largest, factor) + 0.5)
        for radius in range(smallest_radius, largest_radius + 1):
            blur.build_variant(radius, small, out)

    def upsample_max(self, display: Any, small: Any, scratch: Any) -> None:
        """`display = max(display, upsample(small))`; `scratch` is not used."""
        small_h, small_w = small.shape
        grid = (display.shape[1], small_h, small_w, self._factor)
        self._upsample_max_launch(display.size, display, small, *grid)


class ThickenResamplePasses:
    """The same as numpy passes: `BoxDownsampler`, `maximum_filter`, `BilinearUpsampler` into
    `scratch` and a maximum."""

    def __init__(self, backend: Backend, height: int, width: int, factor: int) -> None:
        self._xp, self._ndimage = backend.xp, backend.ndimage
        self._down = BoxDownsampler(backend, height, width, factor)
        self._up = BilinearUpsampler(backend, height // factor, width // factor, factor)

    def downsample(self, display: Any, small: Any) -> None:
        """As `ThickenResampleKernels.downsample`."""
        self._down(display, small)

    def dilate(self, small: Any, size: int, out: Any) -> None:
        """As `ThickenResampleKernels.dilate`."""
        self._ndimage.maximum_filter(small, size=size, output=out, mode="wrap")

    def build_variants(self, small: Any, out: Any, blur: GaussianBlur) -> None:
        """Nothing to build: numpy compiles nothing."""

    def upsample_max(self, display: Any, small: Any, scratch: Any) -> None:
        """As `ThickenResampleKernels.upsample_max`, through `scratch` ((H, W) float32)."""
        self._up(small, scratch)
        self._xp.maximum(display, scratch, out=display)
