"""The prototype's per-step "keep it moving" machinery in one pass (docs/prototype.md).

After each engine step (and flow advection) the world gets, for Lenia, SmoothLife and MNCA:
containment (a radial multiplicative fade past r = 0.35, or 0.6 for MNCA), centre noise
(noise x 0.003 under a Gaussian of width 0.18), a rotating stir (an additive tilt
(cos phi dx + sin phi dy) x 0.010 under a Gaussian of width 0.25, phi += 0.005 per step) and, every
4th step, a velocity perturbation (noise x 0.012, or 0.006 for SmoothLife, where the world stopped
changing). All three additive terms apply only where the world has density (> 0.03), and they
are summed into one buffer so the world is touched once. Noise comes from a seeded pool of
full-size normal frames used round-robin, never from per-step randn. Gray-Scott gets no extras
(its feed mask is its containment). MNCA also gets a subtractive rim beyond r = 0.7: its rule adds
up to delta per ring per step at any density, which no multiplicative fade can hold, so the
prototype's MNCA filled the whole frame; the rim keeps it to the ~50% disc the prototype meant.
On numpy `apply` is a chain of in-place passes (`KeepMovingPasses`); where fused kernels exist
(the GPU) it is one launch of `KEEP_MOVING_APPLY` (`KeepMovingKernel`), which reads the noise
frames, the world from before the step and the static masks, and holds no scratch frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ca_server.engines.base import centred_radius
from ca_server.fused import KernelSource
from ca_server.xp import Backend

NOISE_POOL_FRAMES = 6
PERTURB_EVERY_STEPS = 4
STIR_RADIANS_PER_STEP = 0.005
DENSITY_THRESHOLD = 0.03
STILL_THRESHOLD = 0.003


@dataclass(frozen=True)
class KeepMovingProfile:
    """One engine's keep-moving extras (an engine class's `keep_moving`; None: no extras).

    Radii are relative to the half-sides (r = 1 on the inscribed ellipse).
    """

    containment_start: float  # the multiplicative fade starts at this radius,
    containment_ramp: float  # reaches its full depth this much further out,
    containment_fade: float  # and takes off at most this fraction a step
    perturb_amplitude: float  # the every-4th-step velocity perturbation's noise gain
    # A subtractive rim (start, ramp, depth) for a rule that grows at any density, or None.
    rim: tuple[float, float, float] | None = None


# The numpy sequence of `KeepMoving.apply` per pixel, in its order of float32 operations. Flags are
# ints: `perturb` (this is a 4th step; `perturb_noise` and `previous` are read only then) and
# `has_rim` (MNCA; `rim` is a stand-in array otherwise). A pixel where the world is below the
# density threshold, or not still, gains nothing: numpy multiplies those terms by 0.
KEEP_MOVING_APPLY = KernelSource(
    "keep_moving_apply",
    r"""
