"""Bloom: a soft two-scale glow of the bright parts of the light field, added back at full size.

The renderer's light field (pre-tonemap "value", one channel) is box-downsampled to a small grid
(about 64–128 cells a side), thresholded, blurred at two radii (`GaussianBlur`) and upsampled
bilinearly into the full frame. Working on one channel before the colour lookup keeps it to a
handful of full-frame passes; the glow takes the palette colour of the pixel it lands on, which
around a creature is its own rim colour. Radii are fractions of the frame, so the look does
not change with resolution. Where the backend has fused kernels, the downsample and threshold are
one launch (`BLOOM_DOWNSAMPLE`) and the near/far mix, upsampling and add another
(`BLOOM_UPSAMPLE_ADD`): `BloomResampleKernels`, chosen over `BloomResamplePasses` once, when the
bloom is built; the two blurs are `GaussianBlur`'s.
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

# Glow radii as fractions of the shorter side (≈ 6 px and 26 px at 512²) and their mix.
NEAR_SIGMA_FRACTION = 0.012
FAR_SIGMA_FRACTION = 0.05
NEAR_WEIGHT = 0.55
FAR_WEIGHT = 0.45

# small = max(box_mean(light) - threshold, 0): one thread per small cell (BoxDownsampler, then
# the threshold, in numpy's order).
BLOOM_DOWNSAMPLE = KernelSource(
    "bloom_downsample",
    BOX_SUM_CUDA
    + r"""
extern "C" __global__ void bloom_downsample(
    float* __restrict__ small, const float* __restrict__ light, const int width, const int factor,
    const float inverse_area, const float threshold, const long long n) {
    const int small_width = width / factor;
    CA_FOR_EACH(i, n) {
        const long long top = i / small_width * factor;
        const int left = (int)(i % small_width) * factor;
        const float mean = ca_box_sum(light, top, left, width, factor) * inverse_area;
        small[i] = fmaxf(mean - threshold, 0.0f);
    }
}
""",
)

# light += strength * upsample(near_weight * near + far_weight * far) * gate, with gate =
# min(density * gate_scale, 1) (1 when gate_scale is 0): one thread per full-size pixel, mixing
# the four small cells it reads (cheaper than a launch for the mix) and blending columns first,
# then rows, as BilinearUpsampler does.
BLOOM_UPSAMPLE_ADD = KernelSource(
    "bloom_upsample_add",
    BILINEAR_TAP_CUDA
    + r"""
__device__ __forceinline__ float bloom_glow(
    const float* near, const float* far, const int row, const int column, const int small_width,
    const float near_weight, const float far_weight) {
    const long long k = (long long)row * small_width + column;
    return near[k] * near_weight + far[k] * far_weight;
}

extern "C" __global__ void bloom_upsample_add(
    float* __restrict__ light, const float* __restrict__ near, const float* __restrict__ far,
    const float* __restrict__ density, const int width, const int small_height,
    const int small_width, const int factor, const float near_weight, const float far_weight,
    const float strength, const float gate_scale, const long long n) {
    CA_FOR_EACH(i, n) {
        int top, bottom, left, right;
        float down, across;
        ca_bilinear_tap((int)(i / width), factor, small_height, &top, &bottom, &down);
        ca_bilinear_tap((int)(i % width), factor, small_width, &left, &right, &across);
        const float upper =
            bloom_glow(near, far, top, left, small_width, near_weight, far_weight) *
                (1.0f - across) +
            bloom_glow(near, far, top, right, small_width, near_weight, far_weight) * across;
        const float lower =
            bloom_glow(near, far, bottom, left, small_width, near_weight, far_weight) *
                (1.0f - across) +
            bloom_glow(near, far, bottom, right, small_width, near_weight, far_weight) * across;
        const float glow = upper * ((1.0f - down) * strength) + lower * (down * strength);
        light[i] += gate_scale > 0.0f ? glow * fminf(density[i] * gate_scale, 1.0f) : glow;
    }
}
""",
)


class Bloom:
    """Adds a glow to a (height, width) float32 light field in place, on the backend's device."""

    def __init__(self, backend: Backend, height: int, width: int) -> None:
        xp = backend.xp
        self._xp = xp
        factor = pick_factor(height, width, target_cells=48)
        self._factor = factor
        small_h, small_w = height // factor, width // factor
        self._small = xp.empty((small_h, small_w), dtype=xp.float32)
        self._near = xp.empty_like(self._small)
        self._far = xp.empty_like(self._small)
        shorter_side = min(height, width)
        self._near_sigma = max(0.6, NEAR_SIGMA_FRACTION * shorter_side / factor)
        self._far_sigma = max(1.0, FAR_SIGMA_FRACTION * shorter_side / factor)
        self._blur = GaussianBlur(backend, (small_h, small_w))
        resample = backend.hot_pass(BloomResampleKernels, BloomResamplePasses)
        self._resample = resample(backend, height, width, factor, self._small)

    def apply(
        self,
        light: Any,
        strength: float,
        threshold: float,
        density: Any = None,
        full_glow_density: float = 0.0,
    ) -> Any:
        """`light += strength · glow(max(light − threshold, 0)) · gate`, in place; returns `light`.

        `light` is (H, W) float32 on the device (C-contiguous where the backend has fused
        kernels), in any unit (`threshold` in the same unit). Light below the threshold does not
        glow. With `density` ((H, W) float32 in [0, 1], same device) and `full_glow_density` > 0,
        gate = min(density / full_glow_density, 1): the glow lights matter, down to faint tissue,
        but never empty space, so a frame full of bright creatures keeps a black background
        instead of a coloured haze (issue 25). Without them gate = 1. A strength of 0 leaves
        `light` untouched and costs nothing.
        """
        if strength <= 0.0:
            return light
        small = self._small
        self._resample.downsample_above(light, float(threshold))
        self._blur(small, self._near_sigma, out=self._near)
        self._blur(small, self._far_sigma, out=self._far)
        gate_scale = (
            1.0 / full_glow_density if density is not None and full_glow_density > 0 else 0.0
        )
        self._resample.add_glow(light, self._near, self._far, float(strength), density, gate_scale)
        return light


