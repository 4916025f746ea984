"""Every command a user-facing string tells people to run exists (issue 19, item 3).

Log lines, placeholder cards and error messages name `ca-server` commands in backticks; a
message naming one that does not exist (`ca-server status`) sends a user mid-show to an error.
Every string constant of the daemon and the plugin is checked against the real CLI's commands.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import typer

from ca_server.cli import app

REPO = Path(__file__).resolve().parents[2]
QUOTED_COMMAND = re.compile(r"`(ca-server(?: [^`]*)?)`")
GROUP_OPTIONS_WITH_VALUES = {"--name", "--control", "--timeout"}


def cli_commands() -> dict[str, set[str]]:
    """Top-level command names, each with its subcommands (empty for a plain command)."""
    root = typer.main.get_command(app)
    return {
        name: set(getattr(command, "commands", {}) or {})
        for name, command in root.commands.items()  # type: ignore[attr-defined]
    }


def string_constants(path: Path) -> list[str]:
    """Every string literal in `path`, with adjacent literals (and f-string parts) joined."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = ast.walk(tree)
    return [n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def unknown_command(words: list[str], commands: dict[str, set[str]]) -> str | None:
    """Why `ca-server <words>` is not a real command, or None if it is."""
    if not words or words[0].startswith("-") or "<" in words[0] or "{" in words[0]:
        return None  # `ca-server` alone, options only, or a placeholder
    if words[0] not in commands:
        return f"no command {words[0]!r}"
    subcommands = commands[words[0]]
    if not subcommands:
        return None
    rest = words[1:]
    while rest and rest[0].startswith("-"):
        rest = rest[2:] if rest[0] in GROUP_OPTIONS_WITH_VALUES else rest[1:]
    if rest and rest[0] not in subcommands and not rest[0].startswith(("<", "{")):
        return f"no command {words[0]} {rest[0]!r}"
    return None


def test_the_cli_has_the_commands_this_test_knows() -> None:
    commands = cli_commands()
    assert {"serve", "ctl", "presets"} <= set(commands)
    assert {"status", "preset", "ping"} <= commands["ctl"]


def test_every_command_named_in_a_message_exists() -> None:
    commands = cli_commands()
    wrong = []
    for folder in ("ca_server", "ca_scope_client"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for text in string_constants(path):
                for quoted in QUOTED_COMMAND.findall(text):
                    why = unknown_command(quoted.split()[1:], commands)
                    if why:
                        wrong.append(f"{path.relative_to(REPO)}: `{quoted}`: {why}")
    assert not wrong, "\n".join(wrong)
