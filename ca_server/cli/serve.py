"""`ca-server serve`: options and environment become one `ServerConfig`; start-up errors become
one line and a documented exit code."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ca_server.cli.common import NameOption, complete_preset, fail
from ca_server.exit_codes import ExitCode


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
    link: Annotated[
        bool,
        typer.Option(envvar="CA_SERVER_LINK", help="Follow Ableton Link's beat (needs aalink)."),
    ] = False,
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
        link=link,
    )
    if link and importlib.util.find_spec("aalink") is None:
        fail("--link needs the aalink package: pip install 'ca-server[link]'", ExitCode.CONFIG)
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
    from ca_server.presets import PresetFileError, UnknownPresetError
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
    except BackendUnavailableError as exc:
        log.error("%s", exc)
        return ExitCode.CONFIG
    config = config.resolved(backend.name)
    try:
        server = CAServer(config, backend)
    except UnknownPresetError as exc:
        log.error("%s", str(exc).strip("'\""))
        return ExitCode.USAGE
    except PresetFileError as exc:
        log.error("%s", exc)
        return ExitCode.CONFIG
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
    except Exception as exc:
        if not backend.ran_out_of_memory(exc):
            raise
        log.error("%s", out_of_memory_line(config, backend.is_gpu, exc))
        return ExitCode.CONFIG
    server.install_signal_handlers()
    try:
        server.run()
    except RingError as exc:  # e.g. the ring file truncated under us: one line, not SIGBUS
        log.error("%s", exc)
        return ExitCode.UNEXPECTED
    except Exception as exc:
        if not backend.ran_out_of_memory(exc):
            log.exception("the daemon stopped on an unexpected error")
            return ExitCode.UNEXPECTED
        log.error("%s", out_of_memory_line(config, backend.is_gpu, exc))
        return ExitCode.CONFIG
    finally:
        server.close()
    log.info("stopped cleanly")
    return ExitCode.OK


def out_of_memory_line(config: Any, on_gpu: bool, error: BaseException) -> str:
    """The one line for a daemon that ran out of memory with nothing to drop (a change that does
    not fit is dropped while the stream goes on; see Simulation)."""
    if on_gpu:
        cap = f"--max-vram-mb {config.max_vram_mb}" if config.max_vram_mb else "no --max-vram-mb"
        where, fix = f"GPU {config.gpu} ({cap})", "raise --max-vram-mb, free the GPU or lower"
    else:
        where, fix = "the host", "free memory or lower"
    return (
        f"out of memory on {where} at {config.width}x{config.height} "
        f"({type(error).__name__}: {error}); {fix} --width/--height"
    )


# --- ctl ---------------------------------------------------------------------------------------
