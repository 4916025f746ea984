"""The import rule of docs/architecture.md, proved in a fresh interpreter: the wire package (and
the Scope client) loads none of the heavy or daemon-only modules. Add a module with one line in
`BOUNDARY`."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.subprocess

DAEMON_ONLY = ("cupy", "scipy", "ca_server.engines", "ca_server.render")
WIRE_FORBIDDEN = (*DAEMON_ONLY, "torch")

# (module to import, module prefixes it must not load)
BOUNDARY = [
    ("ca_server.wire", WIRE_FORBIDDEN),
    ("ca_server.wire.layout", WIRE_FORBIDDEN),
    ("ca_server.wire.ring", WIRE_FORBIDDEN),
    ("ca_server.wire.ring_memory", WIRE_FORBIDDEN),
    ("ca_server.wire.ring_writer", WIRE_FORBIDDEN),
    ("ca_server.wire.ring_reader", WIRE_FORBIDDEN),
    ("ca_server.wire.protocol", WIRE_FORBIDDEN),
    ("ca_server.wire.control", WIRE_FORBIDDEN),
    ("ca_server.wire.endpoint_addresses", WIRE_FORBIDDEN),
    ("ca_server.wire.control_endpoint", WIRE_FORBIDDEN),
    ("ca_server.wire.control_client", WIRE_FORBIDDEN),
]

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def modules_loaded_by(module: str) -> set[str]:
    """Every module name in sys.modules after importing `module` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"import {module} failed:\n{done.stderr[-2000:]}"
    return set(json.loads(done.stdout))


def loaded_under(loaded: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize(("module", "forbidden"), BOUNDARY, ids=[m for m, _ in BOUNDARY])
def test_module_loads_no_forbidden_modules(module: str, forbidden: tuple[str, ...]) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} does not exist yet")
    loaded = modules_loaded_by(module)
    assert module in loaded
    assert loaded_under(loaded, forbidden) == []


def test_probe_sees_what_a_module_imports() -> None:
    # The ring imports numpy: if the probe could not see that, the checks above would be empty.
    loaded = modules_loaded_by("ca_server.wire.ring")
    assert loaded_under(loaded, ("numpy",)) != []
    assert loaded_under({"scipy.fft", "scipyx"}, ("scipy",)) == ["scipy.fft"]
