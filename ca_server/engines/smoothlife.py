"""SmoothLife: the prototype's sigmoid transition and f <- f + dt(2S - 1) (docs/prototype.md).

Inner disc M and annulus N (logistic edges), each a normalised average: m = M * f, n = N * f.
S(n, m) = s_n(n; b1, b2)(1 - s(m; 1/2, a_m)) + s_n(n; d1, d2) s(m; 1/2, a_m) with
s(x; a, alpha) = 1/(1 + e^{-(x-a)/alpha}) and s_n(x; a, b) = s(x; a) (1 - s(x; b)). Both interval
sigmoids share one exp: with e = exp((n - 1/2)/a_n), s_n = e/((e + c_a)(1 + c_b e)), five in-place
passes each, which keeps the numpy transition to 27 passes (`SmoothLifeUpdatePasses`); on the
GPU the whole transition, from the clipped averages to the clipped new f, is one fused kernel
(`SMOOTHLIFE_UPDATE`, `SmoothLifeUpdateKernel`). One rfft2 and two irfft2 per step (one batched
irfft2 over the disc/annulus stack with the kernel, where it is one cuFFT launch; pocketfft is
slower on a stack than on two separate transforms); radii scale from 512 px.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from ca_server.engines.base import (
    Breathing,
    Engine,
    cluster_centres,
    disc_patch,
    ring_seed,
    wrapped_distance2,
)
from ca_server.engines.keep_moving import KeepMovingProfile
from ca_server.engines.kernels import (
    irfft2_each,
    irfft2_stacked,
    kernel_spectra,
    logistic_disc,
    logistic_ring,
    torus_distance,
)
from ca_server.fused import KernelSource
from ca_server.presets.catalog import SMOOTHLIFE_TABLE
from ca_server.xp import Backend

# Floors on the scaled radii, in px: a smaller disc or annulus no longer averages a neighbourhood.
MIN_INNER_PX = 3
MIN_ANNULUS_PX = 3

# The numpy transition below, pass for pass in the same order (so it rounds the same way): the
# interval constants c_low = exp((low - 1/2)/alpha_n), c_high = exp((1/2 - high)/alpha_n) come
# from the host, since b1 and b2 breathe.
SMOOTHLIFE_UPDATE = KernelSource(
    "smoothlife_update",
    r"""
__device__ __forceinline__ float smoothlife_interval(float e, float c_low, float c_high) {
    return e / ((e + c_low) * (e * c_high + 1.0f));
}

