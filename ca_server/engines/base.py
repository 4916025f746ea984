"""The engine interface every CA implements, and the host-side seed shapes they share.

An engine owns its state arrays on the backend's device and exposes `world`, the (H, W) float32
field in [0, 1] that the renderer draws (Lenia's A, SmoothLife's f, MNCA's a, Gray-Scott's V).
`step()` advances one engine step in place. `seed()` and `drop_cluster()` take a numpy Generator:
seeds are drawn on the host (rare events) and uploaded, so a seed gives the same start on numpy
and CuPy. Spatial sizes follow the prototype's convention: tuned at 512 px, scaled by
`res_scale = min(H, W) / 512`. The two writes every engine shares, a seed stamp (`STAMP_MAX`) and
the scale-up after a warm-up on a reduced grid (`GRID_UPSCALE`), are fused kernels too where the
backend has them, in place of CuPy's integer-array indexing and `ndimage.zoom`, which CuPy would
compile on first use in the stream.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ca_server.fused import KernelSource
from ca_server.presets.catalog import EngineTable
from ca_server.render.resample import BILINEAR_TAP_CUDA
from ca_server.xp import Backend

if TYPE_CHECKING:  # keep_moving imports this module's seed geometry
    from ca_server.engines.keep_moving import KeepMovingProfile

BASE_RESOLUTION = 512

# field = max(field, patch) over one patch's window, wrapping, as numpy's integer-array update
# does it: one thread per field cell the window covers (n = rows x cols, each at most the field's
# side), so no two threads write one cell; where a patch is wider than the field, the last patch
# cell landing on a field cell wins, as numpy's last write does. NaN on either side wins, as in
# np.maximum.
STAMP_MAX = KernelSource(
    "stamp_max",
    r"""
extern "C" __global__ void stamp_max(
    float* __restrict__ field, const float* __restrict__ patch, const int top, const int left,
    const int patch_height, const int patch_width, const int cols, const int height,
    const int width, const long long n) {
    CA_FOR_EACH(i, n) {
        const int row = (int)(i / cols), col = (int)(i % cols);
        const int last_row = row + (patch_height - 1 - row) / height * height;
        const int last_col = col + (patch_width - 1 - col) / width * width;
        float* cell = field + (long long)ca_wrap(top + row, height) * width;
        cell += ca_wrap(left + col, width);
        const float value = *cell, stamp = patch[(long long)last_row * patch_width + last_col];
        *cell = value != value ? value : (stamp <= value ? value : stamp);
    }
}
""",
)

# field = clip(bilinear upscale of small, 0, 1) by integer factors, pixel centres aligned and
# wrapping (ndimage.zoom(order=1, mode="grid-wrap", grid_mode=True)): one thread per pixel.
GRID_UPSCALE = KernelSource(
    "grid_upscale",
    BILINEAR_TAP_CUDA
    + r"""
