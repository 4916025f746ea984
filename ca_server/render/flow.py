"""Flow-field advection: drift a scalar field along a mix of seven fixed vector fields each step.

The seven unit fields (radial, rotate, swirl, bubble, ring, vortex, vertical) are built on the
host over coordinates normalised by half the shorter side, by `set_strengths` alone (and then
dropped), which mixes them into one velocity field, v = 0.8 px × Σ strength_k · field_k, and its
semi-Lagrangian backward trace. On numpy the trace is, for every
pixel, the flat index of the top-left source cell in a wrap-padded copy of the field plus the two
bilinear weights, and `advect` is a pad copy, four gathers with one index array and a few
multiply-adds — about a tenth of `map_coordinates(order=1)` on the CPU and the same result as
`mode="grid-wrap"` (toroidal bilinear). Where fused kernels exist (the GPU) only the displacement
−v goes to the device and `FLOW_ADVECT` does the whole step in one launch: it splits the
displacement into floor and fraction itself and reads the four taps straight from the field with
periodic indexing, so no pad copy, index array or taps are held. The two are `FlowGather` and
`FlowAdvectKernel`, one of them chosen when the advector is built.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ca_server.fused import KernelSource
from ca_server.xp import Backend

FLOW_FIELD_NAMES: tuple[str, ...] = (
    "radial",
    "rotate",
    "swirl",
    "bubble",
    "ring",
    "vortex",
    "vertical",
)
# The prototype's tuned step: "0.3 too slow, 2.0 explodes".
DEFAULT_PIXELS_PER_STEP = 0.8
# Strengths below this are treated as zero (the mix skips them; all of them: advection is off).
STRENGTH_EPSILON = 1e-3
# Pixels per row band of `advect` on the CPU: its four taps and two weights fit in L2.
CPU_BAND_PIXELS = 32768

# One advection step, out of place (a pixel reads four neighbours another thread may be writing).
# displacement is (2, H, W): [0] = dy, [1] = dx, the backward trace −v. Floor, fraction and the
# blend follow the numpy path operation for operation, so only FMA contraction differs.
FLOW_ADVECT = KernelSource(
    "flow_advect",
    r"""
