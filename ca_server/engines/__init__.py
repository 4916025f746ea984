"""The CA engines: Lenia, SmoothLife, MNCA and Gray-Scott behind one `Engine` interface.

`create_engine(name, backend, height, width, params)` builds one from a preset's `engine` name and
validated `[engine]` table; the registry maps names to classes, and an unknown name lists the
valid ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ca_server.engines.base import BASE_RESOLUTION, Breathing, Engine
from ca_server.engines.gray_scott import GrayScottEngine
from ca_server.engines.lenia import LeniaEngine
from ca_server.engines.mnca import MNCAEngine
from ca_server.engines.smoothlife import SmoothLifeEngine
from ca_server.xp import Backend

ENGINE_CLASSES: Mapping[str, type[Engine]] = {
    "lenia": LeniaEngine,
    "smoothlife": SmoothLifeEngine,
    "mnca": MNCAEngine,
    "gray_scott": GrayScottEngine,
}

__all__ = [
    "BASE_RESOLUTION",
    "ENGINE_CLASSES",
    "Breathing",
    "Engine",
    "GrayScottEngine",
    "LeniaEngine",
    "MNCAEngine",
    "SmoothLifeEngine",
    "create_engine",
]


def create_engine(
    name: str, backend: Backend, height: int, width: int, params: Mapping[str, Any]
) -> Engine:
    """A new engine `name` on `backend` with a zero state; call `seed()` before stepping."""
    try:
        engine_class = ENGINE_CLASSES[name]
    except KeyError:
        raise ValueError(
            f"unknown engine {name!r}; valid engines: {', '.join(ENGINE_CLASSES)}"
        ) from None
    return engine_class(backend, height, width, params)
