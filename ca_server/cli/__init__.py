"""The `ca-server` command line: `serve` runs the daemon, `ctl` talks to it, and `snapshot`,
`record`, `view` and `presets` look at its output without Scope.

This is the edge: options and `CA_SERVER_*` environment variables become one `ServerConfig`, and
every error becomes one line on stderr and a documented exit code (`ca_server.exit_codes`).
With `--json`, stdout carries exactly one JSON object and logs stay on stderr.
"""

from __future__ import annotations

import typer

from ca_server.cli.ctl import ctl_app
from ca_server.cli.frames import presets, record, snapshot, view
from ca_server.cli.serve import serve

app = typer.Typer(
    name="ca-server",
    help="Live cellular-automaton video source for Daydream Scope.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(serve)
app.add_typer(ctl_app, name="ctl")
for command in (presets, snapshot, record, view):
    app.command()(command)


def main() -> None:
    app()
