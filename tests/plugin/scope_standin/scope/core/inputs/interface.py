"""Stand-in for `scope.core.inputs.interface`: the input-source base class and its info record."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np


@dataclass
class InputSourceInfo:
    name: str
    identifier: str
    metadata: dict | None = None


class InputSource(ABC):
    """A frame source polled by Scope's receiver thread through `receive_frame`."""

    source_id: ClassVar[str]
    source_name: ClassVar[str]
    source_description: ClassVar[str]

    @classmethod
    def is_available(cls) -> bool:
        return True

    @abstractmethod
    def list_sources(self, timeout_ms: int = 5000) -> list[InputSourceInfo]: ...

    @abstractmethod
    def connect(self, identifier: str) -> bool: ...

    @abstractmethod
    def receive_frame(self, timeout_ms: int = 100) -> np.ndarray | None: ...

    @abstractmethod
    def disconnect(self): ...

    def get_source_resolution(
        self, identifier: str, timeout_ms: int = 5000
    ) -> tuple[int, int] | None:
        """(width, height) of source `identifier`, or None (Scope's API then answers 408)."""
        return None

    def close(self):
        self.disconnect()
