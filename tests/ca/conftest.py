"""Stand-ins for the renderer and flow, for Simulation logic tests that need no colour or drift.

The alive/moving tests and the render tests use the real `ca_server.render` classes; these
stand-ins only isolate the Simulation's bookkeeping (speed, warm-up, crossfade, determinism).
Also the `gpu` fixture the `gpu`-marked tests share.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from ca_server.xp import BackendUnavailableError, cupy_backend


class StillFlow:
    """A FlowAdvector stand-in that never moves anything."""

    active = False

    def __init__(self, backend: Any, height: int, width: int, **_: Any) -> None:
        self.strengths: dict[str, float] = {}

    def set_strengths(self, strengths: Any) -> None:
        self.strengths = dict(strengths)

    def advect(self, field: Any, out: Any = None) -> Any:
        return field


class GrayRenderer:
    """An IridescentRenderer stand-in: grey = world x 255 x brightness."""

    def __init__(self, backend: Any, height: int, width: int, **_: Any) -> None:
        self.xp = backend.xp
        self.hue_shift, self.brightness, self.thickness = 0.0, 1.0, 0.0
        self.settings = types.SimpleNamespace(bloom=0.7)  # read by the beat's bloom pulse

    def update(self, settings: Any) -> None:
        self.settings = types.SimpleNamespace(**{**vars(self.settings), **settings})

    def render(self, world: Any, out: Any = None) -> Any:
        xp = self.xp
        grey = xp.clip(world * (255.0 * self.brightness), 0, 255).astype(xp.uint8)
        rgb = xp.repeat(grey[:, :, None], 3, axis=2)
        if out is None:
            return rgb
        xp.copyto(out, rgb)
        return out

    def prepare(self) -> None:
        pass

    def reset(self) -> None:
        pass


@pytest.fixture
def logic_only() -> dict[str, Any]:
    """Keyword arguments that give a Simulation the stand-in flow and renderer."""
    return {"flow_factory": StillFlow, "renderer_factory": GrayRenderer}


@pytest.fixture(scope="module")
def gpu() -> Any:
    """The CuPy backend on GPU 0 for the `gpu`-marked tests; skips them where there is none."""
    try:
        return cupy_backend(0)
    except BackendUnavailableError as exc:
        pytest.skip(f"no GPU backend: {exc}")
