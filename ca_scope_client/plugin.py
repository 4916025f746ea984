"""Scope's entry point into ca-server: the `register_pipelines` hook and nothing else.

Scope loads this module through the `scope` entry point and calls the hook (twice: once to map
ids to this package, once to register). The pipeline and input-source modules are imported at
the top, so an import failure is caught by Scope's `ep.load()` and recorded against this plugin
alone; the hook body only calls `register`, because an exception inside a hook aborts the
registration of every plugin after this one.
"""

from __future__ import annotations

from scope.core.plugins.hookspecs import hookimpl

from ca_scope_client.input_source import CellularAutomataInputSource
from ca_scope_client.pipeline import CellularAutomataPipeline


@hookimpl
def register_pipelines(register):
    register(CellularAutomataPipeline)
    register(CellularAutomataInputSource)