extern "C" __global__ void smoothlife_update(
    float* __restrict__ state, const float* __restrict__ inner, const float* __restrict__ outer,
    const float inverse_alpha_n, const float negative_inverse_alpha_m,
    const float birth_low, const float birth_high, const float survive_low,
    const float survive_high, const float two_dt, const float dt, const long long n) {
    CA_FOR_EACH(i, n) {
        const float e = expf((ca_clip01(outer[i]) - 0.5f) * inverse_alpha_n);
        const float birth = smoothlife_interval(e, birth_low, birth_high);
        const float survive = smoothlife_interval(e, survive_low, survive_high);
        const float mix = 1.0f / (expf((ca_clip01(inner[i]) - 0.5f) * negative_inverse_alpha_m)
                                  + 1.0f);
        const float alive = birth + (survive - birth) * mix;
        state[i] = ca_clip01(state[i] + (alive * two_dt - dt));
    }
}
""",
)


class SmoothLifeEngine(Engine):
    """SmoothLife; `world` is f, (H, W) float32 in [0, 1] on the device."""

    name = "smoothlife"
    preset_table = (
        SMOOTHLIFE_TABLE  # what its presets may set (read by the stdlib-only preset loader)
    )
    warmup_steps = (100, 50)  # the prototype's run_warmup
    keep_moving = KeepMovingProfile(0.35, 0.30, 0.05, 0.006)
    # As Lenia's: a dead world regrows from its seed recipe at once, and erosion is hard.
    health_overrides = MappingProxyType(
        {"revives_before_reseed": 0, "erode_factor": 0.9, "erode_containment_passes": 3}
    )

    @staticmethod
    def kernel_radii_px(params: Mapping[str, Any], res_scale: float) -> tuple[int, int]:
        """(inner, outer) radius in px: ri and ra scaled, the disc and the annulus each at least
        MIN_INNER_PX and MIN_ANNULUS_PX wide."""
        inner = max(MIN_INNER_PX, round(params["ri"] * res_scale))
        return inner, max(inner + MIN_ANNULUS_PX, round(params["ra"] * res_scale))

    def __init__(self, backend: Backend, height: int, width: int, params: Mapping[str, Any]):
        super().__init__(backend, height, width, params)
        xp = backend.xp
        self.inner_radius, self.outer_radius = self.kernel_radii_px(self.params, self.res_scale)
        distance = torus_distance(height, width)
        self._kernel_hats = kernel_spectra(
            backend,
            [
                logistic_disc(distance, self.inner_radius),
                logistic_ring(distance, self.inner_radius, self.outer_radius),
            ],
        )
        self._state = xp.zeros((height, width), xp.float32)
        self._products = xp.empty(self._kernel_hats.shape, xp.complex64)
        update = backend.hot_pass(SmoothLifeUpdateKernel, SmoothLifeUpdatePasses)
        self._update = update(backend, height, width, self.params)
        self.b1, self.b2 = float(self.params["b1"]), float(self.params["b2"])

    @property
    def world(self) -> Any:
        return self._state

    def step(self) -> None:
        xp, fft, kwargs = self.backend.xp, self.backend.fft, self.backend.fft_kwargs()
        spectrum = fft.rfft2(self._state, **kwargs)
        xp.multiply(spectrum[None], self._kernel_hats, out=self._products)
        self._update(self._state, self._products, self.b1, self.b2)

    def seed(self, rng: np.random.Generator, kind: str, density: float) -> None:
        h, w = self.height, self.width
        side, ra = min(h, w), self.outer_radius
        if kind == "random":
            distance = np.sqrt(wrapped_distance2(h, w, h / 2, w / 2))
            edge = 1.0 / (1.0 + np.exp((distance - side / 5) / max(ra / 2, 1.0)))
            host = edge * rng.uniform(0.7, 1.0, (h, w)) + rng.normal(0.0, 0.05, (h, w))
        elif kind == "blobs":
            host = np.zeros((h, w), np.float32)
            base = max(10 * self.res_scale, 2.5 * ra)
            for _ in range(10):
                radius = base * math.exp(rng.uniform(math.log(0.25), math.log(2.5)))
                cy, cx = (
                    (h / 2 + rng.normal(0, 0.2 * side)) % h,
                    (w / 2 + rng.normal(0, 0.2 * side)) % w,
                )
                distance = np.sqrt(wrapped_distance2(h, w, cy, cx))
                disc = 1.0 / (1.0 + np.exp((distance - radius) / max(ra / 4, 1.0)))
                np.maximum(host, disc * rng.uniform(0.7, 1.0), out=host)
        elif kind == "ring":
            host = ring_seed(rng, h, w, side / 5, max(float(ra), side / 50))
        else:
            raise ValueError(f"unknown SmoothLife seed {kind!r}; use blobs, random or ring")
        self._upload(host, self._state)

    def drop_cluster(self, rng: np.random.Generator) -> None:
        s = self.res_scale
        stamps = []
        for cy, cx in cluster_centres(rng, self.height, self.width):
            radius = max(15 * s, 0.7 * self.outer_radius) + rng.uniform(-3, 3) * s
            stamps.append((cy, cx, disc_patch(rng, max(radius, 2.0), 0.75, 0.95)))
        self._stamp_max(self._state, stamps)

    def breathing(self) -> tuple[Breathing, ...]:
        return (
            Breathing("b1", 0.015, 1 / 70, 0.0),
            Breathing("b2", 0.015, 1 / 85, 0.0),
        )

    def set_live(self, values: Mapping[str, float]) -> None:
        self.b1 = values.get("b1", self.b1)
        self.b2 = values.get("b2", self.b2)


def _interval_constants(low: float, high: float, alpha_n: float) -> tuple[float, float]:
    """(c_low, c_high) = (exp((low - 1/2)/alpha_n), exp((1/2 - high)/alpha_n)) of s_n."""
    return math.exp((low - 0.5) / alpha_n), math.exp((0.5 - high) / alpha_n)


class SmoothLifeUpdateKernel:
    """The disc and annulus averages from one batched irfft2 (one cuFFT launch), then the whole
    transition as one `SMOOTHLIFE_UPDATE` launch."""

    def __init__(self, backend: Backend, height: int, width: int, params: Mapping[str, Any]):
        self._backend, self._shape, self._params = backend, (height, width), params
        self._launch = backend.fused_kernel(SMOOTHLIFE_UPDATE)

    def __call__(self, state: Any, products: Any, b1: float, b2: float) -> None:
        """Step `state` ((H, W) float32, device) in place from `products`, the state's spectrum
        times the disc's and the annulus's ((2, H, W//2+1) complex64, overwritten)."""
        inner, outer = irfft2_stacked(self._backend, products, self._shape)
        params, dt = self._params, float(self._params["dt"])
        alpha_n = params["alpha_n"]
        self._launch(
            state.size,
            state,
            inner,
            outer,
            1.0 / alpha_n,
            -1.0 / params["alpha_m"],
            *_interval_constants(b1, b2, alpha_n),
            *_interval_constants(params["d1"], params["d2"], alpha_n),
            2.0 * dt,
            dt,
        )


class SmoothLifeUpdatePasses:
    """The averages from two separate irfft2 calls, then the transition as 27 numpy passes in
    place on them and three frames of its own."""

    def __init__(self, backend: Backend, height: int, width: int, params: Mapping[str, Any]):
        xp = backend.xp
        self._backend, self._shape, self._params = backend, (height, width), params
        self._birth = xp.empty((height, width), xp.float32)
        self._survive = xp.empty((height, width), xp.float32)
        self._scratch = xp.empty((height, width), xp.float32)

    def _interval(self, exp_n: Any, low: float, high: float, out: Any) -> Any:
        """s_n(n; low, high) = e / ((e + c_low)(1 + c_high e)) from e = exp((n - 1/2)/alpha_n).

        `out` gets the (H, W) float32 result. e is at most exp(1/(2 alpha_n)) (n is clipped to
        [0, 1]), so the product stays finite for alpha_n >= 0.012; beyond that it overflows to
        inf and the quotient is the correct limit 0.
        """
        xp, alpha = self._backend.xp, self._params["alpha_n"]
        c_low, c_high = _interval_constants(low, high, alpha)
        xp.add(exp_n, c_low, out=out)
        xp.multiply(exp_n, c_high, out=self._scratch)
        self._scratch += 1.0
        out *= self._scratch
        return xp.divide(exp_n, out, out=out)

    def __call__(self, state: Any, products: Any, b1: float, b2: float) -> None:
        """As `SmoothLifeUpdateKernel.__call__`."""
        xp, params = self._backend.xp, self._params
        inner, outer = irfft2_each(self._backend, products, self._shape)
        # exp((n - 1/2)/alpha_n), clipped first so round-off cannot overflow it
        xp.clip(outer, 0.0, 1.0, out=outer)
        outer -= 0.5
        outer *= 1.0 / params["alpha_n"]
        xp.exp(outer, out=outer)
        birth = self._interval(outer, b1, b2, self._birth)
        survive = self._interval(outer, params["d1"], params["d2"], self._survive)
        # mix = s(m; 1/2, alpha_m)
        xp.clip(inner, 0.0, 1.0, out=inner)
        inner -= 0.5
        inner *= -1.0 / params["alpha_m"]
        xp.exp(inner, out=inner)
        inner += 1.0
        xp.reciprocal(inner, out=inner)
        # S = birth + mix (survive - birth); f += dt (2S - 1)
        survive -= birth
        survive *= inner
        birth += survive
        dt = params["dt"]
        birth *= 2.0 * dt
        birth -= dt
        state += birth
        xp.clip(state, 0.0, 1.0, out=state)
