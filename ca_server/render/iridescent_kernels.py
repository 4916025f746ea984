"""The iridescent renderer's fused kernels: a frame in three launches on the GPU (plus bloom).

Each is the CUDA C twin of a stage of `IridescentRenderer` (ca_server/render/iridescent.py), whose
numpy sequence stays the reference and the CPU path: RENDER_DISPLAY (density to display field,
with the smoothing EMA), RENDER_SHADE (film coordinate and light) and RENDER_COLOUR (quantise and
colour-table gather into the (H, W, 3) uint8 frame). RENDER_COLOUR_TABLE is the twin of
`build_color_lut`: it rebuilds the colour table on the device when hue or brightness moves. Arrays
are (H, W) float32 on the device unless a kernel says otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ca_server.fused import KernelSource
from ca_server.render.palettes import (
    COORD_BINS,
    EXPOSURE,
    VALUE_BINS,
    VALUE_SQRT_SCALE,
    hue_rotation_matrix,
    palette_by_name,
    palette_colours,
)
from ca_server.render.settings import RenderSettings
from ca_server.xp import Backend

# Step 1: display = clip((world − floor)·gain, 0, 1), then with `ema_mode` 1 (first smoothed
# frame) ema = display, with 2 ema += (display − ema)·keep and display = ema. fminf/fmaxf clip
# a NaN to 0 (ca_clip01 would keep it, as numpy does), so no NaN reaches the EMA, where it would
# stay, or bloom, which would spread it across the frame.
RENDER_DISPLAY = KernelSource(
    "render_display",
    r"""
extern "C" __global__ void render_display(
    float* __restrict__ display, float* ema, const float* __restrict__ world,
    const float density_floor, const float gain, const int ema_mode, const float keep,
    const long long n) {
    CA_FOR_EACH(i, n) {
        float value = fminf(fmaxf((world[i] - density_floor) * gain, 0.0f), 1.0f);
        if (ema_mode == 2) {
            const float previous = ema[i];
            value = previous + (value - previous) * keep;
        }
        if (ema_mode != 0) ema[i] = value;
        display[i] = value;
    }
}
""",
)

# Steps 2-4 before bloom: diagonal differences with wrapped neighbours (no padded copy), then the
# film coordinate in LUT bins and the light in LIGHT_UNITs, in the numpy sequence's order.
RENDER_SHADE = KernelSource(
    "render_shade",
    r"""
extern "C" __global__ void render_shade(
    float* __restrict__ coord, float* __restrict__ light, const float* __restrict__ display,
    const float* __restrict__ coord_offset, const int height, const int width,
    const float film_gain, const float iridescence_gain, const float relief_gain,
    const float ambient, const float rim_gain, const long long n) {
    CA_FOR_EACH(i, n) {
        const int y = (int)(i / width), x = (int)(i % width);
        const long long above = (long long)ca_wrap(y - 1, height) * width;
        const long long below = (long long)ca_wrap(y + 1, height) * width;
        const int left = ca_wrap(x - 1, width), right = ca_wrap(x + 1, width);
        const float slope = display[below + right] - display[above + left];
        const float cross = display[below + left] - display[above + right];
        const float edge = fabsf(slope) + fabsf(cross);
        const float density = display[i];
        coord[i] = (density * film_gain + coord_offset[i]) - edge * iridescence_gain;
        light[i] = (slope * relief_gain + ambient) * density + edge * rim_gain;
    }
}
""",
)

# Step 5: quantise to a flat table index and gather its RGB. The index is clamped to the table
# (a NaN fails fmaxf and lands on 0) before the cast, so no input can read outside it.
RENDER_COLOUR = KernelSource(
    "render_colour",
    r"""
extern "C" __global__ void render_colour(
    unsigned char* __restrict__ rgb, const float* __restrict__ coord,
    const float* __restrict__ light, const float* __restrict__ light_dither,
    const unsigned char* __restrict__ lut, const float coord_max, const float light_max,
    const float coord_bins, const float last_row, const long long n) {
    CA_FOR_EACH(i, n) {
        const float column = fminf(fmaxf(coord[i], 0.0f), coord_max);
        const float value = sqrtf(fminf(fmaxf(light[i], 0.0f), light_max));
        const float flat = floorf(value + light_dither[i]) * coord_bins + column;
        const long long row = (long long)fminf(fmaxf(flat, 0.0f), last_row);
        rgb[3 * i] = lut[3 * row];
        rgb[3 * i + 1] = lut[3 * row + 1];
        rgb[3 * i + 2] = lut[3 * row + 2];
    }
}
""",
)

# The colour table RENDER_COLOUR reads, rebuilt when hue or brightness moves: one thread per
# (value bin, coord bin) cell writes its three bytes, following build_color_lut (palettes.py)
# step by step in float32 (the host rotates in float64). `colours` is palette_colours() as
# (coord_bins, 3) float32, uploaded once per palette; the hue rotation's rows and the exposure
# arrive as scalars, so the rebuild moves no data. A byte sitting on a rounding edge can come out
# one level off the host's.
RENDER_COLOUR_TABLE = KernelSource(
    "render_colour_table",
    r"""
