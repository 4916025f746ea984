"""Stand-in for `scope.core.plugins.hookspecs`: pluggy markers for project "scope"."""

import pluggy

hookspec = pluggy.HookspecMarker("scope")
hookimpl = pluggy.HookimplMarker("scope")


class ScopeHookSpec:
    """The two hooks Scope fires; both feed the same registration callback."""

    @hookspec
    def register_pipelines(self, register):
        """Call `register(cls)` for each pipeline (or input source) class."""

    @hookspec
    def register_nodes(self, register):
        """Call `register(cls)` for each node class."""
