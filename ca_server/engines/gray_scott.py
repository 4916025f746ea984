"""Gray-Scott with the prototype's stencil, substeps and radial feed mask (docs/prototype.md).

Each step runs `substeps` (default 2) explicit-Euler substeps with dt = 1:
U += Du lap(U) - U V^2 + F_mask (1 - U);  V += Dv lap(V) + U V^2 - (F_mask + k) V; both clipped.
lap is the 9-point stencil (0.2 edges, 0.05 corners, -1 centre), periodic; numpy takes it from a
padded buffer so it costs slices rather than rolls. On the GPU a substep is one fused kernel
(`GRAY_SCOTT_SUBSTEP`) that reads U and V with wrapped indices and writes the new U and V into a
second pair of buffers; the pairs alternate, and an odd substep count copies the result back, so
`fields` stay the same two arrays, stepped in place. F_mask = F (1 + 4 clip((r - 0.4)/0.3, 0, 1))
raises the feed fivefold beyond r = 0.7 (r normalised to the half-sides), which keeps patterns
inside the frame. Diffusion is not rescaled with resolution (as in the prototype): patterns keep
their size in pixels. `world` is V.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from ca_server.engines.base import (
    Breathing,
    Engine,
    centred_radius,
    cluster_centres,
)
from ca_server.fused import KernelSource
from ca_server.presets.catalog import GRAY_SCOTT_TABLE
from ca_server.xp import Backend

# One explicit-Euler substep, out of place (the stencil reads neighbours other threads update),
# in the numpy sequence's order of operations so it rounds the same way: lap = (N + S + W + E)
# x 0.2 D + (NW + NE + SW + SE) x 0.05 D - D x centre.
GRAY_SCOTT_SUBSTEP = KernelSource(
    "gray_scott_substep",
    r"""
__device__ __forceinline__ float gray_scott_laplacian(
    const float* __restrict__ field, const int up, const int row, const int down, const int left,
    const int x, const int right, const float edge_weight, const float corner_weight,
    const float diffusion) {
    const float edges = field[up + x] + field[down + x] + field[row + left] + field[row + right];
    const float corners = field[up + left] + field[up + right] + field[down + left]
                          + field[down + right];
    return edges * edge_weight + corners * corner_weight - field[row + x] * diffusion;
}

