"""Cheap resampling primitives shared by bloom, strand thickening and flow advection.

Everything here works on a `Backend`'s array module (numpy or CuPy) with buffers preallocated at
construction, so a frame allocates nothing full-size: a box-mean
downsampler, a separable, pixel-centre-aligned bilinear upsampler with toroidal wrap, and a
Gaussian blur with wrap whose weights stay on the device (`GaussianBlur`). The upsampler is what
keeps bloom smooth — no nearest-neighbour blocks — at a few full-frame passes.
The same two resamplings are also given as CUDA C device functions (`BOX_SUM_CUDA`,
`BILINEAR_TAP_CUDA`) for fused kernels that fold them into one launch (bloom's).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ca_server.xp import Backend

# scipy's and CuPy's gaussian_filter default: the weights end at 4 sigma.
GAUSSIAN_TRUNCATE = 4.0


def pick_factor(height: int, width: int, target_cells: int, factors=(8, 4, 2)) -> int:
    """The largest factor from `factors` dividing both sides that leaves ≥ `target_cells` cells."""
    for factor in factors:
        if (
            height % factor == 0
            and width % factor == 0
            and min(height, width) // factor >= (target_cells)
        ):
            return factor
    return 1


# `ca_box_sum`: the sum of one factor x factor block of a row-major float32 image, added in the
# order numpy's sums in BoxDownsampler use (down each column in sequence, then across: in
# sequence below 8, pairwise at 8, numpy's unrolled reduction), so for the factors `pick_factor`
# picks a host build of a kernel using it matches BoxDownsampler bit for bit.
BOX_SUM_CUDA = r"""
__device__ __forceinline__ float ca_column_sum(const float* top, const int width, const int rows) {
    float sum = top[0];
    for (int dy = 1; dy < rows; ++dy) sum += top[(long long)dy * width];
    return sum;
}
__device__ __forceinline__ float ca_box_sum(
    const float* image, const long long top, const int left, const int width, const int factor) {
    const float* corner = image + top * width + left;
    if (factor == 8) {  // written out: an array of column sums would live in local memory
        const float c01 = ca_column_sum(corner, width, 8) + ca_column_sum(corner + 1, width, 8);
        const float c23 = ca_column_sum(corner + 2, width, 8) + ca_column_sum(corner + 3, width, 8);
        const float c45 = ca_column_sum(corner + 4, width, 8) + ca_column_sum(corner + 5, width, 8);
        const float c67 = ca_column_sum(corner + 6, width, 8) + ca_column_sum(corner + 7, width, 8);
        return (c01 + c23) + (c45 + c67);
    }
    float sum = ca_column_sum(corner, width, factor);
    for (int dx = 1; dx < factor; ++dx) sum += ca_column_sum(corner + dx, width, factor);
    return sum;
}
"""

# `ca_bilinear_tap`: for full-size index j of a x factor upsampling, the two small-grid cells it
# blends (wrapped) and the weight of the second, at the pixel-centre positions BilinearUpsampler
# uses. Exact in float32 for the power-of-two factors `pick_factor` picks.
BILINEAR_TAP_CUDA = r"""
__device__ __forceinline__ void ca_bilinear_tap(
    const int j, const int factor, const int small_n, int* first, int* second, float* weight) {
    const float position = ((float)(j % factor) + 0.5f) / (float)factor - 0.5f;
    const float below = floorf(position);
    const int cell = j / factor + (int)below;
    *first = ca_wrap(cell, small_n);
    *second = ca_wrap(cell + 1, small_n);
    *weight = position - below;
}
"""


class BoxDownsampler:
    """Mean of each `factor`×`factor` block: (H, W) float32 -> (H/factor, W/factor) float32."""

    def __init__(self, backend: Backend, height: int, width: int, factor: int) -> None:
        if height % factor or width % factor:
            raise ValueError(f"downsampling factor {factor} must divide {height}x{width}")
        self._xp = backend.xp
        self.factor = factor
        self.small_shape = (height // factor, width // factor)
        self._row_sums = backend.xp.empty((height // factor, width), dtype=backend.xp.float32)

    def __call__(self, source: Any, out: Any) -> Any:
        """Block means of `source` ((H, W) float32, device) into `out` (small); returns `out`."""
        xp, factor = self._xp, self.factor
        if factor == 1:
            xp.copyto(out, source)
            return out
        small_h, small_w = self.small_shape
        xp.sum(source.reshape(small_h, factor, -1), axis=1, out=self._row_sums)
        xp.sum(self._row_sums.reshape(small_h, small_w, factor), axis=2, out=out)
        out *= 1.0 / (factor * factor)
        return out


class BilinearUpsampler:
    """Bilinear ×`factor` upsampling with wrap: (h, w) float32 -> (h·factor, w·factor) float32.

    Sample positions are pixel centres (output pixel j sits at small coordinate (j + ½)/factor − ½),
    matching `BoxDownsampler`, so down-then-up does not shift the image. Separable: columns are
    interpolated on the small grid, then rows straight into the full-size destination.
    """

    def __init__(self, backend: Backend, small_height: int, small_width: int, factor: int) -> None:
        xp = backend.xp
        self._xp = xp
        self.factor = factor
        self.small_shape = (small_height, small_width)
        self._padded = xp.empty((small_height + 2, small_width + 2), dtype=xp.float32)
        self._columns = xp.empty((small_height + 2, small_width * factor), dtype=xp.float32)
        self._column_tmp = xp.empty((small_height + 2, small_width), dtype=xp.float32)
        self._row_a = xp.empty((small_height, small_width * factor), dtype=xp.float32)
        self._row_b = xp.empty_like(self._row_a)
        # (first padded index, weight of the next one) for each of the `factor` sub-positions.
        self._taps: list[tuple[int, float]] = []
        for sub in range(factor):
            position = (sub + 0.5) / factor - 0.5
            below = math.floor(position)
            self._taps.append((below + 1, position - below))

    def __call__(
        self, small: Any, out: Any, *, scale: float = 1.0, accumulate: bool = False
    ) -> Any:
        """Write (with `accumulate`: add) `scale`·upsample(`small`) into `out`; returns `out`.

        `small` is (h, w) float32 and `out` (h·factor, w·factor) float32, both on the device.
        """
        xp, factor = self._xp, self.factor
        small_h, small_w = self.small_shape
        padded = self._padded
        padded[1:-1, 1:-1] = small
        padded[0, 1:-1] = small[-1]
        padded[-1, 1:-1] = small[0]
        padded[:, 0] = padded[:, -2]
        padded[:, -1] = padded[:, 1]
        columns = self._columns.reshape(small_h + 2, small_w, factor)
        for sub, (first, weight) in enumerate(self._taps):
            xp.multiply(padded[:, first : first + small_w], 1.0 - weight, out=columns[:, :, sub])
            xp.multiply(padded[:, first + 1 : first + 1 + small_w], weight, out=self._column_tmp)
            columns[:, :, sub] += self._column_tmp
        rows_out = out.reshape(small_h, factor, -1)
        row_a, row_b = self._row_a, self._row_b
        for sub, (first, weight) in enumerate(self._taps):
            xp.multiply(self._columns[first : first + small_h], (1.0 - weight) * scale, out=row_a)
            xp.multiply(self._columns[first + 1 : first + 1 + small_h], weight * scale, out=row_b)
            row_a += row_b
            if accumulate:
                rows_out[:, sub, :] += row_a
            else:
                rows_out[:, sub, :] = row_a
        return out


class GaussianBlur:
    """`ndimage.gaussian_filter(image, sigma, output=out, mode="wrap")` for (h, w) float32 device
    images of one shape, with its weights made once per sigma and kept on the device.

    Why not gaussian_filter itself: CuPy's builds its weights with numpy and uploads them on
    every call (cupyx/scipy/ndimage/_filters.py, `_gaussian_kernel1d`: one upload per axis in
    CuPy 14), host-to-device traffic in every frame, then casts them on the device and takes its
    intermediate from the pool. Here the two axes are `ndimage.correlate1d` calls, axis 0 into a
    buffer of our own then axis 1 into `out`, the order gaussian_filter uses. The weights are
    scipy's formula: on numpy in float64, so the result is scipy's bit for bit; on CuPy in
    float32, the dtype CuPy's gaussian_filter casts them to for a float32 image.
    """

    MAX_SIGMAS = 4  # a live thickness change makes a new sigma; bounds the weights kept

    def __init__(self, backend: Backend, shape: tuple[int, int]) -> None:
        self._backend = backend
        self._weights_dtype = np.float32 if backend.is_gpu else np.float64
        self._between_axes = backend.xp.empty(shape, dtype=backend.xp.float32)
        self._weights: dict[float, Any] = {}  # sigma -> (2r + 1,) weights on the device

    def __call__(self, image: Any, sigma: float, out: Any) -> Any:
        """Blur `image` ((h, w) float32, device) into `out` (same shape, not `image`); returns
        `out`. `sigma` in cells, > 0."""
        weights = self._weights.get(sigma)
        if weights is None:
            if len(self._weights) >= self.MAX_SIGMAS:
                self._weights.clear()
            weights = self._weights[sigma] = self._device_weights(sigma)
        ndimage = self._backend.ndimage
        ndimage.correlate1d(image, weights, axis=0, output=self._between_axes, mode="wrap")
        ndimage.correlate1d(self._between_axes, weights, axis=1, output=out, mode="wrap")
        return out

    def build_variant(self, radius: int, image: Any, out: Any) -> None:
        """Run the two passes once with weights of `radius` (zeros), so that CuPy builds its
        correlate1d kernels for that weight length now rather than in a frame; `image` and `out`
        as in `__call__` (`out` is overwritten)."""
        weights = self._backend.xp.zeros(2 * radius + 1, dtype=self._weights_dtype)
        ndimage = self._backend.ndimage
        ndimage.correlate1d(image, weights, axis=0, output=self._between_axes, mode="wrap")
        ndimage.correlate1d(self._between_axes, weights, axis=1, output=out, mode="wrap")

    def _device_weights(self, sigma: float) -> Any:
        radius = int(GAUSSIAN_TRUNCATE * sigma + 0.5)
        offsets = np.arange(-radius, radius + 1)
        weights = np.exp(-0.5 / (sigma * sigma) * offsets**2)
        weights = weights / weights.sum()
        return self._backend.xp.asarray(weights.astype(self._weights_dtype))
