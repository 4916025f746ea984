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
`RENDER_COLOUR`: `IridescentKernels`; bloom and the thickener add two more each and their small
filters); the numpy passes (`IridescentPasses`) are the reference and the CPU path. Which of the
two runs is chosen once, when the renderer is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ca_server.render.bloom import Bloom
from ca_server.render.film_smoothing import FilmSmoother
from ca_server.render.iridescent_kernels import IridescentKernels
from ca_server.render.iridescent_passes import IridescentPasses
from ca_server.render.palettes import COORD_BINS_PER_UNIT, COORD_MIN, VALUE_SQRT_SCALE
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
        # Built now, whether or not the preset thickens, so that a thickness drag compiles
        # nothing in the stream (StrandThickener builds every filter variant it can need).
        self._thickener = StrandThickener(backend, height, width)
        self._bloom = Bloom(backend, height, width)
        self._film_smoother = FilmSmoother(backend, height, width)
        self._slope_scale = min(height, width) / REFERENCE_SIZE_PX
        rng = np.random.default_rng([seed, 0xD17])
        # Offset in LUT bins, with a uniform [0, 1) dither folded in so the float->int cast rounds
        # stochastically instead of banding.
        coord_offset = (film_offset_field(height, width, seed) - COORD_MIN) * COORD_BINS_PER_UNIT
        coord_offset += rng.random(shape)
        coord_offset = xp.asarray(coord_offset.astype(np.float32))
        light_dither = xp.asarray(rng.random(shape, dtype=np.float32))
        stages = backend.hot_pass(IridescentKernels, IridescentPasses)
        self._stages = stages(backend, height, width, coord_offset, light_dither, CPU_BAND_PIXELS)
        # The stages' fields: display (H, W) in [0, 1], film coordinate and light (in LUT bins).
        fields = self._stages
        self._display, self._coord, self._light = fields.display, fields.coord, fields.light
        self._lut: Any = None
        self._lut_key: tuple[str, float, float] | None = None

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

    def reset(self) -> None:
        """Forget temporal state (the smoothing EMA); the next frame starts from its own input."""
        self._stages.ema_primed = False

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
        self._stages.load_display(world, settings)
        if settings.thickness >= 0.5:
            self._thicken(settings.thickness)
        scale = self._slope_scale
        self._stages.shade(
            settings.film * COORD_BINS_PER_UNIT,
            settings.iridescence * IRIDESCENCE_GAIN * scale * COORD_BINS_PER_UNIT,
            settings.relief * RELIEF_GAIN * scale * LIGHT_UNIT,
            AMBIENT_LIGHT * LIGHT_UNIT,
            RIM_GAIN * scale * LIGHT_UNIT,
        )
        self._film_smoother.apply(self._coord)
        self._bloom.apply(
            self._light,
            settings.bloom,
            BLOOM_THRESHOLD * LIGHT_UNIT,
            self._display,
            FULL_GLOW_DENSITY,
        )
        self._stages.colour(self._color_lut(settings), out)
        return out

    def _thicken(self, thickness_px: float) -> None:
        self._thickener.apply(self._display, thickness_px, scratch=self._light)

    def _color_lut(self, settings: RenderSettings) -> Any:
        """The colour table for `settings`: (VALUE_BINS · COORD_BINS, 3) uint8 on the device."""
        # Quantised key: a drifting hue rebuilds the table every 1/2048 turn, not every frame.
        key = (settings.palette, round(settings.hue * 2048) / 2048, round(settings.brightness, 3))
        if key != self._lut_key:
            self._lut = self._stages.colour_table(*key)
            self._lut_key = key
        return self._lut
