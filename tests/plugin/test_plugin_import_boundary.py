"""Loading the plugin and reading frames must not import cupy, scipy or the simulation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

STANDIN_DIR = Path(__file__).parent / "scope_standin"
FORBIDDEN = ("cupy", "scipy", "ca_server.engines", "ca_server.render", "ca_server.server")

PROBE = """
import json, sys
sys.path.insert(0, {standin!r})
from scope.core.plugins import load_plugins
loaded = load_plugins()
assert not loaded.failed, loaded.failed
after_load = sorted(sys.modules)
from ca_scope_client.frame_source import FrameSource
source = FrameSource("boundaryprobe")
source.poll({{"ca_preset": "coral"}})
source.close()
print(json.dumps({{"after_load": after_load, "after_use": sorted(sys.modules)}}))
"""


def test_plugin_import_and_use_stay_light(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE.format(standin=str(STANDIN_DIR))],
        capture_output=True,
        text=True,
        timeout=60,
        env={"CA_SERVER_RUNTIME_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 0, completed.stderr
    modules = json.loads(completed.stdout.strip().splitlines()[-1])
    assert "ca_scope_client.pipeline" in modules["after_load"]  # the probe did load the plugin
    for phase, loaded in modules.items():
        heavy = [m for m in loaded if m.split(".")[0] in FORBIDDEN or m.startswith(FORBIDDEN)]
        assert heavy == [], f"{phase}: {heavy}"
    assert "torch" not in modules["after_load"]  # torch comes only when a pipeline is built
