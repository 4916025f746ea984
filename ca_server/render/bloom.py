"""Bloom: a soft two-scale glow of the bright parts of the light field, added back at full size.

The renderer's light field (pre-tonemap "value", one channel) is box-downsampled to a small grid
(about 64–128 cells a side), thresholded, blurred at two radii with the backend's Gaussian filter
and upsampled bilinearly into the full frame. Working on one channel before the colour lookup keeps
it to a handful of full-frame passes; the glow takes the palette colour of the pixel it lands on,
which around a creature is its own rim colour. Radii are fractions of the frame, so the look does
not change with resolution.
"""

from __future__ import annotations

from typing import Any

from ca_server.render.resample import BilinearUpsampler, BoxDownsampler, pick_factor
from ca_server.xp import Backend

# Glow radii as fractions of the shorter side (≈ 6 px and 26 px at 512²) and their mix.
NEAR_SIGMA_FRACTION = 0.012
FAR_SIGMA_FRACTION = 0.05
NEAR_WEIGHT = 0.55
FAR_WEIGHT = 0.45


class Bloom:
    """Adds a glow to a (height, width) float32 light field in place, on the backend's device."""

    def __init__(self, backend: Backend, height: int, width: int) -> None:
        xp = backend.xp
        self._xp = xp
        self._ndimage = backend.ndimage
        factor = pick_factor(height, width, target_cells=48)
        self._down = BoxDownsampler(backend, height, width, factor)
        small_h, small_w = self._down.small_shape
        self._up = BilinearUpsampler(backend, small_h, small_w, factor)
        self._small = xp.empty((small_h, small_w), dtype=xp.float32)
        self._near = xp.empty_like(self._small)
        self._far = xp.empty_like(self._small)
        shorter_side = min(height, width)
        self._near_sigma = max(0.6, NEAR_SIGMA_FRACTION * shorter_side / factor)
        self._far_sigma = max(1.0, FAR_SIGMA_FRACTION * shorter_side / factor)

    def apply(self, light: Any, strength: float, threshold: float) -> Any:
        """`light += strength · glow(max(light − threshold, 0))`, in place; returns `light`.

        `light` is (H, W) float32 on the device, in any unit (`threshold` in the same unit). Light
        below the threshold does not glow, so dim tissue does not fog the background. A strength
        of 0 leaves `light` untouched and costs nothing.
        """
        if strength <= 0.0:
            return light
        xp, small = self._xp, self._small
        self._down(light, small)
        small -= threshold
        xp.maximum(small, 0.0, out=small)
        self._ndimage.gaussian_filter(small, self._near_sigma, output=self._near, mode="wrap")
        self._ndimage.gaussian_filter(small, self._far_sigma, output=self._far, mode="wrap")
        self._near *= NEAR_WEIGHT
        self._far *= FAR_WEIGHT
        self._near += self._far
        self._up(self._near, light, scale=strength, accumulate=True)
        return light
