"""`ca-server ctl`: talk to a running daemon over its control endpoint.

Each command sends one request through `ControlClient` and prints the result; with `--json`,
stdout carries exactly one JSON object and failures exit with the protocol's exit code. The
shared options (`--json`, `--name`, `--timeout`, `--control`, `--control-key`) may come before
or after the command: `ca-server ctl status --json` is what people type.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from ca_server.cli.common import NameOption, complete_preset, fail, ring_name_or_default
from ca_server.exit_codes import ExitCode
from ca_server.wire.errors import ControlError, DaemonUnavailableError, WireError
from ca_server.wire.protocol import op_range


def range_text(op: str) -> str:
    """`op`'s accepted range as the help shows it, e.g. "0 to 8"."""
    low, high = op_range(op)
    return f"{low:g} to {high:g}"


class SharedOptionsAnywhere(TyperGroup):
    """A command group whose own options may also follow its subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_group_options(self.params, args))


def hoist_group_options(params: list[Any], args: list[str]) -> list[str]:
    """`args` with the group's options that follow the subcommand moved in front of it.

    `params` are the group's click parameters; an option that takes a value moves with it
    (`--name gpu1` or `--name=gpu1`). Nothing after `--` moves.
    """
    takes_value = {
        opt: not getattr(param, "is_flag", False)
        for param in params
        if getattr(param, "param_type_name", "") == "option"
        for opt in (*param.opts, *param.secondary_opts)
    }
    index = 0  # find the subcommand: the first word that is not a group option or its value
    while index < len(args) and args[index].startswith("-"):
        option = args[index].split("=", 1)[0]
        index += 2 if takes_value.get(option) and "=" not in args[index] else 1
    front, rest = list(args[: index + 1]), []
    tail = iter(args[index + 1 :])
    for word in tail:
        if word == "--":
            rest += [word, *tail]
            break
        option = word.split("=", 1)[0]
        if option not in takes_value:
            rest.append(word)
            continue
        moved = [word]
        if takes_value[option] and "=" not in word:
            moved += [value for value in (next(tail, None),) if value is not None]
        front[index:index] = moved
        index += len(moved)
    return front + rest


ctl_app = typer.Typer(
    help="Control a running daemon.", no_args_is_help=True, cls=SharedOptionsAnywhere
)


class CtlContext:
    """Options shared by every `ctl` command."""

    def __init__(
        self,
        name: str,
        control: str | None,
        timeout_s: float,
        as_json: bool,
        control_key: Path | None = None,
    ) -> None:
        self.name, self.control, self.timeout_s, self.as_json = name, control, timeout_s, as_json
        self.control_key = control_key

    def endpoint(self) -> str:
        """`--control`, else the endpoint the live ring advertises, else the name's default."""
        if self.control:
            return self.control
        from ca_server.wire.paths import default_control_endpoint
        from ca_server.wire.ring import RingReader

        reader = RingReader(self.name)
        try:
            reader.attach()
            advertised = (reader.header() or {}).get("control_endpoint")
        except Exception:
            advertised = None
        finally:
            reader.close()
        return advertised or default_control_endpoint(self.name)

    def call(self, op: str, **args: Any) -> Any:
        """Send one request; print the outcome; exit non-zero on any failure."""
        from ca_server.wire.control import ControlClient
        from ca_server.wire.control_keys import load_client_keys, uses_curve

        try:
            endpoint = self.endpoint()
            keys = None
            if self.control_key is not None and uses_curve(endpoint):
                keys = load_client_keys(self.control_key)
            with ControlClient(endpoint, timeout_s=self.timeout_s, curve_keys=keys) as client:
                return client.call(op, **args)
        except ControlError as exc:
            self._fail(exc)
        except WireError as exc:  # no endpoint, no usable key: the daemon cannot be reached
            self._fail(DaemonUnavailableError(str(exc)))

    def _fail(self, error: ControlError) -> NoReturn:
        if self.as_json:
            reply = {"ok": False, "error": {"code": str(error.code), "message": error.message}}
            typer.echo(json.dumps(reply))
            raise typer.Exit(int(error.exit_code))
        fail(error.message, error.exit_code)

    def show(self, result: Any, text: str) -> None:
        typer.echo(json.dumps({"ok": True, "result": result}) if self.as_json else text)


