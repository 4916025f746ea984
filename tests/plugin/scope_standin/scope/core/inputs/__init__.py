"""Stand-in for `scope.core.inputs`."""

from scope.core.inputs.interface import InputSource, InputSourceInfo

__all__ = ["InputSource", "InputSourceInfo"]