extern "C" __global__ void grid_upscale(
    float* __restrict__ field, const float* __restrict__ small, const int width,
    const int small_height, const int small_width, const int factor_y, const int factor_x,
    const long long n) {
    CA_FOR_EACH(i, n) {
        int top, bottom, left, right;
        float down, across;
        ca_bilinear_tap((int)(i / width), factor_y, small_height, &top, &bottom, &down);
        ca_bilinear_tap((int)(i % width), factor_x, small_width, &left, &right, &across);
        const float* upper_row = small + (long long)top * small_width;
        const float* lower_row = small + (long long)bottom * small_width;
        const float upper = upper_row[left] * (1.0f - across) + upper_row[right] * across;
        const float lower = lower_row[left] * (1.0f - across) + lower_row[right] * across;
        field[i] = ca_clip01(upper * (1.0f - down) + lower * down);
    }
}
""",
)


@dataclass(frozen=True)
class Breathing:
    """One slow sinusoidal modulation: value = base + amplitude * sin(phase), floored at minimum."""

    parameter: str
    amplitude: float  # absolute, in the parameter's units
    frequency_hz: float
    minimum: float = 0.0


class Engine(ABC):
    """A continuous CA on a torus: state on the device, stepped in place.

    Besides the state and the step, the class declares what the rest of the daemon treats
    differently per engine: the preset fields it takes (`preset_table`), its warm-up
    (`warmup_steps`, `warmup_factors`, `params_on_grid`), its health bands (`health_bands`) and
    its keep-moving extras (`keep_moving`).
    """

    name: ClassVar[str]
    preset_table: ClassVar[EngineTable]
    # How strongly its presets move with the beat by default, [0, 1] (ca_server.beat_pulse).
    beat_amount: ClassVar[float] = 0.5
    # Warm-up (ca_server.warmup): (grow steps without flow or extras, shape steps with them).
    warmup_steps: ClassVar[tuple[int, int]]
    # The grid downscales a warm-up may use, largest first; each also needs every kernel radius
    # to keep its scale relative to the frame (`kernel_radii_px`).
    warmup_factors: ClassVar[tuple[int, ...]] = (4, 2)
    # The keep-moving extras after each step; None: none.
    keep_moving: ClassVar[KeepMovingProfile | None] = None
    # The health policy's fields that differ from ca_server.health.HealthPolicy's defaults.
    health_overrides: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, backend: Backend, height: int, width: int, params: Mapping[str, Any]):
        if height < 16 or width < 16:
            raise ValueError(f"grid {width}x{height} is too small; use at least 16x16")
        self.backend, self.height, self.width = backend, height, width
        self.params = dict(params)
        self.res_scale = min(height, width) / BASE_RESOLUTION
        self._stamp_max = backend.hot_pass(StampMaxKernel, StampMaxPasses)(backend)
        self._upscale = backend.hot_pass(GridUpscaleKernel, GridUpscaleZoom)(backend)

    @staticmethod
    def kernel_radii_px(params: Mapping[str, Any], res_scale: float) -> tuple[float, ...]:
        """The radii in px of the kernels this engine builds at `res_scale` (short side over
        BASE_RESOLUTION), floors applied; empty where no kernel scales with the grid."""
        return ()

    @staticmethod
    def params_on_grid(params: Mapping[str, Any], factor: int) -> Mapping[str, Any]:
        """`params` for a warm-up grid `factor` times coarser that grows the same pattern
        relative to the frame; the same mapping where the engine scales itself (its radii)."""
        return params

    @classmethod
    def health_bands(cls, side_px: int) -> Mapping[str, Any]:
        """The health policy's overrides for a grid whose short side is `side_px`."""
        return cls.health_overrides

    @property
    @abstractmethod
    def world(self) -> Any:
        """The display field: (H, W) float32 in [0, 1] on the device, updated in place."""

    @property
    def fields(self) -> tuple[Any, ...]:
        """Every state field the flow advects, each (H, W) float32 on the device."""
        return (self.world,)

    @abstractmethod
    def step(self) -> None:
        """Advance one engine step in place."""

    @abstractmethod
    def seed(self, rng: np.random.Generator, kind: str, density: float) -> None:
        """Replace the state with a fresh seed of `kind` (validated by the preset loader)."""

    @abstractmethod
    def drop_cluster(self, rng: np.random.Generator) -> None:
        """Add 3-5 small seeds near the centre (the prototype's re-nucleation), in place."""

    def breathing(self) -> tuple[Breathing, ...]:
        """The engine's LFO modulations around the preset's values (docs/prototype.md, LFO)."""
        return ()

    def set_live(self, values: Mapping[str, float]) -> None:  # noqa: B027 - optional hook
        """Apply modulated scalar parameters (no kernel rebuild)."""

    def erase(self, keep: Any) -> None:
        """Fade the world to empty where `keep` ((H, W) float32 in [0, 1] on the device) is 0."""
        world = self.world
        world *= keep

    def load_fields(self, host_fields: Sequence[Any]) -> None:
        """Replace the state with `fields`-shaped device or host arrays (used after warm-up)."""
        xp = self.backend.xp
        for target, source in zip(self.fields, host_fields, strict=True):
            xp.copyto(target, xp.asarray(source, dtype=xp.float32))

    def load_upscaled(self, small_fields: Sequence[Any]) -> None:
        """Replace the state with `fields`-shaped device arrays from a grid an integer factor
        smaller on each side (a warm-up's), scaled up bilinearly with wrap, clipped to [0, 1]."""
        for target, small in zip(self.fields, small_fields, strict=True):
            self._upscale(small, target)

    def _upload(self, host: np.ndarray, target: Any) -> None:
        xp = self.backend.xp
        xp.copyto(target, xp.asarray(np.clip(host, 0.0, 1.0).astype(np.float32)))


