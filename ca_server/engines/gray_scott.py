"""Gray-Scott reaction-diffusion with the prototype's stencil, substeps and radial feed mask (§2.1).

Each step runs `substeps` (default 2) explicit-Euler substeps with dt = 1:
U += Du lap(U) - U V^2 + F_mask (1 - U);  V += Dv lap(V) + U V^2 - (F_mask + k) V; both clipped.
lap is the 9-point stencil (0.2 edges, 0.05 corners, -1 centre), periodic, taken from a padded
buffer so it costs slices rather than rolls. F_mask = F (1 + 4 clip((r - 0.4)/0.3, 0, 1)) raises
the feed fivefold beyond r = 0.7 (r normalised to the half-sides), which keeps patterns inside the
frame. Diffusion is not rescaled with resolution (as in the prototype): patterns keep their size
in pixels. `world` is V.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ca_server.engines.base import (
    Breathing,
    Engine,
    centred_radius,
    cluster_centres,
    stamp_max,
)
from ca_server.xp import Backend


class GrayScottEngine(Engine):
    """Gray-Scott; `world` is V and `fields` is (U, V), each (H, W) float32 in [0, 1] on device."""

    name = "gray_scott"

    def __init__(self, backend: Backend, height: int, width: int, params: Mapping[str, Any]):
        super().__init__(backend, height, width, params)
        xp = backend.xp
        shape = (height, width)
        self._u = xp.ones(shape, xp.float32)
        self._v = xp.zeros(shape, xp.float32)
        self._padded = xp.empty((height + 2, width + 2), xp.float32)
        self._lap_u = xp.empty(shape, xp.float32)
        self._lap_v = xp.empty(shape, xp.float32)
        self._uvv = xp.empty(shape, xp.float32)
        self._scratch = xp.empty(shape, xp.float32)
        _, _, radius = centred_radius(height, width)
        profile = 1.0 + 4.0 * np.clip((radius - 0.40) / 0.30, 0.0, 1.0)
        self._feed_profile = xp.asarray(profile.astype(np.float32))
        self._feed = xp.empty(shape, xp.float32)
        self._feed_kill = xp.empty(shape, xp.float32)
        self.substeps = int(self.params.get("substeps", 2))
        self.set_live({"F": self.params["F"]})

    @property
    def world(self) -> Any:
        return self._v

    @property
    def fields(self) -> tuple[Any, ...]:
        return (self._u, self._v)

    def _laplacian(self, field: Any, diffusion: float, out: Any) -> None:
        """out = diffusion * lap(field), periodic 9-point stencil."""
        padded = self._padded
        padded[1:-1, 1:-1] = field
        padded[0, 1:-1] = field[-1]
        padded[-1, 1:-1] = field[0]
        padded[:, 0] = padded[:, -2]
        padded[:, -1] = padded[:, 1]
        xp, scratch = self.backend.xp, self._scratch
        xp.add(padded[:-2, 1:-1], padded[2:, 1:-1], out=out)
        out += padded[1:-1, :-2]
        out += padded[1:-1, 2:]
        out *= 0.2 * diffusion
        xp.add(padded[:-2, :-2], padded[:-2, 2:], out=scratch)
        scratch += padded[2:, :-2]
        scratch += padded[2:, 2:]
        scratch *= 0.05 * diffusion
        out += scratch
        xp.multiply(field, diffusion, out=scratch)
        out -= scratch

    def step(self) -> None:
        xp = self.backend.xp
        u, v, uvv, scratch = self._u, self._v, self._uvv, self._scratch
        for _ in range(self.substeps):
            self._laplacian(u, self.params["Du"], self._lap_u)
            self._laplacian(v, self.params["Dv"], self._lap_v)
            xp.multiply(v, v, out=uvv)
            uvv *= u
            lap_u, lap_v = self._lap_u, self._lap_v
            lap_u -= uvv
            xp.multiply(self._feed, u, out=scratch)
            lap_u -= scratch
            lap_u += self._feed
            u += lap_u
            xp.clip(u, 0.0, 1.0, out=u)
            lap_v += uvv
            xp.multiply(self._feed_kill, v, out=scratch)
            lap_v -= scratch
            v += lap_v
            xp.clip(v, 0.0, 1.0, out=v)

    def seed(self, rng: np.random.Generator, kind: str, density: float) -> None:
        h, w = self.height, self.width
        _, _, radius = centred_radius(h, w)
        if kind == "dense":
            v = 0.25 * rng.uniform(0, 1, (h, w)) * np.exp(-0.5 * (radius / 0.30) ** 4)
        elif kind == "center":
            v = np.where(radius < 0.1, 0.25 + rng.uniform(-0.01, 0.01, (h, w)), 0.0)
        elif kind == "random":
            v = np.zeros((h, w))
            half = max(2, round(5 * self.res_scale))
            for _ in range(20):
                cy, cx = int(rng.uniform(0.2, 0.8) * h), int(rng.uniform(0.2, 0.8) * w)
                v[cy - half : cy + half, cx - half : cx + half] = 0.25
        else:
            raise ValueError(f"unknown Gray-Scott seed {kind!r}; use dense, center or random")
        u = 1.0 - 2.0 * v + rng.normal(0.0, 0.01, (h, w))
        self._upload(u, self._u)
        self._upload(v + rng.normal(0.0, 0.005, (h, w)) * (v > 0), self._v)

    def drop_cluster(self, rng: np.random.Generator) -> None:
        half = max(3, round(6 * self.res_scale))
        for cy, cx in cluster_centres(rng, self.height, self.width):
            patch = rng.uniform(0.25, 0.5, (2 * half + 1, 2 * half + 1)).astype(np.float32)
            stamp_max(self.backend, self._v, cy, cx, patch)

    def breathing(self) -> tuple[Breathing, ...]:
        return (Breathing("F", 0.006, 0.033, 0.001),)

    def set_live(self, values: Mapping[str, float]) -> None:
        if "F" in values:
            xp = self.backend.xp
            xp.multiply(self._feed_profile, float(values["F"]), out=self._feed)
            xp.add(self._feed, float(self.params["k"]), out=self._feed_kill)