extern "C" __global__ void render_colour_table(
    unsigned char* __restrict__ table, const float* __restrict__ colours,
    const float r00, const float r01, const float r02, const float r10, const float r11,
    const float r12, const float r20, const float r21, const float r22, const float exposure,
    const float value_sqrt_scale, const int coord_bins, const long long n) {
    CA_FOR_EACH(i, n) {
        const float* colour = colours + 3 * (i % coord_bins);
        const float value = (float)(i / coord_bins) / value_sqrt_scale;
        const float light = value * value * exposure;
        const float rotated[3] = {
            colour[0] * r00 + colour[1] * r01 + colour[2] * r02,
            colour[0] * r10 + colour[1] * r11 + colour[2] * r12,
            colour[0] * r20 + colour[1] * r21 + colour[2] * r22,
        };
        for (int channel = 0; channel < 3; ++channel) {
            const float lit = fminf(fmaxf(rotated[channel], 0.0f), 1.0f) * light;
            table[3 * i + channel] = (unsigned char)(tanhf(lit) * 255.0f + 0.5f);
        }
    }
}
""",
)


class IridescentKernels:
    """The display, shade and colour stages as one launch each, and the colour table built on
    the device (so a hue or brightness drag uploads nothing). The shading kernel wraps its
    neighbour indices: no padding, no per-pixel scratch."""

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
        self._xp, self._height, self._width = xp, height, width
        self._coord_offset, self._light_dither = coord_offset, light_dither
        self._display_launch = backend.fused_kernel(RENDER_DISPLAY)
        self._shade_launch = backend.fused_kernel(RENDER_SHADE)
        self._colour_launch = backend.fused_kernel(RENDER_COLOUR)
        self._table_launch = backend.fused_kernel(RENDER_COLOUR_TABLE)
        self.coord = xp.empty((height, width), dtype=xp.float32)
        self.light = xp.empty((height, width), dtype=xp.float32)
        self.display = xp.zeros((height, width), dtype=xp.float32)
        self._ema: Any = None
        self.ema_primed = False
        self._lut: Any = None
        # Palette name -> palette_colours() on the device, for the table build.
        self._palette_colours: dict[str, Any] = {}

    def load_display(self, world: Any, settings: RenderSettings) -> None:
        """RENDER_DISPLAY: display = clip((world − floor)·gain, 0, 1), through the EMA."""
        xp = self._xp
        if world.dtype != xp.float32 or not world.flags.c_contiguous:
            world = xp.ascontiguousarray(world, dtype=xp.float32)
        smoothing = settings.smoothing
        ema_mode = 0 if smoothing <= 0.0 else 2 if self.ema_primed else 1
        if ema_mode and self._ema is None:
            self._ema = xp.empty((self._height, self._width), dtype=xp.float32)
        self.ema_primed = ema_mode != 0
        ema = self.display if self._ema is None else self._ema  # mode 0 never touches it
        density_map = (settings.floor, settings.gain, ema_mode, 1.0 - smoothing)
        self._display_launch(world.size, self.display, ema, world, *density_map)

    def shade(self, film: float, iridescence: float, relief: float, ambient: float, rim: float):
        """RENDER_SHADE: film coordinate and light (before bloom); gains as IridescentPasses'."""
        fields = (self.coord, self.light, self.display, self._coord_offset)
        gains = (film, iridescence, relief, ambient, rim)
        self._shade_launch(self.display.size, *fields, self._height, self._width, *gains)

    def colour(self, lut: Any, out: Any) -> None:
        """RENDER_COLOUR: quantise and gather from `lut` into `out`, (H, W, 3) uint8."""
        limits = (COORD_BINS - 1.0, (VALUE_BINS - 2.0) ** 2, float(COORD_BINS), lut.shape[0] - 1.0)
        fields = (self.coord, self.light, self._light_dither, lut)
        self._colour_launch(self.display.size, out, *fields, *limits)

    def colour_table(self, palette: str, hue: float, brightness: float) -> Any:
        """RENDER_COLOUR_TABLE into the one table buffer: (VALUE_BINS · COORD_BINS, 3) uint8."""
        xp = self._xp
        if self._lut is None:
            self._lut = xp.empty((VALUE_BINS * COORD_BINS, 3), dtype=xp.uint8)
        colours = self._palette_colours.get(palette)
        if colours is None:
            colours = xp.asarray(palette_colours(palette_by_name(palette)).astype(np.float32))
            self._palette_colours[palette] = colours
        rotation = hue_rotation_matrix(hue).ravel().tolist()
        cells = VALUE_BINS * COORD_BINS
        scales = (EXPOSURE * brightness, VALUE_SQRT_SCALE, COORD_BINS)
        self._table_launch(cells, self._lut, colours, *rotation, *scales)
        return self._lut
