"""Check, inside Scope's venv, that our plugin loads the way Scope loads it.

Run by bootstrap.sh with Scope's interpreter after it installed the plugin there: finds the one
entry point of group `scope` that the distribution declares (Scope rejects zero or several),
loads it, calls its registration hooks with a recording callback, and prints one JSON line with
the registered pipeline and input-source ids. Exits 1 with a one-line reason when any of that
fails, which is what Scope itself would report as a failed plugin.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from typing import Any


def normalized(name: str) -> str:
    return name.lower().replace("_", "-")


def registered_id(cls: Any) -> str:
    """The id Scope files a registered class under: source_id, node_type_id or pipeline_id."""
    for attribute in ("source_id", "node_type_id"):
        value = getattr(cls, attribute, None)
        if isinstance(value, str) and value:
            return value
    return cls.get_config_class().pipeline_id


def check(dist_name: str) -> dict[str, Any]:
    entry_points = [
        ep
        for ep in metadata.entry_points(group="scope")
        if ep.dist is not None and normalized(ep.dist.name) == normalized(dist_name)
    ]
    if len(entry_points) != 1:
        raise RuntimeError(
            f"{dist_name} declares {len(entry_points)} entry points in group 'scope'; "
            "Scope needs exactly one"
        )
    module = entry_points[0].load()
    registered: list[Any] = []
    for hook in ("register_nodes", "register_pipelines"):
        function = getattr(module, hook, None)
        if callable(function):
            function(register=registered.append)
    if not registered:
        raise RuntimeError(f"{dist_name}'s hooks registered nothing")
    return {
        "dist": dist_name,
        "version": metadata.version(dist_name),
        "registered": sorted(registered_id(cls) for cls in registered),
    }


def main(argv: list[str]) -> int:
    dist_name = argv[1] if len(argv) > 1 else "ca-server"
    try:
        report = check(dist_name)
    except Exception as exc:  # any failure here is a failed plugin in Scope's eyes
        print(f"check_plugin: {dist_name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
