"""Multiple-neighbourhood CA in the prototype's continuous form (docs/prototype.md), de-aliased.

Each ring i (inner, outer radius, logistic edges) gives a neighbourhood average avg_i = K_i * A.
Ring i's membership m_i is 1 inside any of its [low, high] intervals and 0 outside, with linear
edges WINDOW_EDGE_PER_DELTA x delta wide centred on the thresholds; every ring adds +delta when a
member and -delta otherwise: A <- clip(A + delta sum_i (2 m_i - 1), 0, 1). The prototype's hard
edges make this a bang-bang update: a region whose averages sit at a threshold overshoots by
n_rings x delta every step, so most cells flip with period 2 and the side each cell lands on is
decided by FFT round-off and seed noise, which locks in as a pixel checkerboard. Edges as wide as
two steps let such a region settle on the threshold instead. Ring radii scale from the 512 px base,
but all of a preset's rings together, and never so far that the smallest outer radius drops below
MIN_SMALLEST_RING_PX: the rule's pattern wavelength is ~1.3x its smallest disc's radius, and
below ~6 px it falls to 2-4 px and aliases. One rfft2 plus one irfft2 per ring (one batched
irfft2 over the ring stack with the kernel); on numpy the membership math runs in place on the
average buffers (`MNCAUpdatePasses`), on the GPU it and the update are one fused kernel
(`MNCA_UPDATE`, `MNCAUpdateKernel`) over all rings.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
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
)
from ca_server.engines.keep_moving import KeepMovingProfile
from ca_server.engines.kernels import (
    irfft2_each,
    irfft2_stacked,
    kernel_spectra,
    logistic_ring,
    torus_distance,
)
from ca_server.fused import KernelSource
from ca_server.presets.catalog import MNCA_TABLE
from ca_server.xp import Backend

MIN_SMALLEST_RING_PX = 6.0
WINDOW_EDGE_PER_DELTA = 2.0

# The numpy membership chain and update below, in the same order (so it rounds the same way).
# The rule is data, not code: interval j has centre centres[j] and window offset
# offsets[j] = half_width / edge + 1/2; ring r owns intervals first[r] .. first[r] + count[r] - 1.
MNCA_UPDATE = KernelSource(
    "mnca_update",
    r"""
extern "C" __global__ void mnca_update(
    float* __restrict__ state, const float* __restrict__ averages,
    const float* __restrict__ centres, const float* __restrict__ offsets,
    const int* __restrict__ first, const int* __restrict__ count, const int rings,
    const float negative_inverse_edge, const float two_delta, const float all_rings_delta,
    const long long n) {
    CA_FOR_EACH(i, n) {
        float membership = 0.0f;
        for (int ring = 0; ring < rings; ++ring) {
            const float average = averages[(long long)ring * n + i];
            float best = 0.0f;  // each window is clipped to [0, 1], so 0 is the max's identity
            for (int j = first[ring]; j < first[ring] + count[ring]; ++j) {
                const float window = ca_clip01(
                    fabsf(average - centres[j]) * negative_inverse_edge + offsets[j]);
                best = window > best || window != window ? window : best;  // NaN wins, as in numpy
            }
            membership += best;
        }
        state[i] = ca_clip01(state[i] + (membership * two_delta - all_rings_delta));
    }
}
""",
)


def ring_scale(params: Mapping[str, Any], res_scale: float) -> float:
    """px per preset unit for every ring: `res_scale`, raised until the smallest outer radius is
    MIN_SMALLEST_RING_PX."""
    smallest_outer = min(float(outer) for _, outer in params["rings"])
    return max(res_scale, MIN_SMALLEST_RING_PX / smallest_outer)


def rings_px(params: Mapping[str, Any], res_scale: float) -> list[tuple[float, float]]:
    """(inner, outer) radius in px of every ring, each ring at least 1 px wide."""
    scale = ring_scale(params, res_scale)
    return [
        (inner * scale, max(outer * scale, inner * scale + 1.0)) for inner, outer in params["rings"]
    ]


class MNCAEngine(Engine):
    """Continuous MNCA; `world` is A, (H, W) float32 in [0, 1] on the device."""

    name = "mnca"
    preset_table = MNCA_TABLE  # what its presets may set (read by the stdlib-only preset loader)
    beat_amount = 0.7  # MNCA's busy cells read a beat's flash well
    warmup_steps = (100, 50)  # the prototype's run_warmup
    # A subtractive rim past r = 0.7, deeper than the largest growth per step (3 rings x 0.05 x
    # 1.3 LFO): the rule grows at any density, which no multiplicative fade holds.
    keep_moving = KeepMovingProfile(0.60, 0.25, 0.04, 0.012, rim=(0.70, 0.15, 0.25))
    # The prototype's 0.97 fade could not hold MNCA back (99-100% coverage at 512 px); the
    # keep-moving rim now bounds it to a disc, and erosion is a harder backstop.
    health_overrides = MappingProxyType(
        {"crowded_alive": 0.80, "erode_factor": 0.9, "erode_containment_passes": 3}
    )

    @staticmethod
    def kernel_radii_px(params: Mapping[str, Any], res_scale: float) -> tuple[float, ...]:
        """Every ring's outer radius in px (`rings_px`)."""
        return tuple(outer for _, outer in rings_px(params, res_scale))

    def __init__(self, backend: Backend, height: int, width: int, params: Mapping[str, Any]):
        super().__init__(backend, height, width, params)
        xp = backend.xp
        distance = torus_distance(height, width)
        self.ring_scale = ring_scale(self.params, self.res_scale)
        self.rings = rings_px(self.params, self.res_scale)
        self._ring_hats = kernel_spectra(
            backend, [logistic_ring(distance, inner, outer) for inner, outer in self.rings]
        )
        # (centre, half width) of every interval per ring, and the edge width in cells of A
        self.rules = [
            [((low + high) / 2.0, (high - low) / 2.0) for low, high in intervals]
            for intervals in self.params["rules"]
        ]
        self.edge = WINDOW_EDGE_PER_DELTA * float(self.params["delta"])
        self._state = xp.zeros((height, width), xp.float32)
        self._products = xp.empty(self._ring_hats.shape, xp.complex64)
        update = backend.hot_pass(MNCAUpdateKernel, MNCAUpdatePasses)
        self._update = update(backend, height, width, self.rules, self.edge)
        self.delta = float(self.params["delta"])

    @property
    def world(self) -> Any:
        return self._state

    def step(self) -> None:
        xp, fft, kwargs = self.backend.xp, self.backend.fft, self.backend.fft_kwargs()
        spectrum = fft.rfft2(self._state, **kwargs)
        xp.multiply(spectrum[None], self._ring_hats, out=self._products)
        self._update(self._state, self._products, self.delta)

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
            radius = max(3.0, 8 * self.ring_scale)
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
        stamps = []
        for cy, cx in cluster_centres(rng, self.height, self.width):
            radius = max(
                8.0 * min(1.0, 2 * self.res_scale), 12 * self.res_scale + rng.uniform(-2, 2)
            )
            stamps.append((cy, cx, gaussian_patch(radius, 0.9)))
        self._stamp_max(self._state, stamps)

    def breathing(self) -> tuple[Breathing, ...]:
        return (Breathing("delta", 0.3 * self.params["delta"], 1 / 60, 0.001),)

    def set_live(self, values: Mapping[str, float]) -> None:
        self.delta = values.get("delta", self.delta)


