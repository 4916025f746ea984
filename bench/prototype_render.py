"""The prototype plug-in's colour pipeline, re-implemented from its description as a reference.

The prototype (diegochavez-io/cellular-automata_plug-in) is not part of this repository; this is
our own code following docs/prototype.md ("Colour pipeline") step by step: engine shaping, the
optional thickness pass, edge/velocity/density signals over anti-strobe smoothed maxima, the
palette coordinate with a static offset field, the cosine-palette × alpha table with the hue-slider
tint and brightness, and the blocky 8× bloom. Two documented quirks are pinned so that runs
compare: the offset field is seeded (the prototype's is not) and the LFO hue drift is held at 0
(it moves about one turn in 5–28 minutes). Used by bench/bench_sparkle.py and the sparkle test
to measure our renderer against the picture the prototype makes from the same world.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

# a, b, c, d per palette (docs/prototype.md, "Colour pipeline" step 5).
PROTOTYPE_PALETTES: dict[str, tuple[tuple[float, ...], ...]] = {
    "oil_slick": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (2, 2, 2), (0, 0.33, 0.67)),
    "cuttlefish": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (2.5, 1.8, 2.2), (0, 0.25, 0.55)),
    "bioluminescent": ((0.45, 0.52, 0.55), (0.50, 0.45, 0.42), (2.2, 1.6, 2.0), (0.08, 0.30, 0.55)),
    "deep_coral": ((0.52, 0.45, 0.48), (0.48, 0.42, 0.45), (2.0, 2.5, 1.8), (0, 0.28, 0.55)),
}
# (density, velocity, edges) weights of the palette coordinate, and bloom intensity (0: none).
SIGNAL_WEIGHTS = {"gray_scott": (0.40, 0.30, 0.30)}
DEFAULT_SIGNAL_WEIGHTS = (0.30, 0.25, 0.45)
BLOOM_INTENSITY = {"lenia": 0.20, "mnca": 0.20, "smoothlife": 0.25}
SCOPE_DEFAULT_HUE = 0.25  # the Scope slider's default, which presets without a hue keep
MAX_DECAY = 0.995
LUT_SIDE = 256


def _palette_table(palette: str, tint: np.ndarray, brightness: float) -> np.ndarray:
    """(256 t, 256 alpha, 3) uint8: palette(t) × alpha^0.85 × tint × brightness × 255."""
    a, b, c, d = (np.asarray(v, dtype=np.float64) for v in PROTOTYPE_PALETTES[palette])
    t = (np.arange(LUT_SIDE) / LUT_SIDE)[:, None]
    two_pi = 2 * math.pi
    colour = a + b * np.cos(two_pi * (c * t + d))
    colour += 0.06 * np.cos(two_pi * (2.5 * c * t + d + 0.3))
    colour += 0.03 * np.cos(two_pi * (4 * c * t + d + 0.7))
    colour = np.clip(colour, 0.0, 1.0) * tint * brightness
    alpha = (np.arange(LUT_SIDE) / (LUT_SIDE - 1)) ** 0.85
    table = colour[:, None, :] * alpha[None, :, None] * 255.0
    return np.clip(table, 0, 255).astype(np.uint8)


def _offset_field(size: int, seed: int) -> np.ndarray:
    """Radial 0.6·clip(dist) plus two blurred, bilinearly upsampled noise octaves: (size, size)."""
    rng = np.random.default_rng([seed, 0x9E7])
    coords = (np.arange(size) + 0.5) / size * 2 - 1
    dist = np.sqrt(coords[:, None] ** 2 + coords[None, :] ** 2)
    offset = 0.6 * np.clip(dist, 0, 1)
    for cells, amplitude in ((max(2, size // 64), 0.5), (max(2, size // 32), 0.3)):
        grid = ndimage.gaussian_filter(rng.uniform(-amplitude, amplitude, (cells, cells)), 1.0)
        offset += ndimage.zoom(grid, size / cells, order=1, mode="grid-wrap", grid_mode=True)
    return offset


class PrototypeRenderer:
    """The prototype's renderer for one engine and palette: (N, N) float32 world -> (N, N, 3) uint8.

    Stateful like the prototype's (previous frame for velocity, the smoothed maxima), so feed it
    every frame in order.
    """

    def __init__(self, size: int, engine: str, render: dict, seed: int = 0) -> None:
        self.engine, self.size = engine, size
        palette = render.get("palette", "oil_slick")
        palette = palette if palette in PROTOTYPE_PALETTES else "oil_slick"
        hue = render.get("hue", SCOPE_DEFAULT_HUE)
        tint = 1 + 0.5 * np.cos(2 * math.pi * (hue - np.array([0.0, 1 / 3, 2 / 3])))
        self.table = _palette_table(palette, tint, render.get("brightness", 1.0)).reshape(-1, 3)
        self.thickness = float(render.get("thickness", 0.0))
        self.weights = SIGNAL_WEIGHTS.get(engine, DEFAULT_SIGNAL_WEIGHTS)
        self.offset = _offset_field(size, seed)
        self.maxima = [0.01, 0.01, 0.01]  # density, velocity, edges
        self.previous: np.ndarray | None = None

    def _shape(self, world: np.ndarray) -> np.ndarray:
        if self.engine == "gray_scott":
            return np.clip((world - 0.015) * 3.5, 0, 1)
        if self.engine == "smoothlife":
            return ndimage.gaussian_filter(world.astype(np.float64) ** 1.4, 2.0, mode="wrap")
        return world.astype(np.float64)

    def _thicken(self, field: np.ndarray) -> np.ndarray:
        small = field[::4, ::4]
        if self.thickness >= 4:
            small = ndimage.maximum_filter(small, size=round(self.thickness / 4), mode="wrap")
        small = ndimage.gaussian_filter(small, max(0.5, self.thickness / 4), mode="wrap")
        return ndimage.zoom(small, 4, order=1, mode="grid-wrap", grid_mode=True)[: self.size]

    def _normalised(self, index: int, signal: np.ndarray) -> np.ndarray:
        self.maxima[index] = max(float(signal.max()), MAX_DECAY * self.maxima[index])
        return np.clip(signal / self.maxima[index], 0, 1)

    def render(self, world: np.ndarray) -> np.ndarray:
        field = self._shape(world)
        if self.thickness > 0.5:
            field = self._thicken(field)
        previous = field if self.previous is None else self.previous
        self.previous = field
        dx = np.roll(field, -1, 1) - np.roll(field, 1, 1)
        dy = np.roll(field, -1, 0) - np.roll(field, 1, 0)
        density = self._normalised(0, field)
        velocity = self._normalised(1, np.abs(field - previous))
        edges = self._normalised(2, np.sqrt(dx * dx + dy * dy))
        w_density, w_velocity, w_edges = self.weights
        t = (w_density * density + w_velocity * velocity + w_edges * edges) % 1.0
        t = (t + self.offset) % 1.0
        t_index = np.minimum((t * LUT_SIDE).astype(np.int64), LUT_SIDE - 1)
        a_index = np.minimum((density * (LUT_SIDE - 1)).astype(np.int64), LUT_SIDE - 1)
        rgb = self.table[t_index * LUT_SIDE + a_index]
        intensity = BLOOM_INTENSITY.get(self.engine, 0.0)
        if intensity:
            small = rgb[::8, ::8].astype(np.float64)
            glow = ndimage.gaussian_filter(small, (25 / 8, 25 / 8, 0), mode="wrap") * intensity
            glow = np.repeat(np.repeat(glow.astype(np.uint8), 8, 0), 8, 1)[: self.size, : self.size]
            rgb = np.minimum(rgb.astype(np.uint16) + glow, 255).astype(np.uint8)
        return rgb
