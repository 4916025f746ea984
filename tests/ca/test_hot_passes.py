"""Each hot pass is one object chosen once per backend: no backend branch in the frame path.

A hot pass (an engine update, keep-moving, flow advection, the renderer's stages, bloom, the
thickener, health, the crossfade) has two implementations, one fused kernel and a chain of numpy
passes, each a class that allocates its own buffers; `Backend.hot_pass` picks one of the two in
the owner's `__init__`. So outside the constructors nothing in these modules asks which backend
it runs on (`is_gpu`, `kernel_compiler`, `fused_kernel`, `hot_pass`) or looks at a fused
kernel that may be missing (`if self._fused_x is not None`; inside a fused pass the launcher is
`self._launch`): the code a frame runs is the same on every call.
This reads the source, since the branches it looks for are cheap to write and easy to miss.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ca_server

PACKAGE = Path(ca_server.__file__).parent
# The modules whose code runs in a frame: engines, renderer, health, crossfade.
FRAME_PATH_FILES = sorted(
    [
        *PACKAGE.glob("engines/*.py"),
        *PACKAGE.glob("render/*.py"),
        PACKAGE / "health.py",
        PACKAGE / "crossfade.py",
    ]
)
# Asking the backend which implementation to run: only a constructor may.
BACKEND_CHOICE_NAMES = frozenset({"is_gpu", "kernel_compiler", "fused_kernel", "hot_pass"})


def backend_branches(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """`path:line what` (path from `root`) of each backend question asked outside a constructor
    in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if function.name == "__init__":
            continue
        for node in ast.walk(function):
            if not isinstance(node, ast.Name | ast.Attribute):
                continue
            name = node.id if isinstance(node, ast.Name) else node.attr
            if name in BACKEND_CHOICE_NAMES or "fused" in name:
                relative = path.relative_to(root)
                found.append(f"{relative}:{node.lineno} {function.name}() asks {name!r}")
    return sorted(set(found))


def test_the_frame_path_has_no_backend_branches():
    found = [site for path in FRAME_PATH_FILES for site in backend_branches(path)]
    assert not found, "backend branches outside constructors:\n" + "\n".join(found)


def test_the_check_sees_a_branch(tmp_path):
    # Guards the test above: both kinds of branch it looks for are found.
    source = tmp_path / "engines" / "sample.py"
    source.parent.mkdir()
    source.write_text(
        "class Sample:\n"
        "    def __init__(self, backend):\n"
        "        self._fused_update = backend.fused_kernel(None)\n"
        "    def step(self):\n"
        "        if self._fused_update is not None:\n"
        "            return 1\n"
        "    def gather(self, backend):\n"
        "        return 1 if backend.is_gpu else 2\n"
    )
    found = backend_branches(source, root=tmp_path)
    assert found == [
        "engines/sample.py:5 step() asks '_fused_update'",
        "engines/sample.py:8 gather() asks 'is_gpu'",
    ]
