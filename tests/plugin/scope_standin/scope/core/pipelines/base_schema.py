"""Stand-in for `scope.core.pipelines.base_schema`: the config base and its UI helpers.

Same names, signatures and JSON-schema output shape as Scope documents: `ui_field_config`
returns `{"ui": {...}}` for `json_schema_extra`; configs forbid extra fields; identity and
capabilities are ClassVars; the common inherited fields are present.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


def ui_field_config(
    *,
    order: int | None = None,
    component: str | None = None,
    modes: list[str] | None = None,
    is_load_param: bool = False,
    label: str | None = None,
    category: Literal["configuration", "input"] | None = None,
    modulatable: bool = False,
    modulatable_min: float | None = None,
    modulatable_max: float | None = None,
) -> dict[str, Any]:
    ui: dict[str, Any] = {"category": category or "configuration", "is_load_param": is_load_param}
    optional = {
        "order": order,
        "component": component,
        "modes": modes,
        "label": label,
        "modulatable_min": modulatable_min,
        "modulatable_max": modulatable_max,
    }
    ui.update({key: value for key, value in optional.items() if value is not None})
    if modulatable:
        ui["modulatable"] = True
    return {"ui": ui}


class UsageType(str, Enum):  # noqa: UP042  (Scope declares it so)
    PREPROCESSOR = "preprocessor"
    POSTPROCESSOR = "postprocessor"


class ModeDefaults(BaseModel):
    """Per-mode overrides; only these fields may be overridden."""

    model_config = ConfigDict(extra="forbid")

    default: bool = False
    height: int | None = None
    width: int | None = None
    denoising_steps: list[int] | None = None
    noise_scale: float | None = None
    noise_controller: bool | None = None
    input_size: int | None = None
    default_temporal_interpolation_steps: int | None = None


class BasePipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline_id: ClassVar[str] = "base"
    pipeline_name: ClassVar[str] = "Base Pipeline"
    pipeline_description: ClassVar[str] = "Base pipeline configuration"
    pipeline_version: ClassVar[str] = "1.0.0"
    supports_prompts: ClassVar[bool] = True
    usage: ClassVar[list[UsageType]] = []
    inputs: ClassVar[list[str]] = ["video"]
    outputs: ClassVar[list[str]] = ["video"]
    modes: ClassVar[dict[str, ModeDefaults]] = {"text": ModeDefaults(default=True)}

    height: int = Field(default=512, ge=1, description="Output height in pixels")
    width: int = Field(default=512, ge=1, description="Output width in pixels")
    manage_cache: bool = True
    base_seed: int = Field(default=42, ge=0)
    denoising_steps: list[int] | None = None
    noise_scale: float | None = None
    noise_controller: bool | None = None
    input_size: int | None = 1
    ref_images: list[str] | None = None
    vace_context_scale: float = Field(default=1.0, ge=0.0, le=2.0)

    @classmethod
    def get_supported_modes(cls) -> list[str]:
        return list(cls.modes)
