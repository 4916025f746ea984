"""What differs between engines is declared on the engine classes (ca_server/engines/): nothing
else in the daemon tests an engine's name, so adding or retuning an engine touches its own module.

The scan reads ca_server's source outside engines/ (an AST walk, no import) for the two ways code
branches on an engine: comparing a value with an engine name (`== "gray_scott"`,
`in ("lenia", "mnca")`) and a table keyed by engine names (`{"lenia": ...}`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import ca_server
from ca_server.engines import ENGINE_CLASSES
from ca_server.presets import ENGINE_NAMES as PRESET_ENGINE_NAMES

PACKAGE = Path(ca_server.__file__).parent
ENGINE_NAMES = frozenset(ENGINE_CLASSES)


def _names_in(node: ast.AST) -> list[str]:
    """Engine-name string constants directly in `node` or in a tuple/list/set it is."""
    items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    return [
        item.value
        for item in items
        if isinstance(item, ast.Constant) and isinstance(item.value, str)
        if item.value in ENGINE_NAMES
    ]


def engine_name_tests(source: str) -> list[tuple[int, str]]:
    """(line, what) for each comparison with an engine name and each dict keyed by one."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                found += [(node.lineno, f"compares with {name!r}") for name in _names_in(operand)]
        elif isinstance(node, ast.Dict):
            for key in node.keys:
                if key is not None:
                    found += [(node.lineno, f"keyed by {name!r}") for name in _names_in(key)]
    return found


def test_the_scan_sees_an_engine_name_test() -> None:
    # If the scan could not see these, the test below would pass on anything.
    source = 'if e == "gray_scott": pass\nx = e in ("lenia", "mnca")\nT = {"smoothlife": 1}\n'
    assert [line for line, _ in engine_name_tests(source)] == [1, 2, 2, 3]
    assert engine_name_tests('if e == "coral": pass\nT = {"name": "lenia"}\n') == []


def test_nothing_outside_engines_tests_an_engine_name() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "engines" not in path.relative_to(PACKAGE).parts
        for line, what in engine_name_tests(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "declare it on the engine class instead:\n" + "\n".join(offenders)


def test_each_engine_class_declares_its_preset_table() -> None:
    # The stdlib-only preset loader knows exactly the engines there are, each by its own table.
    assert tuple(ENGINE_CLASSES) == PRESET_ENGINE_NAMES
    for name, engine_class in ENGINE_CLASSES.items():
        assert engine_class.name == name and engine_class.preset_table.engine == name
        assert len(engine_class.warmup_steps) == 2 and engine_class.warmup_factors
