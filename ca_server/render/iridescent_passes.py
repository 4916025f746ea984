"""The iridescent renderer's stages as numpy passes: the reference and the CPU path.

`IridescentPasses` is the twin of `IridescentKernels` (render/iridescent_kernels.py), chosen once
per backend by `IridescentRenderer`: the display field (with the smoothing EMA), the film
coordinate and light from two diagonal central differences, and the colour-table gather into the
(H, W, 3) uint8 frame. The display field lives inside a padded buffer whose one-cell border the
shading refreshes by wrapping, and the per-pixel scratch lives in row bands of `band_pixels`
pixels that stay in the CPU's cache (≈ 0.8 MB instead of 20 MB at 1024²). Arrays are (H, W)
float32 on the backend's device unless a method says otherwise.
"""

from __future__ import annotations

from typing import Any

from ca_server.render.palettes import (
    COORD_BINS,
    VALUE_BINS,
    build_color_lut,
    palette_by_name,
)
from ca_server.render.settings import RenderSettings
from ca_server.xp import Backend


class IridescentPasses:
    """The display, shade and colour stages as in-place numpy passes over row bands."""

    def __init__(
        self,
        backend: Backend,
        height: int,
        width: int,
        coord_offset: Any,
        light_dither: Any,
        band_pixels: int,
    ) -> None:
        xp = backend.xp
        self._backend, self._xp, self._width = backend, xp, width
        self._coord_offset, self._light_dither = coord_offset, light_dither
        self.coord = xp.empty((height, width), dtype=xp.float32)
        self.light = xp.empty((height, width), dtype=xp.float32)
        self._padded = xp.zeros((height + 2, width + 2), dtype=xp.float32)
        self.display = self._padded[1:-1, 1:-1]
        band_rows = max(1, min(height, band_pixels // width))
        self.bands = [(top, min(top + band_rows, height)) for top in range(0, height, band_rows)]
        band_shape = (band_rows, width)
        self._slope = xp.empty(band_shape, dtype=xp.float32)
        self._cross = xp.empty(band_shape, dtype=xp.float32)
        self._edge = xp.empty(band_shape, dtype=xp.float32)
        self._lut_index = xp.empty(band_shape, dtype=xp.int64)
        self._ema: Any = None
        self.ema_primed = False

    def load_display(self, world: Any, settings: RenderSettings) -> None:
        """display = clip((world − floor)·gain, 0, 1), through the EMA when smoothing is on."""
        xp = self._xp
        smoothing = settings.smoothing
        target = self.display if smoothing <= 0.0 else self.light
        if settings.floor != 0.0 or settings.gain != 1.0:
            xp.subtract(world, settings.floor, out=target)
            target *= settings.gain
            source = target
        else:
            source = world
        # NaN survives clip (fmax/fmin would not, at 4x the cost); it ends as an out-of-range
        # index, which the gather clamps (numpy) or wraps (CuPy): a wrong colour, never a fault.
        xp.clip(source, 0.0, 1.0, out=target)
        if smoothing <= 0.0:
            self.ema_primed = False
            return
        if self._ema is None:
            self._ema = xp.empty(self.display.shape, dtype=xp.float32)
        if not self.ema_primed:
            xp.copyto(self._ema, target)
            self.ema_primed = True
        else:
            target -= self._ema
            target *= 1.0 - smoothing
            self._ema += target
        xp.copyto(self.display, self._ema)

    def shade(self, film: float, iridescence: float, relief: float, ambient: float, rim: float):
        """Film coordinate and light (before bloom) from the display field; the gains are in LUT
        bins (coordinate) and light units, already scaled to the frame size."""
        padded = self._padded
        padded[0, 1:-1] = padded[-2, 1:-1]
        padded[-1, 1:-1] = padded[1, 1:-1]
        padded[:, 0] = padded[:, -2]
        padded[:, -1] = padded[:, 1]
        for top, bottom in self.bands:
            self._shade_band(top, bottom, (film, iridescence, relief, ambient, rim))

    def _shade_band(self, top: int, bottom: int, gains: tuple[float, ...]) -> None:
        """`shade` for rows [top, bottom)."""
        xp, rows = self._xp, bottom - top
        film, iridescence, relief, ambient, rim = gains
        padded, display = self._padded[top : bottom + 2], self.display[top:bottom]
        slope, cross, edge = self._slope[:rows], self._cross[:rows], self._edge[:rows]
        coord, light = self.coord[top:bottom], self.light[top:bottom]
        # Diagonal differences: `slope` is the derivative towards the bottom right, i.e. how much
        # a surface faces a light at the top left; |slope| + |cross| measures edges.
        xp.subtract(padded[2:, 2:], padded[:-2, :-2], out=slope)
        xp.subtract(padded[2:, :-2], padded[:-2, 2:], out=cross)
        xp.abs(slope, out=edge)
        xp.abs(cross, out=cross)
        edge += cross
        xp.multiply(display, film, out=coord)
        coord += self._coord_offset[top:bottom]
        xp.multiply(edge, iridescence, out=cross)
        coord -= cross
        slope *= relief
        slope += ambient
        xp.multiply(slope, display, out=light)
        xp.multiply(edge, rim, out=cross)
        light += cross

    def colour(self, lut: Any, out: Any) -> None:
        """Quantise coordinate and light and gather from `lut` into `out`, (H, W, 3) uint8."""
        out_pixels = out.reshape(-1, 3)
        for top, bottom in self.bands:
            index = self._quantise(top, bottom)
            pixels = out_pixels[top * self._width : bottom * self._width]
            self._backend.gather(lut, index.reshape(-1), out=pixels, axis=0)

    def _quantise(self, top: int, bottom: int) -> Any:
        """Flat colour-table indices for rows [top, bottom): a (rows, W) int64 band buffer."""
        xp, rows = self._xp, bottom - top
        coord, light = self.coord[top:bottom], self.light[top:bottom]
        xp.clip(coord, 0.0, COORD_BINS - 1, out=coord)
        # Light is kept in units where sqrt() is already the value bin; capping below the top bin
        # leaves room for the dither, so no second clip is needed after it.
        xp.clip(light, 0.0, (VALUE_BINS - 2) ** 2, out=light)
        xp.sqrt(light, out=light)
        light += self._light_dither[top:bottom]
        xp.floor(light, out=light)
        # Both parts are integers below 2**24 before the add, so float32 holds the flat index
        # exactly up to the coordinate's fraction, which the cast drops.
        light *= COORD_BINS
        light += coord
        index = self._lut_index[:rows]
        xp.copyto(index, light, casting="unsafe")
        return index

    def colour_table(self, palette: str, hue: float, brightness: float) -> Any:
        """The (VALUE_BINS · COORD_BINS, 3) uint8 colour table, built on the host, uploaded."""
        return self._xp.asarray(build_color_lut(palette_by_name(palette), hue, brightness))
