"""Lenia with the prototype's multi-peak ring kernel and Gaussian growth (docs/prototype.md).

Kernel K(r) = sum_i exp(-((r/R - peak_i)/width_i)^2 / 2) on r <= R, normalised; growth
G(U) = 2 exp(-((U - mu)/sigma)^2 / 2) - 1; update A <- clip(A + G(K * A) / T, 0, 1). One rfft2 and
one irfft2 per step; the growth, update and clip run in place on the potential's buffer on numpy
(`LeniaUpdatePasses`) and as one fused kernel (`LENIA_UPDATE`, `LeniaUpdateKernel`) on the GPU. R is
scaled from the 512 px base, so a preset looks the same at every resolution, but never below
MIN_RADIUS_PX: the finest preset structures are about a third of R across (heartbeat's rings at
R = 10), and at the prototype's floor of 5 px they shrink to 1-2 px and alias into a pixel-scale
checkerboard (tests/ca/test_engine_textures.py); 8 px resolves them and leaves every preset whose
radius at 256 px is already 8 or more (all but heartbeat) as it was.
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
from ca_server.engines.kernels import kernel_spectrum, lenia_kernel, torus_distance
from ca_server.fused import KernelSource
from ca_server.presets.catalog import LENIA_TABLE
from ca_server.xp import Backend

# Smallest kernel radius in cells (the prototype's floor was 5).
MIN_RADIUS_PX = 8

LENIA_UPDATE = KernelSource(
    "lenia_update",
    r"""
extern "C" __global__ void lenia_update(
    float* __restrict__ state, const float* __restrict__ potential, const float mu,
    const float growth_exponent_scale, const float two_over_t, const float one_over_t,
    const long long n) {
    CA_FOR_EACH(i, n) {
        float growth = potential[i] - mu;
        growth = expf(growth * growth * growth_exponent_scale) * two_over_t - one_over_t;
        state[i] = ca_clip01(state[i] + growth);
    }
}
""",
)


# The health policy's higher death floor applies from this short side up (the prototype's).
HI_RES_SIDE_PX = 768
# The mu LFO (+-15% of mu) is capped at this many sigmas: a narrow growth band (coral, mycelium:
# sigma 0.009-0.015, i.e. 15% of mu is ~1.2-2 sigma) cannot follow a larger swing. At a cap of one
# sigma coral still swung with the LFO from filling the frame to a small blob (alive 0.5 -> 0.06 at
# 256-512 px) and back every minute or two; at half a sigma it held 0.45-0.54 at 256 px.
MU_SWING_SIGMAS = 0.5


class LeniaEngine(Engine):
    """Single-channel Lenia; `world` is A, (H, W) float32 in [0, 1] on the device."""

    name = "lenia"
    preset_table = LENIA_TABLE  # what its presets may set (read by the stdlib-only preset loader)
    beat_amount = 0.6  # Lenia's soft bodies read a beat's flash well
    warmup_steps = (600, 200)  # the prototype's run_warmup
    keep_moving = KeepMovingProfile(0.35, 0.30, 0.05, 0.012)
    # Fixed-size cluster drops rarely suit a narrow growth band (coral, mycelium: sigma
    # 0.008-0.01), so a dead world regrows from its own seed recipe at once. The prototype's 0.97
    # fade left big-kernel Lenia (amoeba, tide_pool) at 95%+ coverage for many seconds after
    # warm-up; three containment passes and a 0.9 fade bring it back within a second.
    health_overrides = MappingProxyType(
        {"revives_before_reseed": 0, "erode_factor": 0.9, "erode_containment_passes": 3}
    )

    @classmethod
    def health_bands(cls, side_px: int) -> Mapping[str, Any]:
        """Above HI_RES_SIDE_PX, the prototype's higher death floor."""
        if side_px >= HI_RES_SIDE_PX:
            return {"dead_mass": 0.005, **cls.health_overrides}
        return cls.health_overrides

    @staticmethod
    def kernel_radii_px(params: Mapping[str, Any], res_scale: float) -> tuple[int]:
        """(R in px,): the preset's R scaled, at least MIN_RADIUS_PX."""
        return (max(MIN_RADIUS_PX, round(params["R"] * res_scale)),)

    def __init__(self, backend: Backend, height: int, width: int, params: Mapping[str, Any]):
        super().__init__(backend, height, width, params)
        (self.radius,) = self.kernel_radii_px(self.params, self.res_scale)
        kernel = lenia_kernel(
            torus_distance(height, width),
            self.radius,
            self.params["peaks"],
            self.params["widths"],
        )
        self._kernel_hat = kernel_spectrum(backend, kernel)
        self._state = backend.xp.zeros((height, width), backend.xp.float32)
        self._update = backend.hot_pass(LeniaUpdateKernel, LeniaUpdatePasses)(backend)
        self.mu = float(self.params["mu"])
        self.sigma = float(self.params["sigma"])
        self.T = float(self.params["T"])

    @property
    def world(self) -> Any:
        return self._state

    def step(self) -> None:
        xp, fft, kwargs = self.backend.xp, self.backend.fft, self.backend.fft_kwargs()
        spectrum = fft.rfft2(self._state, **kwargs)
        xp.multiply(spectrum, self._kernel_hat, out=spectrum)
        potential = fft.irfft2(spectrum, s=self._state.shape, overwrite_x=True, **kwargs)
        self._update(self._state, potential, self.mu, self.sigma, self.T)

    def seed(self, rng: np.random.Generator, kind: str, density: float) -> None:
        h, w = self.height, self.width
        side = min(h, w)
        if kind == "blobs":
            host = gaussian_blobs(rng, h, w, 8, side / 10, 0.2 * side, density)
        elif kind == "ring":
            host = ring_seed(rng, h, w, side / 5, max(10 * self.res_scale, side / 50))
        elif kind == "random":
            host = noisy_envelope(rng, h, w, side / 4, density)
        elif kind == "dense":
            host = noisy_envelope(rng, h, w, side / 3, 0.8)
        else:
            raise ValueError(f"unknown Lenia seed {kind!r}; use blobs, ring, random or dense")
        self._upload(host, self._state)

    def drop_cluster(self, rng: np.random.Generator) -> None:
        stamps = []
        for cy, cx in cluster_centres(rng, self.height, self.width):
            radius = max(8.0, 12 * self.res_scale + rng.uniform(-2, 2))
            stamps.append((cy, cx, gaussian_patch(radius, 0.9)))
        self._stamp_max(self._state, stamps)

    def breathing(self) -> tuple[Breathing, ...]:
        # The prototype swung sigma by 15% and T by 25%: at 256 px over 10 minutes that drove
        # jellyfish (sigma), amoeba (T), mycelium and coral from filling the frame to a small blob
        # and back every minute or two (issue 19); at 5% and 10% they hold their coverage.
        # The mu swing (15% of mu) is capped at MU_SWING_SIGMAS x sigma (see there).
        mu, sigma, T = self.params["mu"], self.params["sigma"], self.params["T"]
        return (
            Breathing("mu", min(0.15 * mu, MU_SWING_SIGMAS * float(sigma)), 0.015, 1e-4),
            Breathing("sigma", 0.05 * sigma, 0.012, 1e-4),
            Breathing("T", 0.10 * T, 0.014, 3.0),
        )

    def set_live(self, values: Mapping[str, float]) -> None:
        self.mu = values.get("mu", self.mu)
        self.sigma = values.get("sigma", self.sigma)
        self.T = values.get("T", self.T)


