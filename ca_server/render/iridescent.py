"""The iridescent renderer: a (H, W) density field in [0, 1] -> a (H, W, 3) uint8 thin-film picture.

Per frame, all on the backend's device with preallocated buffers:
1. display field = clip((world − floor)·gain, 0, 1); optional temporal EMA (binary
   engines) and optional strand thickening (`StrandThickener`, render/thicken.py);
2. two diagonal central differences (periodic) give a raking-light term (light from the top left)
   and an edge strength;
3. film coordinate t = film·density − iridescence·edge + a static, seeded spatial offset — so the
   hue follows thickness contours like interference fringes and shifts on slopes — blurred to a
   few pixels (`FilmSmoother`, render/film_smoothing.py) so colour never fizzes at pixel scale;
4. light value = density·(ambient + relief·slope) + rim glow on edges, plus bloom;
5. one gather from a (value × t) colour table that bakes palette, hue rotation, brightness and a
   tanh tonemap (rebuilt only when those change; on the host for numpy, on the device where
   fused kernels run, so a hue or brightness drag uploads nothing).
The static offset and the dither that hides table quantisation come from `seed`, so the same
settings, seed and input give the same frames on the same backend. Where the backend has fused
kernels, steps 1, 2-4 and 5 are one launch each (`RENDER_DISPLAY`, `RENDER_SHADE`,
`RENDER_COLOUR`; bloom and the thickener add two more each and their small filters); the numpy
sequences beside them are the reference and the CPU path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from ca_server.render.bloom import Bloom
from ca_server.render.film_smoothing import FilmSmoother
from ca_server.render.iridescent_kernels import (
    RENDER_COLOUR,
    RENDER_COLOUR_TABLE,
    RENDER_DISPLAY,
    RENDER_SHADE,
)
from ca_server.render.palettes import (
    COORD_BINS,
    COORD_BINS_PER_UNIT,
    COORD_MIN,
    EXPOSURE,
    VALUE_BINS,
    VALUE_SQRT_SCALE,
    build_color_lut,
    hue_rotation_matrix,
    palette_by_name,
    palette_colours,
)
from ca_server.render.resample import gather
from ca_server.render.settings import RenderSettings, validate_setting
from ca_server.render.thicken import StrandThickener
from ca_server.xp import Backend

# Shading gains, tuned by eye at 512² (slopes are rescaled to that reference size).
REFERENCE_SIZE_PX = 512
AMBIENT_LIGHT = 0.8
RELIEF_GAIN = 2.2
RIM_GAIN = 0.9
IRIDESCENCE_GAIN = 0.5
MIN_SIDE_PX = 16
# Pixels per row band of the per-pixel scratch on the CPU: the slope/edge temporaries and the
# int64 table index stay small (≈ 0.8 MB instead of 20 MB at 1024²) and cache-resident.
CPU_BAND_PIXELS = 32768
# The light field is stored pre-multiplied by this, so sqrt(light) is directly a LUT value bin.
LIGHT_UNIT = VALUE_SQRT_SCALE**2
# Light (in palette value units) below this does not glow.
BLOOM_THRESHOLD = 0.25
# The glow lands only on matter: at full strength from this display density up, fading to none
# on empty pixels, so backgrounds stay black (issue 25: a full frame's glow was a coloured haze).
FULL_GLOW_DENSITY = 0.1


def film_offset_field(height: int, width: int, seed: int) -> np.ndarray:
    """Static spatial drift of the film coordinate: (H, W) float64 on the host, about ±0.35.

    A sum of a few seeded low-frequency periodic waves (tileable, so it agrees with the wrapped
    world) plus a gentle radial term, like a soap bubble thinning towards its rim.
    """
    rng = np.random.default_rng([seed, 0x1F11])
    y = (np.arange(height) + 0.5) / height
    x = (np.arange(width) + 0.5) / width
    offset = np.zeros((height, width))
    for _ in range(8):
        ky, kx = rng.integers(-3, 4, size=2)
        if ky == 0 and kx == 0:
            kx = 1
        amplitude = 0.11 / math.hypot(ky, kx) ** 0.5
        phase = rng.uniform(0, 2 * math.pi)
        wave_y = 2 * math.pi * ky * y[:, None] + phase
        wave_x = 2 * math.pi * kx * x[None, :]
        offset += amplitude * (np.cos(wave_y) * np.cos(wave_x) - np.sin(wave_y) * np.sin(wave_x))
    half_side = min(height, width) / 2.0
    dy = (np.arange(height) + 0.5 - height / 2.0)[:, None] / half_side
    dx = (np.arange(width) + 0.5 - width / 2.0)[None, :] / half_side
    offset += 0.2 * np.sqrt(dy * dy + dx * dx)
    return offset


class IridescentRenderer:
    """Turns a density field into an iridescent RGB frame on the backend's device.

    `settings` is a preset's `[render]` table (keys in `ca_server.render.settings`); its `palette`
    wins over the `palette` argument. `hue_shift`, `brightness` and `thickness` can be set live
    and take effect on the next frame.
    """

    def __init__(
        self,
        backend: Backend,
        height: int,
        width: int,
        *,
        palette: str = "oil_slick",
        seed: int = 0,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        if height < MIN_SIDE_PX or width < MIN_SIDE_PX:
            raise ValueError(f"frame {height}x{width} is too small; both sides must be ≥ 16 px")
        base = RenderSettings(palette=validate_setting("palette", palette))
        self._settings = RenderSettings.from_mapping(settings, base)
        self._backend = backend
        xp = backend.xp
        self._xp = xp
        self.height, self.width = height, width
        shape = (height, width)
        # All None on numpy, where the array sequences below run instead.
        self._fused_display = backend.fused_kernel(RENDER_DISPLAY)
        self._fused_shade = backend.fused_kernel(RENDER_SHADE)
        self._fused_colour = backend.fused_kernel(RENDER_COLOUR)
        self._fused_colour_table = backend.fused_kernel(RENDER_COLOUR_TABLE)
        self._coord = xp.empty(shape, dtype=xp.float32)
        self._light = xp.empty(shape, dtype=xp.float32)
        if self._fused_display is not None:
            # The shading kernel wraps its neighbour indices: no padding, no per-pixel scratch.
            self._display = xp.zeros(shape, dtype=xp.float32)
        else:
            self._padded = xp.zeros((height + 2, width + 2), dtype=xp.float32)
            self._display = self._padded[1:-1, 1:-1]
            # Per-pixel scratch lives in row bands that stay in cache on the CPU.
            band_rows = max(1, min(height, CPU_BAND_PIXELS // width))
            self._bands = [
                (top, min(top + band_rows, height)) for top in range(0, height, band_rows)
            ]
            band_shape = (band_rows, width)
            self._slope = xp.empty(band_shape, dtype=xp.float32)
            self._cross = xp.empty(band_shape, dtype=xp.float32)
            self._edge = xp.empty(band_shape, dtype=xp.float32)
            self._lut_index = xp.empty(band_shape, dtype=xp.int64)
        self._ema: Any = None
        self._ema_primed = False
        self._thickener: StrandThickener | None = None
        self._bloom = Bloom(backend, height, width)
        self._film_smoother = FilmSmoother(backend, height, width)
        self._slope_scale = min(height, width) / REFERENCE_SIZE_PX
        rng = np.random.default_rng([seed, 0xD17])
        # Offset in LUT bins, with a uniform [0, 1) dither folded in so the float->int cast rounds
        # stochastically instead of banding.
        coord_offset = (film_offset_field(height, width, seed) - COORD_MIN) * COORD_BINS_PER_UNIT
        coord_offset += rng.random(shape)
        self._coord_offset = xp.asarray(coord_offset.astype(np.float32))
        self._light_dither = xp.asarray(rng.random(shape, dtype=np.float32))
        self._lut: Any = None
        self._lut_key: tuple[str, float, float] | None = None
        # Palette name -> palette_colours() on the device, for the fused table build.
        self._palette_colours: dict[str, Any] = {}

    # -- live settings ---------------------------------------------------------------------------
    @property
    def settings(self) -> RenderSettings:
        return self._settings

    def update(self, settings: Mapping[str, Any]) -> None:
        """Apply some render settings (same keys and checks as the constructor) from next frame."""
        self._settings = RenderSettings.from_mapping(settings, self._settings)

    @property
    def hue_shift(self) -> float:
        return self._settings.hue

    @hue_shift.setter
    def hue_shift(self, value: float) -> None:
        self.update({"hue": value})

    @property
    def brightness(self) -> float:
        return self._settings.brightness

    @brightness.setter
    def brightness(self, value: float) -> None:
        self.update({"brightness": value})

    @property
    def thickness(self) -> float:
        return self._settings.thickness

    @thickness.setter
    def thickness(self, value: float) -> None:
        self.update({"thickness": value})

    def set_palette(self, name: str) -> None:
        self._settings = replace(self._settings, palette=validate_setting("palette", name))

    def reset(self) -> None:
        """Forget temporal state (the smoothing EMA); the next frame starts from its own input."""
        self._ema_primed = False

    # -- the frame ------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Build now what the first `render` would: the colour table for the current settings."""
        self._color_lut(self._settings)

    def render(self, world: Any, out: Any = None) -> Any:
        """Colour one frame.

        `world`: (H, W) float32 density in [0, 1] on the backend's device; values outside are
        clipped. NaN never crashes or hangs the renderer, but NaN pixels and their neighbourhood
        get undefined colours (black on numpy; the fused kernels render NaN as empty space).
        Returns (H, W, 3) uint8 RGB on the same device, written into `out` when given
        (C-contiguous, that shape and dtype), else a new array.
        """
        xp = self._xp
        if tuple(world.shape) != (self.height, self.width):
            raise ValueError(
                f"world has shape {tuple(world.shape)}; this renderer was built for "
                f"({self.height}, {self.width})"
            )
        if out is None:
            out = xp.empty((self.height, self.width, 3), dtype=xp.uint8)
        elif (
            tuple(out.shape) != (self.height, self.width, 3)
            or out.dtype != xp.uint8
            or not out.flags.c_contiguous
        ):
            raise ValueError(
                f"out must be a C-contiguous ({self.height}, {self.width}, 3) uint8 array, got "
                f"{tuple(out.shape)} {out.dtype}"
            )
        settings = self._settings
        if self._fused_display is not None:
            return self._render_fused(world, settings, out)
        self._load_display(world, settings)
        if settings.thickness >= 0.5:
            self._thicken(settings.thickness)
        self._wrap_padding()
        for top, bottom in self._bands:
            self._shade(settings, top, bottom)
        self._film_smoother.apply(self._coord)
        self._bloom.apply(
            self._light,
            settings.bloom,
            BLOOM_THRESHOLD * LIGHT_UNIT,
            self._display,
            FULL_GLOW_DENSITY,
        )
        lut, out_pixels = self._color_lut(settings), out.reshape(-1, 3)
        for top, bottom in self._bands:
            index = self._quantise(top, bottom)
            pixels = out_pixels[top * self.width : bottom * self.width]
            gather(self._backend, lut, index.reshape(-1), out=pixels, axis=0)
        return out

    def _render_fused(self, world: Any, settings: RenderSettings, out: Any) -> Any:
        """`render` as three launches plus bloom's (and the thickener's, when on)."""
        xp, pixels, display = self._xp, self.height * self.width, self._display
        if world.dtype != xp.float32 or not world.flags.c_contiguous:
            world = xp.ascontiguousarray(world, dtype=xp.float32)
        smoothing = settings.smoothing
        ema_mode = 0 if smoothing <= 0.0 else 2 if self._ema_primed else 1
        if ema_mode and self._ema is None:
            self._ema = xp.empty((self.height, self.width), dtype=xp.float32)
        self._ema_primed = ema_mode != 0
        ema = display if self._ema is None else self._ema  # mode 0 never touches it
        density_map = (settings.floor, settings.gain, ema_mode, 1.0 - smoothing)
        self._fused_display(pixels, display, ema, world, *density_map)
        if settings.thickness >= 0.5:
            self._thicken(settings.thickness)
        scale = self._slope_scale
        gains = (
            settings.film * COORD_BINS_PER_UNIT,
            settings.iridescence * IRIDESCENCE_GAIN * scale * COORD_BINS_PER_UNIT,
            settings.relief * RELIEF_GAIN * scale * LIGHT_UNIT,
            AMBIENT_LIGHT * LIGHT_UNIT,
            RIM_GAIN * scale * LIGHT_UNIT,
        )
        fields = (self._coord, self._light, display, self._coord_offset)
        self._fused_shade(pixels, *fields, self.height, self.width, *gains)
        self._film_smoother.apply(self._coord)
        self._bloom.apply(
            self._light,
            settings.bloom,
            BLOOM_THRESHOLD * LIGHT_UNIT,
            self._display,
            FULL_GLOW_DENSITY,
        )
        lut = self._color_lut(settings)
        limits = (COORD_BINS - 1.0, (VALUE_BINS - 2.0) ** 2, float(COORD_BINS), lut.shape[0] - 1.0)
        self._fused_colour(pixels, out, self._coord, self._light, self._light_dither, lut, *limits)
        return out

    def _load_display(self, world: Any, settings: RenderSettings) -> None:
        xp = self._xp
        smoothing = settings.smoothing
        target = self._display if smoothing <= 0.0 else self._light
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
            self._ema_primed = False
            return
        if self._ema is None:
            self._ema = xp.empty((self.height, self.width), dtype=xp.float32)
        if not self._ema_primed:
            xp.copyto(self._ema, target)
            self._ema_primed = True
        else:
            target -= self._ema
            target *= 1.0 - smoothing
            self._ema += target
        xp.copyto(self._display, self._ema)

    def _thicken(self, thickness_px: float) -> None:
        if self._thickener is None:
            self._thickener = StrandThickener(self._backend, self.height, self.width)
        self._thickener.apply(self._display, thickness_px, scratch=self._light)

    def _wrap_padding(self) -> None:
        padded = self._padded
        padded[0, 1:-1] = padded[-2, 1:-1]
        padded[-1, 1:-1] = padded[1, 1:-1]
        padded[:, 0] = padded[:, -2]
        padded[:, -1] = padded[:, 1]

    def _shade(self, settings: RenderSettings, top: int, bottom: int) -> None:
        """Film coordinate and light (before bloom) for rows [top, bottom)."""
        xp, rows = self._xp, bottom - top
        padded, display = self._padded[top : bottom + 2], self._display[top:bottom]
        slope, cross, edge = self._slope[:rows], self._cross[:rows], self._edge[:rows]
        coord, light = self._coord[top:bottom], self._light[top:bottom]
        # Diagonal differences: `slope` is the derivative towards the bottom right, i.e. how much
        # a surface faces a light at the top left; |slope| + |cross| measures edges.
        xp.subtract(padded[2:, 2:], padded[:-2, :-2], out=slope)
        xp.subtract(padded[2:, :-2], padded[:-2, 2:], out=cross)
        xp.abs(slope, out=edge)
        xp.abs(cross, out=cross)
        edge += cross
        scale = self._slope_scale
        xp.multiply(display, settings.film * COORD_BINS_PER_UNIT, out=coord)
        coord += self._coord_offset[top:bottom]
        xp.multiply(
            edge, settings.iridescence * IRIDESCENCE_GAIN * scale * COORD_BINS_PER_UNIT, out=cross
        )
        coord -= cross
        slope *= settings.relief * RELIEF_GAIN * scale * LIGHT_UNIT
        slope += AMBIENT_LIGHT * LIGHT_UNIT
        xp.multiply(slope, display, out=light)
        xp.multiply(edge, RIM_GAIN * scale * LIGHT_UNIT, out=cross)
        light += cross

    def _quantise(self, top: int, bottom: int) -> Any:
        """Flat colour-table indices for rows [top, bottom): a (rows, W) int64 band buffer."""
        xp, rows = self._xp, bottom - top
        coord, light = self._coord[top:bottom], self._light[top:bottom]
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

    def _color_lut(self, settings: RenderSettings) -> Any:
        """The colour table for `settings`: (VALUE_BINS · COORD_BINS, 3) uint8 on the device."""
        # Quantised key: a drifting hue rebuilds the table every 1/2048 turn, not every frame.
        key = (settings.palette, round(settings.hue * 2048) / 2048, round(settings.brightness, 3))
        if key == self._lut_key:
            return self._lut
        name, hue, brightness = key
        xp, build = self._xp, self._fused_colour_table
        if build is None:
            self._lut = xp.asarray(build_color_lut(palette_by_name(name), hue, brightness))
        else:
            if self._lut is None:
                self._lut = xp.empty((VALUE_BINS * COORD_BINS, 3), dtype=xp.uint8)
            colours = self._palette_colours.get(name)
            if colours is None:
                colours = xp.asarray(palette_colours(palette_by_name(name)).astype(np.float32))
                self._palette_colours[name] = colours
            rotation = hue_rotation_matrix(hue).ravel().tolist()
            cells = VALUE_BINS * COORD_BINS
            build(
                cells,
                self._lut,
                colours,
                *rotation,
                EXPOSURE * brightness,
                VALUE_SQRT_SCALE,
                COORD_BINS,
            )
        self._lut_key = key
        return self._lut
