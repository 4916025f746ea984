"""Stand-in for `scope.core.nodes`."""

from scope.core.nodes.base import Node, Requirements

__all__ = ["Node", "Requirements"]