class LeniaUpdateKernel:
    """The growth, update and clip as one `LENIA_UPDATE` launch."""

    def __init__(self, backend: Backend) -> None:
        self._launch = backend.fused_kernel(LENIA_UPDATE)

    def __call__(self, state: Any, potential: Any, mu: float, sigma: float, T: float) -> None:
        """state = clip(state + G(potential)/T, 0, 1) in place; both (H, W) float32 on the
        device, C-contiguous; `potential` is left as it was."""
        self._launch(state.size, state, potential, mu, -0.5 / (sigma * sigma), 2.0 / T, 1.0 / T)


class LeniaUpdatePasses:
    """The growth, update and clip as numpy passes, in place on the potential's buffer."""

    def __init__(self, backend: Backend) -> None:
        self._xp = backend.xp

    def __call__(self, state: Any, potential: Any, mu: float, sigma: float, T: float) -> None:
        """state = clip(state + G(potential)/T, 0, 1) in place; `potential` is overwritten."""
        xp = self._xp
        # growth G(U)/T = (2/T) exp(-(U-mu)^2 / (2 sigma^2)) - 1/T, in place on the potential
        xp.subtract(potential, mu, out=potential)
        xp.multiply(potential, potential, out=potential)
        xp.multiply(potential, -0.5 / (sigma * sigma), out=potential)
        xp.exp(potential, out=potential)
        xp.multiply(potential, 2.0 / T, out=potential)
        xp.subtract(potential, 1.0 / T, out=potential)
        xp.add(state, potential, out=state)
        xp.clip(state, 0.0, 1.0, out=state)
