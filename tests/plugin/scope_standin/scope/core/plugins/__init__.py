"""Stand-in for `scope.core.plugins`: discovery through the `scope` entry-point group.

`load_plugins()` does what Scope's plugin manager does at startup: load every entry point of
group `scope` (a failing load is recorded and skipped), register the modules with pluggy, fire
`register_nodes` then `register_pipelines`, and sort what `register` receives: InputSource
subclasses by `source_id`, everything else by `node_type_id` or its config's `pipeline_id`.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any

import pluggy

from scope.core.inputs.interface import InputSource
from scope.core.plugins.hookspecs import ScopeHookSpec, hookimpl

__all__ = ["LoadedPlugins", "hookimpl", "load_plugins"]


@dataclass
class LoadedPlugins:
    """The registries a startup fills: pipelines by id, input sources by id, failed loads."""

    pipelines: dict[str, type] = field(default_factory=dict)
    input_sources: dict[str, type] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    modules: dict[str, Any] = field(default_factory=dict)


def load_plugins(group: str = "scope") -> LoadedPlugins:
    loaded = LoadedPlugins()
    manager = pluggy.PluginManager("scope")
    manager.add_hookspecs(ScopeHookSpec)
    for entry_point in importlib.metadata.entry_points(group=group):
        try:
            module = entry_point.load()
        except Exception as exc:
            loaded.failed[entry_point.name] = f"{type(exc).__name__}: {exc}"
            continue
        loaded.modules[entry_point.name] = module
        manager.register(module, name=entry_point.name)

    def register(cls: type) -> None:
        if isinstance(cls, type) and issubclass(cls, InputSource):
            if getattr(cls, "source_id", ""):
                loaded.input_sources[cls.source_id] = cls
            return
        node_id = getattr(cls, "node_type_id", "") or cls.get_config_class().pipeline_id
        loaded.pipelines[node_id] = cls

    manager.hook.register_nodes(register=register)
    manager.hook.register_pipelines(register=register)
    return loaded
