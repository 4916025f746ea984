"""The `ca-server` command line: `serve` runs the daemon, `ctl` talks to it, and `snapshot`,
`record` and `presets` look at its output without Scope.

This is the edge: options and `CA_SERVER_*` environment variables become one `ServerConfig`, and
every error becomes one line on stderr and a documented exit code (`ca_server.exit_codes`).
With `--json`, stdout carries exactly one JSON object and logs stay on stderr.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ca_server.exit_codes import ExitCode

app = typer.Typer(
    name="ca-server",
    help="Live cellular-automaton video source for Daydream Scope.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
ctl_app = typer.Typer(help="Control a running daemon.", no_args_is_help=True)
app.add_typer(ctl_app, name="ctl")

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


def ring_name_or_default(name: str | None, gpu: int = 0) -> str:
    from ca_server.wire.paths import default_ring_name

    return name or default_ring_name(gpu)


# --- serve -------------------------------------------------------------------------------------


@app.command()
def serve(
    gpu: Annotated[int, typer.Option(envvar="CA_SERVER_GPU", help="CUDA device index.")] = 0,
    backend: Annotated[
        str, typer.Option(envvar="CA_SERVER_BACKEND", help="auto | numpy | cupy.")
    ] = "auto",
    width: Annotated[
        int | None, typer.Option(envvar="CA_SERVER_WIDTH", help="Default 1024 GPU, 512 CPU.")
    ] = None,
    height: Annotated[int | None, typer.Option(envvar="CA_SERVER_HEIGHT")] = None,
    fps: Annotated[float, typer.Option(envvar="CA_SERVER_FPS", help="Target frame rate.")] = 30.0,
    preset: Annotated[
        str, typer.Option(envvar="CA_SERVER_PRESET", autocompletion=complete_preset)
    ] = "coral",
    seed: Annotated[int, typer.Option(envvar="CA_SERVER_SEED")] = 0,
    name: NameOption = None,
    slots: Annotated[int, typer.Option(envvar="CA_SERVER_SLOTS", help="Ring slots.")] = 8,
    control: Annotated[
        str | None,
        typer.Option(envvar="CA_SERVER_CONTROL", help="ZeroMQ endpoint (default ipc://…)."),
    ] = None,
    allow_remote: Annotated[
        bool, typer.Option(envvar="CA_SERVER_ALLOW_REMOTE", help="Allow a non-loopback bind.")
    ] = False,
    presets_dir: Annotated[
        Path | None, typer.Option(envvar="CA_SERVER_PRESETS_DIR", help="Extra preset files.")
    ] = None,
    max_vram_mb: Annotated[
        int | None, typer.Option(envvar="CA_SERVER_MAX_VRAM_MB", help="Cap on CuPy's pool.")
    ] = 1024,
    log_level: Annotated[str, typer.Option(envvar="CA_SERVER_LOG_LEVEL")] = "info",
) -> None:
    """Run the daemon: simulate, render and publish frames into the shared-memory ring."""
    from ca_server.config import ConfigError, ServerConfig

    config = ServerConfig(
        gpu=gpu,
        backend=backend,
        width=width,
        height=height,
        fps=fps,
        preset=preset,
        seed=seed,
        name=name,
        slots=slots,
        control=control,
        allow_remote=allow_remote,
        presets_dir=presets_dir,
        max_vram_mb=max_vram_mb,
        log_level=log_level,
    )
    try:
        config.resolved()
    except ConfigError as exc:
        fail(str(exc), ExitCode.USAGE)
    logging.basicConfig(
        stream=sys.stderr,
        level=config.log_level.upper(),
        format="%(asctime)s ca-server %(levelname)s %(message)s",
    )
    raise typer.Exit(int(run_server(config)))


def run_server(config: Any) -> ExitCode:
    """Start the daemon for `config`, serve until a signal, shut down; return the exit code."""
    from ca_server.presets import UnknownPresetError
    from ca_server.server import CAServer
    from ca_server.wire.errors import (
        EndpointRefusedError,
        RingError,
        RingInUseError,
        ShmTooSmallError,
        WireError,
    )
    from ca_server.xp import BackendUnavailableError, select_backend

    log = logging.getLogger("ca_server.cli")
    try:
        backend = select_backend(config.backend, config.gpu, config.max_vram_mb)
        config = config.resolved(backend.name)
        server = CAServer(config, backend)
    except BackendUnavailableError as exc:
        log.error("%s", exc)
        return ExitCode.CONFIG
    except UnknownPresetError as exc:
        log.error("%s", str(exc).strip("'\""))
        return ExitCode.USAGE
    except RingInUseError as exc:
        log.error("%s", exc)
        return ExitCode.IN_USE
    except (ShmTooSmallError, RingError) as exc:
        log.error("%s", exc)
        return ExitCode.CANNOT_CREATE
    except EndpointRefusedError as exc:
        log.error("%s", exc)
        return ExitCode.CONFIG
    except WireError as exc:
        log.error("%s", exc)
        return ExitCode.CANNOT_CREATE
    server.install_signal_handlers()
    try:
        server.run()
    except Exception:
        log.exception("the daemon stopped on an unexpected error")
        return ExitCode.UNEXPECTED
    finally:
        server.close()
    log.info("stopped cleanly")
    return ExitCode.OK


# --- ctl ---------------------------------------------------------------------------------------


class CtlContext:
    """Options shared by every `ctl` command."""

    def __init__(self, name: str, control: str | None, timeout_s: float, as_json: bool) -> None:
        self.name, self.control, self.timeout_s, self.as_json = name, control, timeout_s, as_json

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
        from ca_server.wire.errors import ControlError, DaemonUnavailableError, WireError
        from ca_server.wire.protocol import exit_code_for

        try:
            with ControlClient(self.endpoint(), timeout_s=self.timeout_s) as client:
                return client.call(op, **args)
        except DaemonUnavailableError as exc:
            self._fail(exc.code, exc.message, ExitCode.UNAVAILABLE)
        except ControlError as exc:
            self._fail(exc.code, exc.message, ExitCode(exit_code_for(exc.code)))
        except WireError as exc:
            self._fail("unavailable", str(exc), ExitCode.UNAVAILABLE)

    def _fail(self, code: str, message: str, exit_code: ExitCode | int) -> NoReturn:
        if self.as_json:
            typer.echo(json.dumps({"ok": False, "error": {"code": code, "message": message}}))
            raise typer.Exit(int(exit_code))
        fail(message, exit_code)

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
) -> None:
    """Control a running daemon (found by --name, default gpu0)."""
    if not 0 < timeout <= 60:
        fail(f"--timeout {timeout}: choose from 0 to 60 seconds", ExitCode.USAGE)
    context.obj = CtlContext(ring_name_or_default(name), control, timeout, as_json)


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


@ctl_app.command()
def speed(context: typer.Context, value: float) -> None:
    """Simulation steps per frame, 0 to 8 (fractions accumulate)."""
    ctx: CtlContext = context.obj
    ctx.show(ctx.call("speed", value=value), f"speed {value:g}")


@ctl_app.command()
def hue(context: typer.Context, value: float) -> None:
    """Hue shift, 0 to 1 (a turn of the colour wheel)."""
    ctx: CtlContext = context.obj
    ctx.show(ctx.call("hue", value=value), f"hue {value:g}")


@ctl_app.command()
def brightness(context: typer.Context, value: float) -> None:
    """Brightness, 0 to 3."""
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
    """Stop publishing frames (the heartbeat keeps going)."""
    ctx: CtlContext = context.obj
    ctx.show(ctx.call("pause"), "paused")


@ctl_app.command()
def resume(context: typer.Context) -> None:
    """Publish frames again."""
    ctx: CtlContext = context.obj
    ctx.show(ctx.call("resume"), "resumed")


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
        f"uptime       {status_reply['uptime_s']:.0f} s",
        f"ring         {ring.get('name')} at {ring.get('path')}",
        f"control      {status_reply['control_endpoint']}",
    ]
    return "\n".join(lines)


# --- looking at frames -------------------------------------------------------------------------


@app.command()
def presets(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    presets_dir: Annotated[Path | None, typer.Option(envvar="CA_SERVER_PRESETS_DIR")] = None,
) -> None:
    """List the presets (no daemon needed)."""
    from ca_server.presets import list_presets

    infos = list_presets(presets_dir)
    if as_json:
        rows = [{"name": p.name, "title": p.title, "engine": p.engine} for p in infos]
        typer.echo(json.dumps({"ok": True, "result": rows}))
    else:
        for info in infos:
            typer.echo(f"{info.name:<16} {info.engine:<11} {info.description}")


@app.command()
def snapshot(
    out: Annotated[Path, typer.Argument(help="PNG file to write.")],
    name: NameOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a frame.")] = 2.0,
) -> None:
    """Write the newest frame of the ring to a PNG."""
    from PIL import Image

    frames, _fps = read_frames(ring_name_or_default(name), seconds=0.0, timeout_s=timeout)
    Image.fromarray(frames[-1]).save(out)
    typer.echo(f"wrote {out} ({frames[-1].shape[1]}x{frames[-1].shape[0]})")


@app.command()
def record(
    out: Annotated[Path, typer.Argument(help="Output .gif or .mp4.")],
    seconds: Annotated[float, typer.Option(help="Length of the clip.")] = 5.0,
    name: NameOption = None,
) -> None:
    """Record the ring's frames for a few seconds into a GIF or MP4."""
    suffix = out.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        fail(f"cannot record to {out}: use a .gif or .mp4 file name", ExitCode.USAGE)
    if not 0 < seconds <= 600:
        fail(f"--seconds {seconds}: choose from 0 to 600", ExitCode.USAGE)
    frames, fps = read_frames(ring_name_or_default(name), seconds=seconds, timeout_s=2.0)
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(frame) for frame in frames]
        duration_ms = round(1000 / fps)
        images[0].save(out, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    else:
        try:
            import imageio.v2 as imageio
        except ImportError:
            fail("mp4 needs imageio: pip install 'ca-server[video]'", ExitCode.CONFIG)
        imageio.mimwrite(out, frames, fps=fps, macro_block_size=1)
    typer.echo(f"wrote {out}: {len(frames)} frames at {fps:.1f} fps")


@app.command()
def view(
    name: NameOption = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8080,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
) -> None:
    """Watch the ring live in a browser (MJPEG on http://127.0.0.1:8080/)."""
    from ca_server.preview import serve_preview

    logging.basicConfig(stream=sys.stderr, level="INFO", format="ca-server view: %(message)s")
    try:
        serve_preview(ring_name_or_default(name), host, port)
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc.strerror}; pick another --port", ExitCode.CONFIG)
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.OK)) from None


