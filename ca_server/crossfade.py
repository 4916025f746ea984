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
        self._blend_type = backend.hot_pass(CrossfadeBlendKernel, CrossfadeBlendPasses)
        self._backend, self._shape = backend, (height, width, 3)
        self._blend: CrossfadeBlendKernel | CrossfadeBlendPasses | None = None

    def pictures(self) -> tuple[Any, Any]:
        """(old, new): the buffers the outgoing and the incoming preset render into."""
        if self._blend is None:
            self._blend = self._blend_type(self._backend, self._shape)
        return self._blend.old_rgb, self._blend.new_rgb

    def blend(self, weight: int, out: Any = None) -> Any:
        """The pictures mixed `weight`/256 of the way to the new one, into `out` if given."""
        self.pictures()  # makes the buffers on a fade's first frame
        if out is None:
            out = self._backend.xp.empty(self._shape, self._backend.xp.uint8)
        self._blend(out, weight)
        return out

    def release(self) -> None:
        """Let the fade's buffers go (the fade ended or was dropped)."""
        self._blend = None


class CrossfadeBlendKernel:
    """The two pictures and their blend as one `CROSSFADE_BLEND` launch."""

    def __init__(self, backend: Backend, shape: tuple[int, int, int]) -> None:
        xp = backend.xp
        self._launch = backend.fused_kernel(CROSSFADE_BLEND)
        self.old_rgb, self.new_rgb = xp.empty(shape, xp.uint8), xp.empty(shape, xp.uint8)

    def __call__(self, out: Any, weight: int) -> None:
        """out = (old · (256 − weight) + new · weight) >> 8; `out` (H, W, 3) uint8, device."""
        self._launch(out.size, out, self.old_rgb, self.new_rgb, weight)


class CrossfadeBlendPasses:
    """The two pictures and their blend as numpy passes in two uint16 scratch frames."""

    def __init__(self, backend: Backend, shape: tuple[int, int, int]) -> None:
        xp = backend.xp
        self._xp = xp
        self.old_rgb, self.new_rgb = xp.empty(shape, xp.uint8), xp.empty(shape, xp.uint8)
        self._mix, self._scratch = xp.empty(shape, xp.uint16), xp.empty(shape, xp.uint16)

    def __call__(self, out: Any, weight: int) -> None:
        """As `CrossfadeBlendKernel.__call__`."""
        xp, mix, scratch = self._xp, self._mix, self._scratch
        xp.copyto(mix, self.old_rgb, casting="unsafe")
        mix *= 256 - weight
        xp.copyto(scratch, self.new_rgb, casting="unsafe")
        scratch *= weight
        mix += scratch
        mix >>= 8
        xp.copyto(out, mix, casting="unsafe")