# ---------------------------------------------------------------------------------------------
# Host seed geometry: (H, W) float32 numpy arrays in [0, 1].


def centred_radius(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dy, r): offsets from the frame centre normalised to the half-sides, and their norm.

    Each (H, W) float32 on the host; r = 1 on the inscribed ellipse, > 1 in the corners.
    """
    y = (np.arange(height, dtype=np.float32) + 0.5 - height / 2) / (height / 2)
    x = (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / (width / 2)
    dy, dx = np.meshgrid(y, x, indexing="ij")
    return dx, dy, np.sqrt(dx * dx + dy * dy)


def wrapped_distance2(height: int, width: int, cy: float, cx: float, xp: Any = np) -> Any:
    """Squared toroidal pixel distance of every cell to (cy, cx); (H, W) float32 made with array
    module `xp` (host by default, the device with `backend.xp`)."""
    y = xp.abs(xp.arange(height, dtype=xp.float32) - cy)
    x = xp.abs(xp.arange(width, dtype=xp.float32) - cx)
    y = xp.minimum(y, height - y)
    x = xp.minimum(x, width - x)
    return y[:, None] ** 2 + x[None, :] ** 2


def gaussian_blobs(
    rng: np.random.Generator,
    height: int,
    width: int,
    count: int,
    base_radius: float,
    scatter: float,
    density: float,
    radius_range: tuple[float, float] = (0.4, 2.0),
) -> np.ndarray:
    """`count` textured Gaussian blobs scattered around the centre, max-composited (prototype)."""
    out = np.zeros((height, width), np.float32)
    for _ in range(count):
        cy = height / 2 + rng.normal(0.0, scatter)
        cx = width / 2 + rng.normal(0.0, scatter)
        radius = base_radius * rng.uniform(*radius_range)
        amplitude = density * rng.uniform(0.5, 1.0)
        blob = np.exp(-wrapped_distance2(height, width, cy % height, cx % width) / (2 * radius**2))
        texture = rng.uniform(0.6, 1.0, (height, width)).astype(np.float32)
        np.maximum(out, amplitude * blob * texture, out=out)
    return out


def noisy_envelope(
    rng: np.random.Generator, height: int, width: int, radius: float, density: float
) -> np.ndarray:
    """Uniform noise x density under a Gaussian envelope of `radius` px at the centre."""
    envelope = np.exp(-wrapped_distance2(height, width, height / 2, width / 2) / (2 * radius**2))
    return (rng.uniform(0.0, 1.0, (height, width)) * density * envelope).astype(np.float32)


def ring_seed(
    rng: np.random.Generator, height: int, width: int, radius: float, thickness: float
) -> np.ndarray:
    """A textured ring of `radius` and `thickness` px around the centre."""
    distance = np.sqrt(wrapped_distance2(height, width, height / 2, width / 2))
    ring = np.exp(-0.5 * ((distance - radius) / (thickness / 2)) ** 2)
    return (ring * rng.uniform(0.6, 1.0, (height, width))).astype(np.float32)


def cluster_centres(rng: np.random.Generator, height: int, width: int) -> list[tuple[float, float]]:
    """3-5 points within +-4% of the side around a point within +-8% of the centre (prototype)."""
    side = min(height, width)
    cy = height / 2 + rng.uniform(-0.08, 0.08) * side
    cx = width / 2 + rng.uniform(-0.08, 0.08) * side
    count = int(rng.integers(3, 6))
    return [
        (cy + rng.uniform(-0.04, 0.04) * side, cx + rng.uniform(-0.04, 0.04) * side)
        for _ in range(count)
    ]


class StampMaxKernel:
    """Stamps as STAMP_MAX launches, one per patch (patches may overlap), from one upload."""

    def __init__(self, backend: Backend) -> None:
        self._xp = backend.xp
        self._launch = backend.fused_kernel(STAMP_MAX)

    def __call__(self, field: Any, stamps: Sequence[tuple[float, float, np.ndarray]]) -> None:
        """field = max(field, patch) on each patch's window centred at (cy, cx), wrapping.

        `field`: (H, W) float32 on the device, C-contiguous, changed in place. `stamps`: (cy,
        cx, patch) with `patch` a small (h, w) host array. The patches cross to the device in one
        upload, not one per seed (about thirty in a revive frame, each its own staging copy,
        transfer and event).
        """
        height, width = field.shape
        flat = np.concatenate([patch.ravel() for _, _, patch in stamps]).astype(np.float32)
        patches = self._xp.asarray(flat)
        start = 0
        for cy, cx, patch in stamps:
            ph, pw = patch.shape
            top, left = round(cy) - ph // 2, round(cx) - pw // 2
            on_device = patches[start : start + ph * pw]
            rows, cols = min(ph, height), min(pw, width)
            window = (top, left, ph, pw, cols, height, width)
            self._launch(rows * cols, field, on_device, *window)
            start += ph * pw


class StampMaxPasses:
    """Stamps as integer-array indexing on the window of each patch (numpy)."""

    def __init__(self, backend: Backend) -> None:
        self._xp = backend.xp

    def __call__(self, field: Any, stamps: Sequence[tuple[float, float, np.ndarray]]) -> None:
        """As `StampMaxKernel.__call__`."""
        xp = self._xp
        height, width = field.shape
        flat = np.concatenate([patch.ravel() for _, _, patch in stamps]).astype(np.float32)
        patches = xp.asarray(flat)
        start = 0
        for cy, cx, patch in stamps:
            ph, pw = patch.shape
            top, left = round(cy) - ph // 2, round(cx) - pw // 2
            rows = xp.arange(top, top + ph) % height  # the window's indices, made on the device
            cols = xp.arange(left, left + pw) % width
            index = xp.ix_(rows, cols)
            on_device = patches[start : start + ph * pw].reshape(ph, pw)
            field[index] = xp.maximum(field[index], on_device)
            start += ph * pw


class GridUpscaleKernel:
    """The upscale as one GRID_UPSCALE launch straight into the field."""

    def __init__(self, backend: Backend) -> None:
        self._launch = backend.fused_kernel(GRID_UPSCALE)

    def __call__(self, small: Any, field: Any) -> None:
        """field = clip(upscale(small), 0, 1); `small` (h, w) and `field` (h·fy, w·fx) float32
        on the device, C-contiguous, for integer factors fy, fx."""
        small_height, small_width = small.shape
        height, width = field.shape
        factors = (height // small_height, width // small_width)
        self._launch(field.size, field, small, width, small_height, small_width, *factors)


class GridUpscaleZoom:
    """The upscale as the backend's `ndimage.zoom` and a clip (numpy)."""

    def __init__(self, backend: Backend) -> None:
        self._xp, self._ndimage = backend.xp, backend.ndimage

    def __call__(self, small: Any, field: Any) -> None:
        """As `GridUpscaleKernel.__call__`."""
        xp = self._xp
        factors = (field.shape[0] / small.shape[0], field.shape[1] / small.shape[1])
        big = self._ndimage.zoom(small, factors, order=1, mode="grid-wrap", grid_mode=True)
        xp.copyto(field, xp.asarray(xp.clip(big, 0.0, 1.0), dtype=xp.float32))


def gaussian_patch(radius: float, amplitude: float) -> np.ndarray:
    """A (2*ceil(3r)+1)^2 Gaussian bump of `radius` px and peak `amplitude`; host float32."""
    half = int(np.ceil(3 * radius))
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    return (amplitude * np.exp(-(x * x + y * y) / (2 * radius**2))).astype(np.float32)


def disc_patch(rng: np.random.Generator, radius: float, low: float, high: float) -> np.ndarray:
    """A filled disc of `radius` px with uniform values low..high; host float32."""
    half = int(np.ceil(radius)) + 1
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    inside = (x * x + y * y) <= radius * radius
    return (inside * rng.uniform(low, high, inside.shape)).astype(np.float32)
