"""Stand-in for `scope.core.pipelines.interface`: `Pipeline` is an alias of `Node`."""

from scope.core.nodes.base import Node, Requirements

Pipeline = Node

__all__ = ["Pipeline", "Requirements"]