@ctl_app.callback()
def ctl(
    context: typer.Context,
    name: NameOption = None,
    control: Annotated[
        str | None, typer.Option(envvar="CA_SERVER_CONTROL", help="Daemon's control endpoint.")
    ] = None,
    timeout: Annotated[
        float, typer.Option(envvar="CA_SERVER_TIMEOUT", help="Seconds per attempt.")
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    control_key: Annotated[
        Path | None,
        typer.Option(
            envvar="CA_SERVER_CONTROL_KEY",
            help="The daemon's control.key, for tcp:// (default: the runtime folder's).",
        ),
    ] = None,
) -> None:
    """Control a running daemon (found by --name, default gpu0)."""
    if not 0 < timeout <= 60:
        fail(f"--timeout {timeout}: choose from 0 to 60 seconds", ExitCode.USAGE)
    context.obj = CtlContext(ring_name_or_default(name), control, timeout, as_json, control_key)


@ctl_app.command()
def ping(context: typer.Context) -> None:
    """Check that the daemon answers."""
    ctx: CtlContext = context.obj
    started = time.perf_counter()
    result = ctx.call("ping")
    elapsed_ms = (time.perf_counter() - started) * 1e3
    ctx.show(result, f"pong from pid {result.get('pid')} in {elapsed_ms:.1f} ms")


@ctl_app.command()
def status(context: typer.Context) -> None:
    """Show the daemon's state, speed and timings."""
    ctx: CtlContext = context.obj
    result = ctx.call("status")
    ctx.show(result, format_status(result))


@ctl_app.command("presets")
def ctl_presets(context: typer.Context) -> None:
    """List the presets the daemon knows."""
    ctx: CtlContext = context.obj
    result = ctx.call("presets")
    ctx.show(result, "\n".join(f"{p['name']:<16} {p['description']}" for p in result))


@ctl_app.command()
def preset(
    context: typer.Context,
    name: Annotated[str, typer.Argument(autocompletion=complete_preset)],
) -> None:
    """Switch to preset NAME (crossfades; the stream never stops)."""
    ctx: CtlContext = context.obj
    ctx.show(ctx.call("preset", name=name), f"preset {name}")


@ctl_app.command(help=f"Simulation steps per frame, {range_text('speed')} (fractions accumulate).")
def speed(context: typer.Context, value: float) -> None:
    ctx: CtlContext = context.obj
    ctx.show(ctx.call("speed", value=value), f"speed {value:g}")


@ctl_app.command(help=f"Hue shift, {range_text('hue')} (a turn of the colour wheel).")
def hue(context: typer.Context, value: float) -> None:
    ctx: CtlContext = context.obj
    ctx.show(ctx.call("hue", value=value), f"hue {value:g}")


@ctl_app.command(help=f"Brightness, {range_text('brightness')}.")
def brightness(context: typer.Context, value: float) -> None:
    ctx: CtlContext = context.obj
    ctx.show(ctx.call("brightness", value=value), f"brightness {value:g}")


@ctl_app.command()
def reseed(
    context: typer.Context,
    seed: Annotated[int | None, typer.Option(help="Seed (default: a new one).")] = None,
) -> None:
    """Start the organism again from a seed."""
    ctx: CtlContext = context.obj
    args = {} if seed is None else {"seed": seed}
    result = ctx.call("reseed", **args)
    ctx.show(result, f"reseeded with seed {result.get('value')}")


@ctl_app.command()
def pause(context: typer.Context) -> None:
    """Freeze the picture: no steps, no new frames (the heartbeat keeps going)."""
    ctx: CtlContext = context.obj
    ctx.show(ctx.call("pause"), "paused")


@ctl_app.command()
def resume(context: typer.Context) -> None:
    """Step and publish frames again."""
    ctx: CtlContext = context.obj
    ctx.show(ctx.call("resume"), "resumed")


@ctl_app.command()
def tempo(
    context: typer.Context,
    bpm: Annotated[float, typer.Argument(help="Beats per minute, 20 to 400; 0 stops the clock.")],
    beats_per_bar: Annotated[int | None, typer.Option(help="Beats in a bar.")] = None,
) -> None:
    """Set the beat clock's tempo (its phase carries on)."""
    ctx: CtlContext = context.obj
    args = {"bpm": bpm} if beats_per_bar is None else {"bpm": bpm, "beats_per_bar": beats_per_bar}
    ctx.show(ctx.call("tempo", **args), f"tempo {bpm:g}" if bpm else "tempo off")


@ctl_app.command()
def tap(context: typer.Context) -> None:
    """Tap tempo: a beat falls now; tap two or more times to set the tempo."""
    t_ns = time.monotonic_ns()  # before connecting: the tap is when the key was pressed
    ctx: CtlContext = context.obj
    result = ctx.call("tap", t_ns=t_ns)
    bpm = result.get("value", 0)
    ctx.show(result, f"tap: tempo {bpm:.1f}" if bpm else "tap: tap again to set a tempo")


@ctl_app.command(
    help=f"How much the picture moves with the beat, {range_text('beat')} (1: the preset's own)."
)
def beat(context: typer.Context, value: float) -> None:
    ctx: CtlContext = context.obj
    ctx.show(ctx.call("beat", value=value), f"beat {value:g}")


def format_status(status_reply: dict[str, Any]) -> str:
    stage = status_reply.get("stage_ms", {})
    ring = status_reply.get("ring", {})
    lines = [
        f"preset       {status_reply['preset']}  (speed {status_reply['speed']:g}, "
        f"hue {status_reply['hue']:g}, brightness {status_reply['brightness']:g}, "
        f"{'paused' if status_reply['paused'] else 'running'})",
        f"backend      {status_reply['backend']} on {status_reply['device']}, "
        f"{status_reply['width']}x{status_reply['height']}",
        f"fps          {status_reply['measured_fps']:.1f} measured / "
        f"{status_reply['target_fps']:g} target; {status_reply['frames_published']} published, "
        f"{status_reply['frames_late']} late",
        "stage ms     " + ", ".join(f"{k} {v:.2f}" for k, v in stage.items()),
        f"sim step     {status_reply['sim_step']}  params version {status_reply['params_version']}",
        f"vram         {status_reply['vram_bytes'] / 2**20:.1f} MiB",
        format_beat(status_reply.get("beat") or {}),
        f"uptime       {status_reply['uptime_s']:.0f} s",
        f"ring         {ring.get('name')} at {ring.get('path')}",
        f"control      {status_reply['control_endpoint']}",
    ]
    change_error = status_reply.get("health", {}).get("change_error")
    if change_error:  # a change that ran out of memory and was dropped
        lines.append(f"dropped      {change_error}")
    return "\n".join(lines)


def format_beat(beat_status: dict[str, Any]) -> str:
    if not beat_status.get("bpm"):
        return f"beat         no tempo (amount {beat_status.get('amount', 1):g})"
    return (
        f"beat         {beat_status['bpm']:g} bpm from {beat_status['source']}, beat "
        f"{beat_status['bar_position'] + 1:.2f} of {beat_status['beats_per_bar']}, amount "
        f"{beat_status['amount']:g} x {beat_status.get('preset_amount', 1):g}"
    )


# --- looking at frames -------------------------------------------------------------------------