extern "C" __global__ void flow_advect(
    float* __restrict__ out, const float* __restrict__ field,
    const float* __restrict__ displacement, const int height, const int width,
    const long long n) {
    CA_FOR_EACH(i, n) {
        const int y = (int)(i / width);
        const int x = (int)(i - (long long)y * width);
        const float shift_y = displacement[i], shift_x = displacement[n + i];
        const float whole_y = floorf(shift_y), whole_x = floorf(shift_x);
        const float weight_y = shift_y - whole_y, weight_x = shift_x - whole_x;
        const int top = ca_wrap(y + (int)whole_y, height);
        const int left = ca_wrap(x + (int)whole_x, width);
        const int bottom = top + 1 == height ? 0 : top + 1;
        const int right = left + 1 == width ? 0 : left + 1;
        const long long top_row = (long long)top * width, bottom_row = (long long)bottom * width;
        float top_left = field[top_row + left], top_right = field[top_row + right];
        float bottom_left = field[bottom_row + left], bottom_right = field[bottom_row + right];
        top_right = (top_right - top_left) * weight_x;
        top_left = top_left + top_right;
        bottom_right = (bottom_right - bottom_left) * weight_x;
        bottom_left = bottom_left + bottom_right;
        bottom_left = (bottom_left - top_left) * weight_y;
        out[i] = top_left + bottom_left;
    }
}
""",
)


# Building the fields costs ~1 s at 1024² on a 2-core CPU (~0.25 s at 512²), and every organism
# (each preset change, on its warm-up grid and at full size) needs them: kept per size, they cost
# that once per daemon, before its first frame, instead of a frozen frame in a change. A daemon
# uses at most three sizes (the frame and two warm-up grids): 77 MB of host memory at 1024².
@functools.lru_cache(maxsize=3)
def build_flow_fields(height: int, width: int) -> np.ndarray:
    """The seven unit fields: (7, 2, H, W) float32 on the host, [k, 0] = vy (down), [k, 1] = vx.

    Order follows FLOW_FIELD_NAMES. Coordinates run from the frame centre in units of half the
    shorter side, so fields are round on non-square frames; magnitudes are ≤ 1 inside the unit
    circle (swirl keeps growing into the corners). Shared per size, so read-only.
    """
    half_side = min(height, width) / 2.0
    dy = ((np.arange(height) + 0.5 - height / 2.0) / half_side)[:, None] * np.ones((1, width))
    dx = ((np.arange(width) + 0.5 - width / 2.0) / half_side)[None, :] * np.ones((height, 1))
    dist = np.sqrt(dy * dy + dx * dx)
    safe = np.maximum(dist, 1e-9)
    radial_y, radial_x = dy / safe, dx / safe
    tangent_y, tangent_x = radial_x, -radial_y  # (−r̂y, r̂x) in (x, y) order, stored as (y, x)
    inside = np.clip(dist, 0.0, 1.0)
    swirl_y = tangent_y * (1 - inside / 2) + radial_y * inside / 2
    swirl_x = tangent_x * (1 - inside / 2) + radial_x * inside / 2
    swirl_norm = np.maximum(np.sqrt(swirl_y**2 + swirl_x**2), 1e-9)
    bubble = np.exp(-(dist**2) / (2 * 0.3**2))
    ring = np.sin(6 * math.pi * dist)
    fields = np.empty((len(FLOW_FIELD_NAMES), 2, height, width), dtype=np.float32)
    fields[0] = radial_y, radial_x
    fields[1] = tangent_y * inside, tangent_x * inside
    fields[2] = swirl_y / swirl_norm * dist, swirl_x / swirl_norm * dist
    fields[3] = radial_y * bubble, radial_x * bubble
    fields[4] = radial_y * ring, radial_x * ring
    fields[5] = tangent_y * inside**2, tangent_x * inside**2
    fields[6, 0], fields[6, 1] = 1.0, 0.0
    fields.flags.writeable = False
    return fields


class FlowAdvector:
    """Semi-Lagrangian bilinear advection with wrap along a mix of the seven flow fields.

    Works on (height, width) float32 fields on the backend's device. Starts inactive (all
    strengths 0) until `set_strengths` is called with a non-zero mix. `pixels_per_step` (the
    prototype's 0.8 px at any size; pass 0.8 × size/512 for resolution-independent motion) is
    read by `set_strengths`, so a change takes effect at the next call. Device memory at H×W:
    none while inactive; with fused kernels 12 bytes a pixel once active (displacement and a
    scratch frame); on numpy the index, weights, taps and padded copy (~40 bytes a pixel).
    """

    def __init__(
        self,
        backend: Backend,
        height: int,
        width: int,
        *,
        pixels_per_step: float = DEFAULT_PIXELS_PER_STEP,
    ) -> None:
        if height < 2 or width < 2:
            raise ValueError(f"flow field {height}x{width} is too small; both sides must be ≥ 2")
        self._backend = backend
        xp = backend.xp
        self._xp = xp
        self.height, self.width = height, width
        self.pixels_per_step = float(pixels_per_step)
        self._trace = backend.hot_pass(FlowAdvectKernel, FlowGather)(backend, height, width)
        self.strengths: dict[str, float] = dict.fromkeys(FLOW_FIELD_NAMES, 0.0)
        self.active = False

    def set_strengths(self, strengths: Mapping[str, float]) -> None:
        """Replace the mix: `strengths` maps names from FLOW_FIELD_NAMES to values in [-1, 1].

        Names left out are 0. An unknown name or a value outside [-1, 1] is a ValueError. The
        combined velocity and its backward-trace indices are computed here, once, not per step.
        """
        checked = dict.fromkeys(FLOW_FIELD_NAMES, 0.0)
        for name, value in strengths.items():
            if name not in checked:
                raise ValueError(
                    f"unknown flow field {name!r}; valid names: {', '.join(FLOW_FIELD_NAMES)}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"flow strength {name!r} must be a number, got {value!r}")
            if not -1.0 <= value <= 1.0:
                raise ValueError(f"flow strength {name!r} is {value!r}; it must be in [-1, 1]")
            checked[name] = float(value)
        self.strengths = checked
        used = [(k, s) for k, s in enumerate(checked.values()) if abs(s) >= STRENGTH_EPSILON]
        self.active = bool(used)
        if self.active:
            self._prepare_trace(used)

    def _prepare_trace(self, used: list[tuple[int, float]]) -> None:
        height, width = self.height, self.width
        # Backward trace: the value arriving at p comes from p − v, i.e. displacement −v.
        fields = build_flow_fields(height, width)
        displacement = np.zeros((2, height, width), dtype=np.float32)
        for k, strength in used:
            displacement -= (self.pixels_per_step * strength) * fields[k]
        margin = int(np.abs(np.floor(displacement)).max()) + 1
        if margin > min(height, width):
            raise ValueError("flow displacement exceeds the frame size; lower pixels_per_step")
        self._trace.prepare(displacement)

    def advect(self, field: Any, out: Any = None) -> Any:
        """One advection step of `field` ((H, W) float32, device) -> (H, W) float32 on the device.

        Writes into `out` when given (it may be `field` itself); otherwise returns a new array.
        While inactive this is a copy. Bilinear weights sum to 1, so a uniform field stays uniform
        and, for divergence-free mixes, the total is nearly conserved.
        """
        xp = self._xp
        if tuple(field.shape) != (self.height, self.width):
            raise ValueError(
                f"field has shape {tuple(field.shape)}; expected ({self.height}, {self.width})"
            )
        if out is None:
            out = xp.empty((self.height, self.width), dtype=xp.float32)
        if not self.active:
            xp.copyto(out, field)
            return out
        return self._trace.advect(field, out)


class FlowAdvectKernel:
    """Advection as one `FLOW_ADVECT` launch from the displacement alone: 12 bytes a pixel
    (displacement and a scratch frame), allocated on the first active mix."""

    def __init__(self, backend: Backend, height: int, width: int) -> None:
        self._xp, self._height, self._width = backend.xp, height, width
        self._launch = backend.fused_kernel(FLOW_ADVECT)
        # (2, H, W) and (H, W) float32 on the device; an idle flow holds neither.
        self._displacement: Any = None
        self._scratch: Any = None

    def prepare(self, displacement: np.ndarray) -> None:
        """Take the backward-trace displacement −v: (2, H, W) float32 on the host, in px."""
        xp = self._xp
        self._displacement = xp.asarray(displacement)
        if self._scratch is None:
            self._scratch = xp.empty((self._height, self._width), dtype=xp.float32)

    def advect(self, field: Any, out: Any) -> Any:
        """One step of `field` into `out` ((H, W) float32, device; `out` may be `field`)."""
        xp = self._xp
        if field.dtype != xp.float32 or not field.flags.c_contiguous:
            field = xp.ascontiguousarray(field, dtype=xp.float32)
        # The kernel gathers neighbours, so it cannot write over its input. In place (the
        # organism's only call) it writes the scratch frame and copyto brings it back: for
        # contiguous same-dtype arrays CuPy's copyto is a device-to-device memcpy, cheaper to
        # issue than a kernel, and the alternatives (swapping buffers) would have to reach into
        # the engine that owns `field`.
        direct = out.flags.c_contiguous and not xp.may_share_memory(out, field)
        target = out if direct else self._scratch
        self._launch(field.size, target, field, self._displacement, self._height, self._width)
        if not direct:
            xp.copyto(out, target)
        return out


class FlowGather:
    """Advection as numpy passes: a wrap-padded copy, four gathers with one flat index array and
    the bilinear blend, in row bands that stay in the CPU's cache (≈ 2× faster at 1024²)."""

    def __init__(self, backend: Backend, height: int, width: int) -> None:
        xp = backend.xp
        self._backend, self._xp, self._height, self._width = backend, xp, height, width
        shape = (height, width)
        self._index = xp.empty(shape, dtype=xp.int64)
        self._weight_y = xp.empty(shape, dtype=xp.float32)
        self._weight_x = xp.empty(shape, dtype=xp.float32)
        band_rows = max(1, min(height, CPU_BAND_PIXELS // width))
        self._bands = [(top, min(top + band_rows, height)) for top in range(0, height, band_rows)]
        self._taps = [xp.empty((band_rows, width), dtype=xp.float32) for _ in range(4)]
        self._margin = 0
        self._padded: Any = None

    def prepare(self, displacement: np.ndarray) -> None:
        """As `FlowAdvectKernel.prepare`: the flat source indices and the bilinear weights."""
        xp, height, width = self._xp, self._height, self._width
        # Floor and fraction of the small displacement itself (not of y − v), which keeps the
        # weights exact to float32 even at large coordinates.
        whole = np.floor(displacement)
        margin = int(np.abs(whole).max()) + 1
        displacement, whole = xp.asarray(displacement), xp.asarray(whole)
        xp.subtract(displacement[0], whole[0], out=self._weight_y)
        xp.subtract(displacement[1], whole[1], out=self._weight_x)
        whole_int = whole.astype(xp.int64)
        if margin != self._margin:
            self._margin = margin
            self._padded = xp.empty((height + 2 * margin, width + 2 * margin), dtype=xp.float32)
        padded_width = width + 2 * margin
        rows = xp.arange(height, dtype=xp.int64)[:, None] + margin
        cols = xp.arange(width, dtype=xp.int64)[None, :] + margin
        xp.copyto(self._index, (rows + whole_int[0]) * padded_width + cols + whole_int[1])

    def advect(self, field: Any, out: Any) -> Any:
        """As `FlowAdvectKernel.advect`."""
        xp = self._xp
        self._fill_padded(field)
        flat = self._padded.reshape(-1)
        padded_width = self._padded.shape[1]
        sources = (flat, flat[1:], flat[padded_width:], flat[padded_width + 1 :])
        for top, bottom in self._bands:
            rows = bottom - top
            index = self._index[top:bottom]
            weight_x, weight_y = self._weight_x[top:bottom], self._weight_y[top:bottom]
            taps = [tap[:rows] for tap in self._taps]
            for source, tap in zip(sources, taps, strict=True):
                self._backend.gather(source, index, out=tap)
            top_left, top_right, bottom_left, bottom_right = taps
            top_right -= top_left
            top_right *= weight_x
            top_left += top_right
            bottom_right -= bottom_left
            bottom_right *= weight_x
            bottom_left += bottom_right
            bottom_left -= top_left
            bottom_left *= weight_y
            xp.add(top_left, bottom_left, out=out[top:bottom])
        return out

    def _fill_padded(self, field: Any) -> None:
        margin, height, width = self._margin, self._height, self._width
        padded = self._padded
        padded[margin : margin + height, margin : margin + width] = field
        body = padded[margin : margin + height]
        body[:, :margin] = body[:, width : width + margin]
        body[:, margin + width :] = body[:, margin : 2 * margin]
        padded[:margin] = padded[height : height + margin]
        padded[margin + height :] = padded[margin : 2 * margin]
