"""One exception tree with the exit code on each class, and defaults and ranges stated once.

Read from the source (ast) where the rule is about where a value is written, and run where it is
about what a command does: `run_server` is driven with its backend and daemon replaced by fakes
that raise (the real ones need a ring and a simulation; the exit paths are what is under test).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import ca_server
from ca_server.config import ConfigError, ServerConfig
from ca_server.errors import CAServerError, OutOfMemoryError
from ca_server.exit_codes import ExitCode
from ca_server.presets import PresetFileError, UnknownPresetError
from ca_server.wire.errors import (
    EndpointRefusedError,
    ErrorCode,
    RingError,
    RingInUseError,
    RingTruncatedError,
    ShmTooSmallError,
    UnsafePathError,
    WireError,
)
from ca_server.wire.protocol import OPS
from ca_server.xp import BackendUnavailableError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_SOURCES = sorted(
    [*(ROOT / "ca_server").rglob("*.py"), *(ROOT / "ca_scope_client").glob("*.py")]
)
EXIT_SOURCES = sorted(
    [*(ROOT / "ca_server" / "cli").glob("*.py"), ROOT / "ca_server" / "server.py"]
)


def project_error_classes() -> list[type[BaseException]]:
    """Every public exception class defined in ca_server (engines and renderer included)."""
    for module in pkgutil.walk_packages(ca_server.__path__, "ca_server."):
        if not module.name.endswith("__main__"):  # that one runs the CLI
            importlib.import_module(module.name)
    found, todo = [], [BaseException]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("ca_server.") and not cls.__name__.startswith("_"):
            found.append(cls)
    return sorted(set(found), key=lambda cls: cls.__qualname__)


def test_every_error_has_one_root_and_an_exit_code() -> None:
    classes = project_error_classes()
    assert len(classes) >= 15, [cls.__name__ for cls in classes]
    outside = [cls.__name__ for cls in classes if not issubclass(cls, CAServerError)]
    assert outside == [], f"exception classes outside the CAServerError tree: {outside}"
    for cls in classes:
        assert isinstance(cls.exit_code, ExitCode), cls


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def test_exit_paths_take_their_code_from_the_exception_class() -> None:
    """A handler of one of our errors exits with `exc.exit_code`, never a code of its own; no exit
    anywhere is an int literal."""
    ours = {cls.__name__ for cls in project_error_classes()}
    restated = []
    for path in EXIT_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                if not _names_in(node.type) & ours:
                    continue
                for inner in ast.walk(ast.Module(body=node.body, type_ignores=[])):
                    is_code = isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name)
                    if is_code and inner.value.id == "ExitCode":
                        restated.append(f"{path.name}:{inner.lineno} ExitCode.{inner.attr}")
    literal_exits = []
    for path in PACKAGE_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            exits = isinstance(node, ast.Call) and _names_in(node.func) & {"_exit", "exit", "Exit"}
            if exits and node.args and isinstance(node.args[0], ast.Constant):
                literal_exits.append(f"{path.name}:{node.lineno}")
    assert restated == [], f"handlers that restate an exit code: {restated}"
    assert literal_exits == [], f"exits with a literal code: {literal_exits}"


DOCUMENTED_START_UP_CODES = [  # README "Exit codes"
    (ConfigError("--fps 0: choose a frame rate from 1 to 2000"), 2),
    (UnknownPresetError("unknown preset 'x'; valid presets: coral"), 2),
    (PresetFileError("deep.toml: [engine] is missing"), 78),
    (BackendUnavailableError("CuPy is not installed"), 78),
    (EndpointRefusedError("refusing tcp://0.0.0.0:5555"), 78),
    (RingInUseError("ring 'gpu0' is already being served"), 75),
    (ShmTooSmallError("/dev/shm has 1 MiB free"), 73),
    (RingError("cannot create ring 'gpu0'"), 73),
    (UnsafePathError("ring file is another user's"), 73),
    (WireError("cannot bind control endpoint"), 73),
]


class FailingBackend:
    name, is_gpu = "numpy", False

    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    def ran_out_of_memory(self, error: BaseException) -> bool:
        return isinstance(error, MemoryError)


@pytest.mark.parametrize(
    ("error", "code"),
    DOCUMENTED_START_UP_CODES,
    ids=[type(e).__name__ for e, _ in DOCUMENTED_START_UP_CODES],
)
@pytest.mark.parametrize("where", ["backend", "daemon"])
def test_a_start_up_error_exits_with_its_class_code(monkeypatch, error, code, where) -> None:
    from ca_server import server, xp
    from ca_server.cli.serve import run_server

    def select_backend(*_args):
        if where == "backend":
            raise error
        return FailingBackend(error)

    def daemon(_config, _backend):
        raise error

    monkeypatch.setattr(xp, "select_backend", select_backend)
    monkeypatch.setattr(server, "CAServer", daemon)
    assert run_server(ServerConfig(backend="numpy")) == error.exit_code == code


class StoppingDaemon:
    """Constructed fine; `run` raises the given error (the runtime exit paths)."""

    error: BaseException

    def __init__(self, _config, _backend) -> None:
        self.closed = False

    def install_signal_handlers(self) -> None:
        pass

    def run(self) -> None:
        raise self.error

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RingTruncatedError("ring file was truncated"), 1),
        (MemoryError("no room"), OutOfMemoryError.exit_code),
        (RuntimeError("a bug"), 1),
    ],
)
def test_a_runtime_error_exits_with_its_class_code(monkeypatch, error, code) -> None:
    from ca_server import server, xp
    from ca_server.cli.serve import run_server

    monkeypatch.setattr(xp, "select_backend", lambda *_args: FailingBackend(None))
    monkeypatch.setattr(StoppingDaemon, "error", error, raising=False)
    monkeypatch.setattr(server, "CAServer", StoppingDaemon)
    assert run_server(ServerConfig(backend="numpy")) == code


def test_every_error_code_is_sent_and_has_an_exit_code() -> None:
    sources = "\n".join(path.read_text() for path in PACKAGE_SOURCES if path.name != "errors.py")
    unused = [code.name for code in ErrorCode if f"ErrorCode.{code.name}" not in sources]
    assert unused == [], f"error codes nothing sends: {unused}"
    assert {code: code.exit_code for code in ErrorCode} == {
        **{code: 65 for code in ErrorCode if code not in ("internal", "unavailable")},
        ErrorCode.INTERNAL: 70,
        ErrorCode.UNAVAILABLE: 69,
    }


def test_serve_options_default_to_server_config() -> None:
    serve_module = importlib.import_module("ca_server.cli.serve")

    parameters = inspect.signature(serve_module.serve).parameters
    defaults = ServerConfig()
    assert set(parameters) == {field for field in ServerConfig.__dataclass_fields__}
    for name, parameter in parameters.items():
        assert parameter.default == getattr(defaults, name), name
    tree = ast.parse(inspect.getsource(serve_module))
    serve = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "serve")
    written = [
        f"{arg.arg}={ast.unparse(default)}"
        for arg, default in zip(
            serve.args.args[-len(serve.args.defaults) :], serve.args.defaults, strict=True
        )
        if not (isinstance(default, ast.Attribute) and ast.unparse(default.value) == "DEFAULTS")
    ]
    assert written == [], f"serve options that restate a ServerConfig default: {written}"


def ranged_ops() -> list[tuple[str, float, float]]:
    """The ops with a numeric range, less hue: its [0, 1] is one turn of the colour wheel, written
    everywhere a hue wraps, so a scan cannot tell it from a restated range."""
    return [
        (op, float(arg.min), float(arg.max))
        for op, spec in OPS.items()
        for arg in spec.args
        if arg.type is float and arg.min is not None and arg.max is not None and op != "hue"
    ]


def _numbers(node: ast.AST) -> list[float]:
    return [
        float(n.value)
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and type(n.value) in (int, float)
    ]


def _mentions(node: ast.AST, op: str) -> bool:
    words = {w.lower() for w in _names_in(node)}
    words |= {
        n.value.lower()
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    return any(op in word for word in words)


def test_no_op_range_is_restated_outside_the_ops_table() -> None:
    """The speed, hue and brightness ranges are written in `protocol.OPS` only: no call with the
    op's name takes the range's top as an argument, no dict entry or assignment named after the op
    holds it, and no text says "<op> ... <min> to <max>"."""
    restated = []
    for path in PACKAGE_SOURCES:
        if path.name == "protocol.py":
            continue
        tree = ast.parse(path.read_text())
        for op, low, high in ranged_ops():
            text = re.compile(
                rf"{op}\b.*\b{low:g}(\.0)?\s*(to|\.\.|,|–)\s*{high:g}(\.0)?\b", re.IGNORECASE
            )
            for node in ast.walk(tree):
                pairs: list[tuple[ast.AST, list[float]]] = []
                if isinstance(node, ast.Call):
                    direct = _numbers(
                        ast.Tuple(elts=[a for a in node.args if isinstance(a, ast.Constant)])
                    )
                    clamp = _names_in(node.func) & {"min", "max", "clip"}
                    if {low, high} <= set(direct) or clamp:  # a range, or a clamp to its top
                        pairs.append((node, direct))
                elif isinstance(node, ast.Dict):
                    pairs += [
                        (k, _numbers(v)) for k, v in zip(node.keys, node.values, strict=True) if k
                    ]
                elif isinstance(node, ast.Assign) and isinstance(
                    node.value, ast.Constant | ast.Tuple
                ):
                    pairs += [(target, _numbers(node.value)) for target in node.targets]
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    lines = node.value.splitlines()
                    restated += [
                        f"{path.name}:{node.lineno} {op} (text)"
                        for line in lines
                        if text.search(line)
                    ]
                for label, numbers in pairs:
                    if high in numbers and _mentions(label, op):
                        restated.append(f"{path.name}:{label.lineno} {op}")
    assert restated == [], f"op ranges restated outside protocol.OPS: {restated}"
