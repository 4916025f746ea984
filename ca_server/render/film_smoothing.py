"""Film smoothing: the renderer's film coordinate (the hue phase) blurred at a frame-relative scale.

Across a creature's edge the density climbs from 0 to 1 in a few pixels, and the film coordinate
with it: raw, the hue wheels through one or two palette cycles per edge, so an edge that moves
by a pixel repaints every pixel of it in a new colour — pixel-scale speckle that changes every
frame (issue 25: 70-79 % of the frame-to-frame change was finer than 5 px, against the
prototype's ~50 %). Real thin films change colour smoothly; the crisp structure belongs to the
light field, which stays sharp. So coord = upsample(blur(box_mean(coord))) on a grid 2-8x
smaller than the frame (`pick_factor`), with the blur's width a fixed fraction of the frame so
the look does not change with resolution. Where the backend has fused kernels the downsample
(the thickener's box mean, `THICKEN_DOWNSAMPLE`) and the upsample (`FILM_UPSAMPLE`) are one
launch each (`FilmResampleKernels`, chosen over `FilmResamplePasses` once, when the smoother is
built); the blur is `GaussianBlur` on both paths. The numpy sequence (`BoxDownsampler`,
`BilinearUpsampler`) is the reference and the CPU path.
"""

from __future__ import annotations

from typing import Any

from ca_server.fused import KernelSource
from ca_server.render.resample import (
    BILINEAR_TAP_CUDA,
    BilinearUpsampler,
    BoxDownsampler,
    GaussianBlur,
    pick_factor,
)
from ca_server.render.thicken import THICKEN_DOWNSAMPLE
from ca_server.xp import Backend

# Blur width as a fraction of the shorter side (≈ 4 px at 512², 8 px at 1024²): measured with
# bench/bench_sparkle.py as the width that brings the fine-scale change to the prototype's.
FILM_SIGMA_FRACTION = 0.008
# The small grid keeps at least this many cells a side, so the blur, not the grid, sets the scale.
MIN_SMALL_CELLS = 96
MIN_SMALL_SIGMA = 0.5

# coord = bilinear(small), wrapped: one thread per full-size pixel, blending columns first and
# then rows as BilinearUpsampler does.
FILM_UPSAMPLE = KernelSource(
    "film_upsample",
    BILINEAR_TAP_CUDA
    + r"""
extern "C" __global__ void film_upsample(
    float* __restrict__ coord, const float* __restrict__ small, const int width,
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
        coord[i] = upper * (1.0f - down) + lower * down;
    }
}
""",
)


class FilmSmoother:
    """Blurs a (height, width) float32 field in place on the backend's device (see module doc)."""

    def __init__(self, backend: Backend, height: int, width: int) -> None:
        xp = backend.xp
        factor = pick_factor(height, width, target_cells=MIN_SMALL_CELLS)
        self._factor = factor
        small_shape = (height // factor, width // factor)
        self._small = xp.empty(small_shape, dtype=xp.float32)
        self._blurred = xp.empty_like(self._small)
        self._sigma = max(MIN_SMALL_SIGMA, FILM_SIGMA_FRACTION * min(height, width) / factor)
        self._blur = GaussianBlur(backend, small_shape)
        resample = backend.hot_pass(FilmResampleKernels, FilmResamplePasses)
        self._resample = resample(backend, height, width, factor, self._small)

    def apply(self, field: Any) -> Any:
        """`field = upsample(blur(box_mean(field)))`, in place; returns `field`.

        `field` is (H, W) float32 on the device, C-contiguous where the backend has fused kernels.
        """
        self._resample.downsample(field)
        self._blur(self._small, self._sigma, out=self._blurred)
        self._resample.upsample(self._blurred, field)
        return field


class FilmResampleKernels:
    """The box-mean downsample (the thickener's `THICKEN_DOWNSAMPLE`) and the bilinear upsample
    (`FILM_UPSAMPLE`) as one launch each; no scratch."""

    def __init__(self, backend: Backend, height: int, width: int, factor: int, small: Any):
        self._factor, self._small = factor, small
        self._downsample_launch = backend.fused_kernel(THICKEN_DOWNSAMPLE)
        self._upsample_launch = backend.fused_kernel(FILM_UPSAMPLE)

    def downsample(self, field: Any) -> None:
        """`small = box_mean(field)`; `field` (H, W) float32, C-contiguous."""
        small, factor = self._small, self._factor
        self._downsample_launch(
            small.size, small, field, field.shape[1], factor, 1.0 / (factor * factor)
        )

    def upsample(self, blurred: Any, field: Any) -> None:
        """`field = bilinear_upsample(blurred)`; `blurred` has the small grid's shape."""
        small_h, small_w = blurred.shape
        self._upsample_launch(
            field.size, field, blurred, field.shape[1], small_h, small_w, self._factor
        )


class FilmResamplePasses:
    """The same as numpy passes: `BoxDownsampler` and `BilinearUpsampler` (the reference)."""

    def __init__(self, backend: Backend, height: int, width: int, factor: int, small: Any):
        self._small = small
        self._down = BoxDownsampler(backend, height, width, factor)
        self._up = BilinearUpsampler(backend, *small.shape, factor)

    def downsample(self, field: Any) -> None:
        """As `FilmResampleKernels.downsample`."""
        self._down(field, self._small)

    def upsample(self, blurred: Any, field: Any) -> None:
        """As `FilmResampleKernels.upsample`."""
        self._up(blurred, field)
