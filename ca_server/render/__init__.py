"""Rendering on the engine's device: iridescent colour, bloom, flow-field advection, containment.

The public surface: `IridescentRenderer` ((H, W) float32 density -> (H, W, 3) uint8 RGB, same
device), `FlowAdvector` (per-step drift along the seven flow fields), `radial_containment` (the
per-step centre-keeping fade), the name tuples for presets and UIs, and `RenderSettings` (the
validated `[render]` table). Everything takes a `ca_server.xp.Backend`; nothing here imports
CuPy or SciPy itself.
"""

from ca_server.render.flow import FLOW_FIELD_NAMES, FlowAdvector, build_flow_fields
from ca_server.render.iridescent import IridescentRenderer
from ca_server.render.masks import (
    LENIA_CONTAINMENT,
    MNCA_CONTAINMENT,
    SMOOTHLIFE_CONTAINMENT,
    radial_containment,
    radial_distance,
)
from ca_server.render.palettes import PALETTE_NAMES
from ca_server.render.settings import RenderSettings

__all__ = [
    "FLOW_FIELD_NAMES",
    "LENIA_CONTAINMENT",
    "MNCA_CONTAINMENT",
    "PALETTE_NAMES",
    "SMOOTHLIFE_CONTAINMENT",
    "FlowAdvector",
    "IridescentRenderer",
    "RenderSettings",
    "build_flow_fields",
    "radial_containment",
    "radial_distance",
]