def read_frames(name: str, *, seconds: float, timeout_s: float) -> tuple[list[Any], float]:
    """Frames (H, W, 3) uint8 read from ring `name` for `seconds` (0: just the newest one).

    Returns the frames and their rate measured from the frames' own timestamps. Exits 69 with a
    clear line when there is no live ring or no frame arrives within `timeout_s`.
    """
    from ca_server.wire.errors import RingError
    from ca_server.wire.ring import RingReader

    reader = RingReader(name)
    try:
        try:
            reader.attach()
        except RingError as exc:
            fail(str(exc), ExitCode.UNAVAILABLE)
        frames, stamps = [], []
        started = time.monotonic()
        while True:
            result = reader.read_new(8)
            frames.extend(result.pixels)
            stamps.extend(m.t_mono_ns for m in result.meta)
            elapsed = time.monotonic() - started
            if frames and elapsed >= seconds:
                break
            if not frames and elapsed > timeout_s:
                reason = result.message or result.status.name.lower()
                fail(
                    f"no frame arrived from ring {name!r} within {timeout_s:g} s ({reason})",
                    ExitCode.UNAVAILABLE,
                )
            time.sleep(0.005)
    finally:
        reader.close()
    span_s = (stamps[-1] - stamps[0]) / 1e9 if len(stamps) > 1 else 0.0
    fps = (len(stamps) - 1) / span_s if span_s > 0 else 30.0
    return frames, fps


def main() -> None:
    app()


if __name__ == "__main__":
    main()