extern "C" __global__ void gray_scott_substep(
    float* __restrict__ u_out, float* __restrict__ v_out, const float* __restrict__ u_in,
    const float* __restrict__ v_in, const float* __restrict__ feed,
    const float* __restrict__ feed_kill, const int height, const int width,
    const float u_edge_weight, const float u_corner_weight, const float du,
    const float v_edge_weight, const float v_corner_weight, const float dv, const long long n) {
    CA_FOR_EACH(i, n) {
        const int y = (int)(i / width), x = (int)(i - (long long)y * width);
        // row offsets fit in int: a frame has far fewer than 2^31 cells
        const int row = y * width, up = ca_wrap(y - 1, height) * width;
        const int down = ca_wrap(y + 1, height) * width;
        const int left = ca_wrap(x - 1, width), right = ca_wrap(x + 1, width);
        const float u = u_in[i], v = v_in[i];
        const float uvv = v * v * u;
        const float lap_u = gray_scott_laplacian(
            u_in, up, row, down, left, x, right, u_edge_weight, u_corner_weight, du);
        const float lap_v = gray_scott_laplacian(
            v_in, up, row, down, left, x, right, v_edge_weight, v_corner_weight, dv);
        u_out[i] = ca_clip01(u + (((lap_u - uvv) - feed[i] * u) + feed[i]));
        v_out[i] = ca_clip01(v + ((lap_v + uvv) - feed_kill[i] * v));
    }
}
""",
)


class GrayScottEngine(Engine):
    """Gray-Scott; `world` is V and `fields` is (U, V), each (H, W) float32 in [0, 1] on device."""

    name = "gray_scott"
    preset_table = (
        GRAY_SCOTT_TABLE  # what its presets may set (read by the stdlib-only preset loader)
    )
    # The prototype grew 1 000 steps, which ran 31-35 s at 1024 px on the CPU.
    beat_amount = 0.4  # Gray-Scott's patterns change slowly: they lean on the bar's surge
    warmup_steps = (600, 150)
    # Its pattern scale is set by its diffusion, not a radius: a grid at most half the size,
    # with the diffusion scaled (`params_on_grid`).
    warmup_factors = (2,)
    # No density-based nucleation or erosion (its feed mask shapes it); a V field that fills the
    # frame is treated like a frozen one. Its healthy drift is ~1e-4 per step at 256-512 px,
    # under the generic frozen floor, which made the monitor erase a disc of a live pattern every
    # 5 s (deep_sea and tentacles stayed thin); 2e-5 still catches a converged Turing pattern
    # (exactly static without flow).
    health_overrides = MappingProxyType(
        {
            "sparse_alive": 0.0,
            "crowded_alive": 0.95,
            "erode_factor": 1.0,
            "frozen_activity": 2e-5,
        }
    )

    @staticmethod
    def params_on_grid(params: Mapping[str, Any], factor: int) -> Mapping[str, Any]:
        """Diffusion, in cells² per step, scaled by 1 / factor²: the same PDE on the coarser
        grid, so the pattern keeps its size relative to the frame."""
        if factor == 1:
            return params
        scaled = dict(params)
        scaled["Du"], scaled["Dv"] = params["Du"] / factor**2, params["Dv"] / factor**2
        return scaled

    def erase(self, keep: Any) -> None:
        """V fades to 0 and U to 1 (empty Gray-Scott) where `keep` is 0."""
        world = self.world
        world *= keep
        u = self._u
        u *= keep
        u += 1.0 - keep

    def __init__(self, backend: Backend, height: int, width: int, params: Mapping[str, Any]):
        super().__init__(backend, height, width, params)
        xp = backend.xp
        shape = (height, width)
        self._u = xp.ones(shape, xp.float32)
        self._v = xp.zeros(shape, xp.float32)
        substeps = backend.hot_pass(GrayScottSubstepKernel, GrayScottSubstepPasses)
        self._substeps = substeps(backend, height, width)
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

    def step(self) -> None:
        params = self.params
        fields = (self._u, self._v, self._feed, self._feed_kill)
        self._substeps(*fields, float(params["Du"]), float(params["Dv"]), self.substeps)

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
        stamps = [
            (cy, cx, rng.uniform(0.25, 0.5, (2 * half + 1, 2 * half + 1)))
            for cy, cx in cluster_centres(rng, self.height, self.width)
        ]
        self._stamp_max(self._v, stamps)

    def breathing(self) -> tuple[Breathing, ...]:
        return (Breathing("F", 0.006, 0.033, 0.001),)

    def set_live(self, values: Mapping[str, float]) -> None:
        if "F" in values:
            xp = self.backend.xp
            xp.multiply(self._feed_profile, float(values["F"]), out=self._feed)
            xp.add(self._feed, float(self.params["k"]), out=self._feed_kill)


class GrayScottSubstepKernel:
    """`substeps` launches of GRAY_SCOTT_SUBSTEP, alternating between U, V and a second pair.

    After an even count the result is back in U, V; after an odd one it is in the other pair and
    is copied back (two copies; no preset uses an odd count), so the arrays the engine's `fields`
    returns never change identity, as base.Engine's in-place `step()` promises. Today's callers
    (flow advection, keepsakes, `load_fields`, erode/perturb) re-read `fields` and `world` after
    every step and would survive a swap, but a reference held across a step would silently go
    stale, and after an even count the copy-back costs nothing.
    """

    def __init__(self, backend: Backend, height: int, width: int) -> None:
        xp = backend.xp
        self._xp, self._height, self._width = xp, height, width
        self._launch = backend.fused_kernel(GRAY_SCOTT_SUBSTEP)
        # the other half of the ping-pong pair
        self._u_next = xp.empty((height, width), xp.float32)
        self._v_next = xp.empty((height, width), xp.float32)

    def __call__(
        self, u: Any, v: Any, feed: Any, feed_kill: Any, du: float, dv: float, substeps: int
    ) -> None:
        """Advance U and V ((H, W) float32, device) by `substeps` in place; `feed` is F_mask and
        `feed_kill` F_mask + k, both (H, W) float32."""
        weights = (0.2 * du, 0.05 * du, du, 0.2 * dv, 0.05 * dv, dv)
        current, following = (u, v), (self._u_next, self._v_next)
        for _ in range(substeps):
            self._launch(
                u.size, *following, *current, feed, feed_kill, self._height, self._width, *weights
            )
            current, following = following, current
        if current[0] is not u:
            self._xp.copyto(u, current[0])
            self._xp.copyto(v, current[1])


class GrayScottSubstepPasses:
    """The substeps as numpy passes, the stencil read from a padded copy (slices, not rolls)."""

    def __init__(self, backend: Backend, height: int, width: int) -> None:
        xp, shape = backend.xp, (height, width)
        self._xp = xp
        self._padded = xp.empty((height + 2, width + 2), xp.float32)
        self._lap_u = xp.empty(shape, xp.float32)
        self._lap_v = xp.empty(shape, xp.float32)
        self._uvv = xp.empty(shape, xp.float32)
        self._scratch = xp.empty(shape, xp.float32)

    def _laplacian(self, field: Any, diffusion: float, out: Any) -> None:
        """out = diffusion * lap(field), periodic 9-point stencil."""
        padded = self._padded
        padded[1:-1, 1:-1] = field
        padded[0, 1:-1] = field[-1]
        padded[-1, 1:-1] = field[0]
        padded[:, 0] = padded[:, -2]
        padded[:, -1] = padded[:, 1]
        xp, scratch = self._xp, self._scratch
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

    def __call__(
        self, u: Any, v: Any, feed: Any, feed_kill: Any, du: float, dv: float, substeps: int
    ) -> None:
        """As `GrayScottSubstepKernel.__call__`."""
        xp, uvv, scratch = self._xp, self._uvv, self._scratch
        lap_u, lap_v = self._lap_u, self._lap_v
        for _ in range(substeps):
            self._laplacian(u, du, lap_u)
            self._laplacian(v, dv, lap_v)
            xp.multiply(v, v, out=uvv)
            uvv *= u
            lap_u -= uvv
            xp.multiply(feed, u, out=scratch)
            lap_u -= scratch
            lap_u += feed
            u += lap_u
            xp.clip(u, 0.0, 1.0, out=u)
            lap_v += uvv
            xp.multiply(feed_kill, v, out=scratch)
            lap_v -= scratch
            v += lap_v
            xp.clip(v, 0.0, 1.0, out=v)
