"""Radial containment masks: a per-step multiplicative fade that keeps an organism near the centre.

Each step ends with the world multiplied by `radial_containment(...)` (docs/prototype.md):
inside `inner` nothing happens, between `inner` and `outer` the per-step loss ramps linearly up to
`rate`, and beyond `outer` (the corners included) it stays at `rate`. Radii are in units of half
the shorter side, so r = 1 touches the middle of the nearest edge. Built once per size on the host
and copied to the device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ca_server.xp import Backend

# The prototype's settings: Lenia and SmoothLife fade from 35 % to 65 % of the half-side, 5 % a
# step; MNCA is allowed wider ("so it fills 50 %+ of the frame").
LENIA_CONTAINMENT = {"inner": 0.35, "outer": 0.65, "rate": 0.05}
SMOOTHLIFE_CONTAINMENT = LENIA_CONTAINMENT
MNCA_CONTAINMENT = {"inner": 0.60, "outer": 0.85, "rate": 0.04}


def radial_distance(height: int, width: int) -> np.ndarray:
    """Distance of each pixel centre from the frame centre in half-shorter-sides: (H, W) float32,
    host, 0 at the centre, 1 at the middle of the nearer edges, about 1.41 in square corners.
    """
    half_side = min(height, width) / 2.0
    dy = (np.arange(height) + 0.5 - height / 2.0)[:, None] / half_side
    dx = (np.arange(width) + 0.5 - width / 2.0)[None, :] / half_side
    return np.sqrt(dy * dy + dx * dx).astype(np.float32)


def radial_containment(
    backend: Backend, height: int, width: int, *, inner: float, outer: float, rate: float
) -> Any:
    """Per-step survival factor 1 − rate·clip((r − inner)/(outer − inner), 0, 1).

    Returns (H, W) float32 in [1 − rate, 1] on the backend's device. Needs 0 ≤ inner < outer and
    0 ≤ rate ≤ 1; anything else is a ValueError.
    """
    if not 0.0 <= inner < outer:
        raise ValueError(f"containment radii need 0 ≤ inner < outer, got {inner}, {outer}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"containment rate must be in [0, 1], got {rate}")
    ramp = np.clip((radial_distance(height, width) - inner) / (outer - inner), 0.0, 1.0)
    factor = (1.0 - rate * ramp).astype(np.float32)
    return backend.xp.asarray(factor)