class MNCAUpdateKernel:
    """Every ring's average from one batched irfft2 (one cuFFT launch) into (R, H, W), then the
    membership and update over all rings as one `MNCA_UPDATE` launch."""

    def __init__(
        self,
        backend: Backend,
        height: int,
        width: int,
        rules: list[list[tuple[float, float]]],
        edge: float,
    ) -> None:
        self._backend, self._shape, self._rings, self._edge = (
            backend,
            (height, width),
            len(rules),
            edge,
        )
        self._launch = backend.fused_kernel(MNCA_UPDATE)
        self.rule_arrays = self._upload_rules(rules)

    def _upload_rules(self, rules: list[list[tuple[float, float]]]) -> tuple[Any, Any, Any, Any]:
        """The rules as `MNCA_UPDATE` reads them, on the device: (centres, offsets) float32 per
        interval, (first, count) int32 per ring, offsets as `_interval_window` computes them."""
        xp, inverse_edge = self._backend.xp, 1.0 / self._edge
        intervals = [interval for ring in rules for interval in ring]
        counts = [len(ring) for ring in rules]
        firsts = np.cumsum([0, *counts[:-1]])
        return (
            xp.asarray(np.array([centre for centre, _ in intervals], np.float32)),
            xp.asarray(np.array([half * inverse_edge + 0.5 for _, half in intervals], np.float32)),
            xp.asarray(firsts.astype(np.int32)),
            xp.asarray(np.array(counts, np.int32)),
        )

    def __call__(self, state: Any, products: Any, delta: float) -> None:
        """Step `state` ((H, W) float32, device) in place from `products`, the state's spectrum
        times each ring's ((R, H, W//2+1) complex64, overwritten)."""
        averages = irfft2_stacked(self._backend, products, self._shape)
        self._launch(
            state.size,
            state,
            averages,
            *self.rule_arrays,
            self._rings,
            -1.0 / self._edge,
            2.0 * float(delta),
            float(delta) * self._rings,
        )


class MNCAUpdatePasses:
    """Each ring's average from its own irfft2, then the membership chain and update as numpy
    passes in place on the averages and three frames of its own."""

    def __init__(
        self,
        backend: Backend,
        height: int,
        width: int,
        rules: list[list[tuple[float, float]]],
        edge: float,
    ) -> None:
        xp = backend.xp
        self._backend, self._shape, self._rules, self._edge = backend, (height, width), rules, edge
        self._membership = xp.empty((height, width), xp.float32)
        self._window = xp.empty((height, width), xp.float32)
        self._best = xp.empty((height, width), xp.float32)

    def __call__(self, state: Any, products: Any, delta: float) -> None:
        """As `MNCAUpdateKernel.__call__`."""
        xp = self._backend.xp
        averages = irfft2_each(self._backend, products, self._shape)
        membership, window, best = self._membership, self._window, self._best
        membership.fill(0.0)
        for average, intervals in zip(averages, self._rules, strict=True):
            if len(intervals) == 1:
                membership += self._interval_window(average, *intervals[0], out=average)
                continue
            best.fill(0.0)
            for centre, half_width in intervals:
                xp.maximum(
                    best, self._interval_window(average, centre, half_width, window), out=best
                )
            membership += best
        # +delta per member ring, -delta per other ring
        membership *= 2.0 * delta
        membership -= delta * len(self._rules)
        state += membership
        xp.clip(state, 0.0, 1.0, out=state)

    def _interval_window(self, average: Any, centre: float, half_width: float, out: Any) -> Any:
        """clip((half_width - |average - centre|) / edge + 1/2, 0, 1) into `out` (may be `average`).

        1 well inside the interval, 0 well outside, linear across `edge` around each threshold.
        """
        xp, inverse_edge = self._backend.xp, 1.0 / self._edge
        xp.subtract(average, centre, out=out)
        xp.abs(out, out=out)
        out *= -inverse_edge
        out += half_width * inverse_edge + 0.5
        return xp.clip(out, 0.0, 1.0, out=out)
