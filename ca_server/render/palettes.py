"""Named cosine palettes and the colour lookup table that bakes palette, hue and exposure together.

A palette maps a film coordinate `t` (roughly "optical thickness": density plus slope plus a static
spatial offset) to RGB with Inigo Quilez's cosine form `a + b·cos(2π(c·t + d))` plus two faint
harmonics that break the pure-sine look. Different per-channel frequencies `c` make the colours
cycle like thin-film interference fringes. `build_color_lut` turns a palette, a hue rotation and a
brightness into a flat `(value_bins · coord_bins, 3)` uint8 table that the renderer indexes with
one gather per pixel. It is numpy's table and the reference for the GPU's: there the renderer
builds the same table on the device (`RENDER_COLOUR_TABLE`) from `palette_colours` (as float32,
uploaded once per palette), so dragging hue or brightness moves no data between host and device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The film coordinate axis of the LUT: t from COORD_MIN, COORD_BINS_PER_UNIT bins per unit.
COORD_MIN = -1.0
COORD_BINS_PER_UNIT = 512
COORD_BINS = 1536
# The value (light) axis is spaced in sqrt(value) so dark glows get fine steps: bin j holds
# value = (j / VALUE_SQRT_SCALE)², up to VALUE_MAX (pre-tonemap, so > 1 means "overexposed").
VALUE_MAX = 4.0
VALUE_BINS = 256
VALUE_SQRT_SCALE = (VALUE_BINS - 1) / math.sqrt(VALUE_MAX)
# Light per unit of brightness: puts a fully lit, unit-density body near the palette's own colour.
EXPOSURE = 1.3


@dataclass(frozen=True)
class CosinePalette:
    """`colour(t) = a + b·cos(2π(c·t + d))` per channel (RGB), plus faint harmonics."""

    a: tuple[float, float, float]
    b: tuple[float, float, float]
    c: tuple[float, float, float]
    d: tuple[float, float, float]

    def evaluate(self, coords: np.ndarray) -> np.ndarray:
        """Colours for film coordinates `coords` ((N,) float64, host) -> (N, 3) float64, ~[0, 1]."""
        a, b, c, d = (np.asarray(v, dtype=np.float64) for v in (self.a, self.b, self.c, self.d))
        t = coords[:, None]
        two_pi = 2.0 * math.pi
        colour = a + b * np.cos(two_pi * (c * t + d))
        # Higher "interference orders": small, detuned, so bands shimmer instead of repeating.
        colour += 0.06 * np.cos(two_pi * (2.5 * c * t + d + 0.3))
        colour += 0.03 * np.cos(two_pi * (4.0 * c * t + d + 0.7))
        return np.clip(colour, 0.0, 1.0)


def _film_palette(offset_nm: float, span_nm: float) -> CosinePalette:
    """Two-beam thin-film reflectance at 650/532/450 nm: R = ½ − ½·cos(2π·OPD/λ).

    OPD (optical path difference) runs from `offset_nm` at t = 0 by `span_nm` per unit of t.
    """
    wavelengths_nm = (650.0, 532.0, 450.0)
    c = tuple(span_nm / lam for lam in wavelengths_nm)
    d = tuple((offset_nm / lam + 0.5) % 1.0 for lam in wavelengths_nm)
    return CosinePalette((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), c, d)  # type: ignore[arg-type]


PALETTES: dict[str, CosinePalette] = {
    # The prototype's four, by name and coefficients.
    "oil_slick": CosinePalette(
        (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (2.0, 2.0, 2.0), (0.0, 0.33, 0.67)
    ),
    "bioluminescent": CosinePalette(
        (0.45, 0.52, 0.55), (0.50, 0.45, 0.42), (2.2, 1.6, 2.0), (0.08, 0.30, 0.55)
    ),
    "deep_coral": CosinePalette(
        (0.52, 0.45, 0.48), (0.48, 0.42, 0.45), (2.0, 2.5, 1.8), (0.0, 0.28, 0.55)
    ),
    "cuttlefish": CosinePalette(
        (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (2.5, 1.8, 2.2), (0.0, 0.25, 0.55)
    ),
    # Ours: a physically motivated soap film, mother-of-pearl pastels, a jewel-beetle shell.
    "soap_film": _film_palette(offset_nm=250.0, span_nm=1100.0),
    "nacre": CosinePalette(
        (0.62, 0.60, 0.66), (0.32, 0.30, 0.30), (1.3, 1.5, 1.7), (0.05, 0.15, 0.30)
    ),
    "scarab": CosinePalette(
        (0.40, 0.48, 0.38), (0.45, 0.45, 0.45), (1.6, 1.2, 2.1), (0.55, 0.05, 0.30)
    ),
}

PALETTE_NAMES: tuple[str, ...] = tuple(PALETTES)


def palette_by_name(name: str) -> CosinePalette:
    """The palette called `name`; an unknown name is a ValueError listing the valid ones."""
    try:
        return PALETTES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown palette {name!r}; choose one of {', '.join(PALETTE_NAMES)}"
        ) from None


def hue_rotation_matrix(hue_shift: float) -> np.ndarray:
    """3×3 rotation about the grey axis by `hue_shift` turns (host float64).

    It keeps R+G+B (and so the frame's brightness structure) while turning every hue by the same
    angle, which is what a hue slider should do.
    """
    theta = 2.0 * math.pi * (hue_shift % 1.0)
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    cross = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
    return cos_t * np.eye(3) + (1.0 - cos_t) / 3.0 * np.ones((3, 3)) + sin_t / math.sqrt(3) * cross


def coord_axis() -> np.ndarray:
    """Film coordinate of each LUT column: (COORD_BINS,) float64 on the host."""
    return COORD_MIN + np.arange(COORD_BINS, dtype=np.float64) / COORD_BINS_PER_UNIT


def value_axis() -> np.ndarray:
    """Light value of each LUT row: (VALUE_BINS,) float64 in [0, VALUE_MAX] on the host."""
    return (np.arange(VALUE_BINS, dtype=np.float64) / VALUE_SQRT_SCALE) ** 2


def palette_colours(palette: CosinePalette) -> np.ndarray:
    """The palette at every LUT column: (COORD_BINS, 3) float64 on the host, in [0, 1]."""
    return palette.evaluate(coord_axis())


def build_color_lut(palette: CosinePalette, hue_shift: float, brightness: float) -> np.ndarray:
    """The renderer's colour table: (VALUE_BINS · COORD_BINS, 3) uint8 on the host.

    Row `value_bin · COORD_BINS + coord_bin` holds `tonemap(rotate_hue(palette(t)) · value ·
    EXPOSURE · brightness)`. The tonemap is a per-channel tanh shoulder, so overexposed light
    desaturates towards white the way a bright sheen on a film does, and brightness never clips
    harshly.
    """
    colours = palette_colours(palette) @ hue_rotation_matrix(hue_shift).T
    np.clip(colours, 0.0, 1.0, out=colours)
    light = (value_axis() * (EXPOSURE * brightness)).astype(np.float32)
    table = colours.astype(np.float32)[None, :, :] * light[:, None, None]
    np.tanh(table, out=table)
    table *= 255.0
    table += 0.5
    return table.astype(np.uint8).reshape(VALUE_BINS * COORD_BINS, 3)
