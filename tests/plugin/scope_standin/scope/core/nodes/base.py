"""Stand-in for `scope.core.nodes.base`: the node base class pipelines derive from."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel


class Requirements(BaseModel):
    """How many input frames a chunked node wants per call."""

    input_size: int


class Node:
    """Base of every graph node; a pipeline is a node whose config class is not None."""

    node_type_id: ClassVar[str] = ""

    def __init__(self, node_id: str = "", config: dict[str, Any] | None = None):
        self.node_id = node_id
        self.config = config or {}

    @classmethod
    def get_config_class(cls):
        return None

    def prepare(self, **kwargs) -> Requirements | None:
        return None

    def __call__(self, **kwargs) -> dict[str, Any]:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Never called for pipelines by Scope."""
