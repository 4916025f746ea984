"""Multiple-neighbourhood CA in the prototype's continuous form (peer-plugin.md §2.1).

Each ring i (inner, outer radius, logistic edges) gives a neighbourhood average avg_i = K_i * A.
Ring i is active when any of its [low, high] intervals contains avg_i; every ring adds +delta
when active and -delta otherwise: A <- clip(A + delta (2 n_active - n_rings), 0, 1). One rfft2 plus
one irfft2 per ring; the interval tests write into preallocated boolean buffers. Ring radii scale
from the 512 px base (with a floor so the smallest ring still covers a few cells).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ca_server.engines.base import (
    Breathing,
    Engine,
    cluster_centres,
    gaussian_blobs,
    gaussian_patch,
    noisy_envelope,
    ring_seed,
    stamp_max,
)
from ca_server.engines.kernels import kernel_spectrum, logistic_ring, torus_distance
from ca_server.xp import Backend


class MNCAEngine(Engine):
    """Continuous MNCA; `world` is A, (H, W) float32 in [0, 1] on the device."""

    name = "mnca"

    def __init__(self, backend: Backend, height: int, width: int, params: Mapping[str, Any]):
        super().__init__(backend, height, width, params)
        xp = backend.xp
        distance = torus_distance(height, width)
        self.rings: list[tuple[float, float]] = []
        self._ring_hats = []
        for inner, outer in self.params["rings"]:
            inner_px = inner * self.res_scale
            outer_px = max(outer * self.res_scale, inner_px + 1.0, 1.5)
            self.rings.append((inner_px, outer_px))
            self._ring_hats.append(
                kernel_spectrum(backend, logistic_ring(distance, inner_px, outer_px))
            )
        self.rules = self.params["rules"]
        self._state = xp.zeros((height, width), xp.float32)
        self._spectrum = xp.empty(self._ring_hats[0].shape, xp.complex64)
        self._active_count = xp.empty((height, width), xp.float32)
        self._active = xp.empty((height, width), bool)
        self._in_interval = xp.empty((height, width), bool)
        self._below_high = xp.empty((height, width), bool)
        self.delta = float(self.params["delta"])

    @property
    def world(self) -> Any:
        return self._state

    def step(self) -> None:
        xp, fft, kwargs = self.backend.xp, self.backend.fft, self.backend.fft_kwargs()
        shape = self._state.shape
        spectrum = fft.rfft2(self._state, **kwargs)
        self._active_count.fill(0.0)
        last = len(self._ring_hats) - 1
        for index, (ring_hat, intervals) in enumerate(
            zip(self._ring_hats, self.rules, strict=True)
        ):
            product = spectrum if index == last else self._spectrum
            xp.multiply(spectrum, ring_hat, out=product)
            average = fft.irfft2(product, s=shape, overwrite_x=True, **kwargs)
            self._active.fill(False)
            for low, high in intervals:
                xp.greater_equal(average, low, out=self._in_interval)
                xp.less_equal(average, high, out=self._below_high)
                xp.logical_and(self._in_interval, self._below_high, out=self._in_interval)
                xp.logical_or(self._active, self._in_interval, out=self._active)
            xp.add(self._active_count, self._active, out=self._active_count)
        # +delta per active ring, -delta per inactive ring
        self._active_count *= 2.0 * self.delta
        self._active_count -= self.delta * len(self._ring_hats)
        self._state += self._active_count
        xp.clip(self._state, 0.0, 1.0, out=self._state)

    def seed(self, rng: np.random.Generator, kind: str, density: float) -> None:
        h, w = self.height, self.width
        side = min(h, w)
        if kind == "random":
            host = noisy_envelope(rng, h, w, side / 3, density)
        elif kind == "blobs":
            host = gaussian_blobs(rng, h, w, 12, side / 7, 0.28 * side, density)
        elif kind == "ring":
            host = ring_seed(rng, h, w, side / 5, max(10 * self.res_scale, side / 50))
        elif kind == "sparse":
            host = np.zeros((h, w), np.float32)
            radius = max(3.0, 8 * self.res_scale)
            for _ in range(12):
                cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
                patch = gaussian_patch(radius, 0.9)
                ph, pw = patch.shape
                rows = (np.arange(ph) + int(cy) - ph // 2) % h
                cols = (np.arange(pw) + int(cx) - pw // 2) % w
                region = np.ix_(rows, cols)
                host[region] = np.maximum(host[region], patch)
        else:
            raise ValueError(f"unknown MNCA seed {kind!r}; use blobs, random, ring or sparse")
        self._upload(host, self._state)

    def drop_cluster(self, rng: np.random.Generator) -> None:
        for cy, cx in cluster_centres(rng, self.height, self.width):
            radius = max(
                8.0 * min(1.0, 2 * self.res_scale), 12 * self.res_scale + rng.uniform(-2, 2)
            )
            stamp_max(self.backend, self._state, cy, cx, gaussian_patch(radius, 0.9))

    def breathing(self) -> tuple[Breathing, ...]:
        return (Breathing("delta", 0.3 * self.params["delta"], 1 / 60, 0.001),)

    def set_live(self, values: Mapping[str, float]) -> None:
        self.delta = values.get("delta", self.delta)