extern "C" __global__ void keep_moving_apply(
    float* __restrict__ world, const float* __restrict__ centre_noise,
    const float* __restrict__ perturb_noise, const float* __restrict__ previous,
    const float* __restrict__ centre_noise_gain, const float* __restrict__ stir_x,
    const float* __restrict__ stir_y, const float* __restrict__ containment,
    const float* __restrict__ rim, const float stir_cos, const float stir_sin,
    const int perturb, const float perturb_amplitude, const float still_threshold,
    const float density_threshold, const int has_rim, const long long n) {
    CA_FOR_EACH(i, n) {
        float value = world[i];
        float extra = centre_noise[i] * centre_noise_gain[i];
        extra = extra + stir_x[i] * stir_cos;
        extra = extra + stir_y[i] * stir_sin;
        if (perturb && fabsf(value - previous[i]) < still_threshold) {
            extra = extra + perturb_noise[i] * perturb_amplitude;
        }
        if (value > density_threshold) {
            value = value + extra;
        }
        value = value * containment[i];
        if (has_rim) {
            value = value - rim[i];
        }
        world[i] = ca_clip01(value);
    }
}
""",
)


class NoisePool:
    """NOISE_POOL_FRAMES standard-normal (H, W) float32 frames on the device, drawn from `seed`."""

    def __init__(self, backend: Backend, height: int, width: int, seed: int):
        rng = np.random.default_rng([seed, 0x6E6F6973])  # own stream: independent of seeding
        host = rng.standard_normal((NOISE_POOL_FRAMES, height, width), dtype=np.float32)
        self.frames = backend.xp.asarray(host)
        self._next = 0

    def take(self) -> Any:
        """The next frame, round-robin: (H, W) float32, mean 0, std 1, on the device."""
        frame = self.frames[self._next]
        self._next = (self._next + 1) % NOISE_POOL_FRAMES
        return frame


def containment_mask(profile: KeepMovingProfile, height: int, width: int) -> np.ndarray:
    """1 - fade * clip((r - start)/ramp, 0, 1): (H, W) float32 in [0, 1] on the host."""
    start, ramp = profile.containment_start, profile.containment_ramp
    _, _, radius = centred_radius(height, width)
    fade = profile.containment_fade * np.clip((radius - start) / ramp, 0.0, 1.0)
    return (1.0 - fade).astype(np.float32)


class KeepMoving:
    """Containment, centre noise, rotating stir and velocity perturbation for one engine/grid.

    `profile` is the engine class's `keep_moving`; None (Gray-Scott) makes every call a no-op.
    """

    def __init__(
        self,
        backend: Backend,
        profile: KeepMovingProfile | None,
        height: int,
        width: int,
        noise: NoisePool,
    ):
        xp = backend.xp
        self.backend, self.noise = backend, noise
        self.enabled = profile is not None
        self.stir_phase = 0.0
        self._step = 0
        if profile is None:
            return
        self.perturb_amplitude = profile.perturb_amplitude
        dx, dy, radius = centred_radius(height, width)
        centre = 0.003 * np.exp(-(radius**2) / (2 * 0.18**2))
        stir = 0.010 * np.exp(-(radius**2) / (2 * 0.25**2))
        self._containment = xp.asarray(containment_mask(profile, height, width))
        self._rim: Any = None
        if profile.rim is not None:
            rim_start, rim_ramp, rim_depth = profile.rim
            rim = rim_depth * np.clip((radius - rim_start) / rim_ramp, 0.0, 1.0)
            self._rim = xp.asarray(rim.astype(np.float32))
        self._centre_noise_gain = xp.asarray(centre.astype(np.float32))
        self._stir_x = xp.asarray((dx * stir).astype(np.float32))
        self._stir_y = xp.asarray((dy * stir).astype(np.float32))
        self._previous = xp.empty((height, width), xp.float32)
        self._extras = backend.hot_pass(KeepMovingKernel, KeepMovingPasses)(backend, self)

    @property
    def wants_previous(self) -> bool:
        """True when the next `apply` perturbs and so needs `remember(world)` before the step."""
        return self.enabled and (self._step + 1) % PERTURB_EVERY_STEPS == 0

    def remember(self, world: Any) -> None:
        """Keep a copy of the world from before the engine step (for the stillness test)."""
        self.backend.xp.copyto(self._previous, world)

    def apply(self, world: Any) -> None:
        """Apply the extras to `world` ((H, W) float32, C-contiguous, on device) in place.

        Keeps it in [0, 1]. One kernel launch where fused kernels exist, else the numpy passes.
        The extras draw from the pool in the same order either way: the centre frame, then (4th
        steps) the perturbation frame.
        """
        self._step += 1
        if not self.enabled:
            return
        self._extras(world, self._step % PERTURB_EVERY_STEPS == 0)
        self.stir_phase += STIR_RADIANS_PER_STEP

    def contain(self, world: Any, times: int = 1) -> None:
        """Apply only the containment fade `times` times (the overcrowding response)."""
        if self.enabled:
            for _ in range(times):
                world *= self._containment
            if self._rim is not None:
                world -= self._rim
                self.backend.xp.clip(world, 0.0, 1.0, out=world)


class KeepMovingKernel:
    """The extras as one `KEEP_MOVING_APPLY` launch, reading the owner's masks; no scratch."""

    def __init__(self, backend: Backend, owner: KeepMoving) -> None:
        self._owner = owner
        self._launch = backend.fused_kernel(KEEP_MOVING_APPLY)

    def __call__(self, world: Any, perturb: bool) -> None:
        """Apply the extras to `world` ((H, W) float32, C-contiguous, device) in place."""
        owner = self._owner
        # take() returns a row of the pool's C-contiguous (6, H, W) array.
        centre_noise = owner.noise.take()
        perturb_noise = owner.noise.take() if perturb else centre_noise
        self._launch(
            world.size,
            world,
            centre_noise,
            perturb_noise,
            owner._previous,
            owner._centre_noise_gain,
            owner._stir_x,
            owner._stir_y,
            owner._containment,
            owner._containment if owner._rim is None else owner._rim,
            math.cos(owner.stir_phase),
            math.sin(owner.stir_phase),
            int(perturb),
            owner.perturb_amplitude,
            STILL_THRESHOLD,
            DENSITY_THRESHOLD,
            int(owner._rim is not None),
        )


class KeepMovingPasses:
    """The extras as in-place numpy passes, with their scratch frames (10 bytes a pixel)."""

    def __init__(self, backend: Backend, owner: KeepMoving) -> None:
        xp = backend.xp
        self._xp, self._owner = xp, owner
        shape = owner._previous.shape
        self._extra = xp.empty(shape, xp.float32)
        self._scratch = xp.empty(shape, xp.float32)
        self._mask = xp.empty(shape, bool)
        self._still = xp.empty(shape, bool)

    def __call__(self, world: Any, perturb: bool) -> None:
        """As `KeepMovingKernel.__call__`."""
        xp, owner, extra, scratch = self._xp, self._owner, self._extra, self._scratch
        xp.multiply(owner.noise.take(), owner._centre_noise_gain, out=extra)
        xp.multiply(owner._stir_x, math.cos(owner.stir_phase), out=scratch)
        extra += scratch
        xp.multiply(owner._stir_y, math.sin(owner.stir_phase), out=scratch)
        extra += scratch
        if perturb:
            xp.subtract(world, owner._previous, out=scratch)
            xp.abs(scratch, out=scratch)
            xp.less(scratch, STILL_THRESHOLD, out=self._still)
            xp.multiply(owner.noise.take(), owner.perturb_amplitude, out=scratch)
            scratch *= self._still
            extra += scratch
        xp.greater(world, DENSITY_THRESHOLD, out=self._mask)
        extra *= self._mask
        world += extra
        world *= owner._containment
        if owner._rim is not None:
            world -= owner._rim
        xp.clip(world, 0.0, 1.0, out=world)
