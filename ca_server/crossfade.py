"""The crossfade between two presets' RGB frames: an integer mix, one fused launch on the GPU.

`out = (old · (256 − weight) + new · weight) >> 8` per colour byte, with `weight` in [0, 256]:
0 is the old picture, 256 the new one. numpy mixes in uint16 scratch with the same integer
arithmetic, so both paths give the same bytes.
"""

from __future__ import annotations

from typing import Any

from ca_server.fused import KernelSource
from ca_server.xp import Backend

CROSSFADE_BLEND = KernelSource(
    "crossfade_blend",
    r"""
extern "C" __global__ void crossfade_blend(
    unsigned char* __restrict__ out, const unsigned char* __restrict__ old_rgb,
    const unsigned char* __restrict__ new_rgb, const int weight, const long long n) {
    CA_FOR_EACH(i, n) {
        out[i] = (unsigned char)((old_rgb[i] * (256 - weight) + new_rgb[i] * weight) >> 8);
    }
}
""",
)


class Crossfade:
    """The two pictures one fade renders into, and their blend.

    The buffers are (H, W, 3) uint8 on the backend's device (plus two uint16 scratch frames on
    numpy), made on a fade's first frame and held until `release`, so a fade allocates once and
    steady frames hold none of it.
    """

    def __init__(self, backend: Backend, height: int, width: int) -> None:
        self._xp = backend.xp
        self._shape = (height, width, 3)
        self._fused_blend = backend.fused_kernel(CROSSFADE_BLEND)
        self._buffers: tuple[Any, ...] | None = None

    def pictures(self) -> tuple[Any, Any]:
        """(old, new): the buffers the outgoing and the incoming preset render into."""
        if self._buffers is None:
            xp, shape = self._xp, self._shape
            wide = (
                ()
                if self._fused_blend
                else (xp.empty(shape, xp.uint16), xp.empty(shape, xp.uint16))
            )
            self._buffers = (xp.empty(shape, xp.uint8), xp.empty(shape, xp.uint8), *wide)
        return self._buffers[0], self._buffers[1]

    def blend(self, weight: int, out: Any = None) -> Any:
        """The pictures mixed `weight`/256 of the way to the new one, into `out` if given."""
        xp = self._xp
        old_rgb, new_rgb = self.pictures()
        if out is None:
            out = xp.empty(self._shape, xp.uint8)
        if self._fused_blend is not None:
            self._fused_blend(out.size, out, old_rgb, new_rgb, weight)
            return out
        mix, scratch = self._buffers[2:]  # type: ignore[index]
        xp.copyto(mix, old_rgb, casting="unsafe")
        mix *= 256 - weight
        xp.copyto(scratch, new_rgb, casting="unsafe")
        scratch *= weight
        mix += scratch
        mix >>= 8
        xp.copyto(out, mix, casting="unsafe")
        return out

    def release(self) -> None:
        """Let the fade's buffers go (the fade ended or was dropped)."""
        self._buffers = None