class BloomResampleKernels:
    """The downsample and threshold as one `BLOOM_DOWNSAMPLE` launch, the near/far mix,
    upsample and add as one `BLOOM_UPSAMPLE_ADD` launch; no scratch."""

    def __init__(self, backend: Backend, height: int, width: int, factor: int, small: Any):
        self._factor, self._small = factor, small
        self._downsample_launch = backend.fused_kernel(BLOOM_DOWNSAMPLE)
        self._upsample_add_launch = backend.fused_kernel(BLOOM_UPSAMPLE_ADD)

    def downsample_above(self, light: Any, threshold: float) -> None:
        """`small = max(box_mean(light) − threshold, 0)`; `light` (H, W) float32, C-contiguous."""
        small, factor = self._small, self._factor
        self._downsample_launch(
            small.size, small, light, light.shape[1], factor, 1.0 / (factor * factor), threshold
        )

    def add_glow(
        self, light: Any, near: Any, far: Any, strength: float, density: Any, gate_scale: float
    ) -> None:
        """`light += strength · upsample(NEAR_WEIGHT · near + FAR_WEIGHT · far) · gate`, gate =
        min(density · gate_scale, 1), or 1 when `gate_scale` is 0; `near` and `far` are the small
        grid's blurs (the passes overwrite them)."""
        small_h, small_w = self._small.shape
        grids = (near, far, light if density is None else density)
        grids += (light.shape[1], small_h, small_w, self._factor)
        weights = (NEAR_WEIGHT, FAR_WEIGHT, strength, gate_scale)
        self._upsample_add_launch(light.size, light, *grids, *weights)


class BloomResamplePasses:
    """The same as numpy passes: `BoxDownsampler` and `BilinearUpsampler`, with their scratch
    rows (≈ 2.2 MB at 1024²)."""

    def __init__(self, backend: Backend, height: int, width: int, factor: int, small: Any):
        self._xp, self._small = backend.xp, small
        small_h, small_w = small.shape
        self._down = BoxDownsampler(backend, height, width, factor)
        self._up = BilinearUpsampler(backend, small_h, small_w, factor)
        self._glow: Any = None  # full-size scratch, made on the first gated glow
        self._gate: Any = None

    def downsample_above(self, light: Any, threshold: float) -> None:
        """As `BloomResampleKernels.downsample_above`."""
        small = self._small
        self._down(light, small)
        small -= threshold
        self._xp.maximum(small, 0.0, out=small)

    def add_glow(
        self, light: Any, near: Any, far: Any, strength: float, density: Any, gate_scale: float
    ) -> None:
        """As `BloomResampleKernels.add_glow`."""
        xp = self._xp
        near *= NEAR_WEIGHT
        far *= FAR_WEIGHT
        near += far
        if gate_scale <= 0.0:
            self._up(near, light, scale=strength, accumulate=True)
            return
        if self._glow is None:
            self._glow = xp.empty_like(light)
            self._gate = xp.empty_like(light)
        glow, gate = self._glow, self._gate
        self._up(near, glow, scale=strength)
        xp.multiply(density, gate_scale, out=gate)
        xp.minimum(gate, 1.0, out=gate)
        glow *= gate
        light += glow
