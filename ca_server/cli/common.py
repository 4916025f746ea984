"""What every `ca-server` command shares: the one-line failure, the ring-name option and preset
name completion."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from ca_server.config import ServerConfig
from ca_server.exit_codes import ExitCode

NameOption = Annotated[
    str | None,
    typer.Option("--name", envvar="CA_SERVER_NAME", help="Ring name (default: gpu<N> from --gpu)."),
]


def fail(message: str, code: ExitCode) -> NoReturn:
    """Print one line on stderr and exit with `code`."""
    typer.echo(f"ca-server: {message}", err=True)
    raise typer.Exit(int(code))


def complete_preset(incomplete: str) -> list[str]:
    from ca_server.presets import preset_names

    return [name for name in preset_names() if name.startswith(incomplete)]


def ring_name_or_default(name: str | None, gpu: int = ServerConfig.gpu) -> str:
    from ca_server.wire.paths import default_ring_name

    return name or default_ring_name(gpu)


# --- serve -------------------------------------------------------------------------------------
