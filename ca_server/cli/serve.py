"""`ca-server serve`: options and environment become one `ServerConfig`; start-up errors become
one line and a documented exit code."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from ca_server.cli.common import NameOption, complete_preset, fail
from ca_server.config import CPU_DEFAULT_SIZE, GPU_DEFAULT_SIZE, ServerConfig
from ca_server.exit_codes import ExitCode

DEFAULTS = ServerConfig()  # the options' defaults are ServerConfig's, stated there only


def serve(
    gpu: Annotated[
        int, typer.Option(envvar="CA_SERVER_GPU", help="CUDA device index.")
    ] = DEFAULTS.gpu,
    backend: Annotated[
        str, typer.Option(envvar="CA_SERVER_BACKEND", help="auto | numpy | cupy.")
    ] = DEFAULTS.backend,
    width: Annotated[
        int | None,
        typer.Option(
            envvar="CA_SERVER_WIDTH",
            help=f"Default {GPU_DEFAULT_SIZE} GPU, {CPU_DEFAULT_SIZE} CPU.",
        ),
    ] = DEFAULTS.width,
    height: Annotated[int | None, typer.Option(envvar="CA_SERVER_HEIGHT")] = DEFAULTS.height,
    fps: Annotated[
        float, typer.Option(envvar="CA_SERVER_FPS", help="Target frame rate.")
    ] = DEFAULTS.fps,
    preset: Annotated[
        str, typer.Option(envvar="CA_SERVER_PRESET", autocompletion=complete_preset)
    ] = DEFAULTS.preset,
    seed: Annotated[int, typer.Option(envvar="CA_SERVER_SEED")] = DEFAULTS.seed,
    name: NameOption = DEFAULTS.name,
    slots: Annotated[int, typer.Option(envvar="CA_SERVER_SLOTS", help="Ring slots.")] = (
        DEFAULTS.slots
    ),
    control: Annotated[
        str | None,
        typer.Option(envvar="CA_SERVER_CONTROL", help="ZeroMQ endpoint (default ipc://…)."),
    ] = DEFAULTS.control,
    allow_remote: Annotated[
        bool, typer.Option(envvar="CA_SERVER_ALLOW_REMOTE", help="Allow a non-loopback bind.")
    ] = DEFAULTS.allow_remote,
    presets_dir: Annotated[
        Path | None, typer.Option(envvar="CA_SERVER_PRESETS_DIR", help="Extra preset files.")
    ] = DEFAULTS.presets_dir,
    max_vram_mb: Annotated[
        int | None,
        typer.Option(
            envvar="CA_SERVER_MAX_VRAM_MB",
            help="Cap on CuPy's pool, MB (default: scaled with the frame size, at least 1024).",
        ),
    ] = DEFAULTS.max_vram_mb,
    log_level: Annotated[str, typer.Option(envvar="CA_SERVER_LOG_LEVEL")] = DEFAULTS.log_level,
    link: Annotated[
        bool,
        typer.Option(envvar="CA_SERVER_LINK", help="Follow Ableton Link's beat (needs aalink)."),
    ] = DEFAULTS.link,
) -> None:
    """Run the daemon: simulate, render and publish frames into the shared-memory ring."""
    from ca_server.config import ConfigError

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
        fail(str(exc), exc.exit_code)
    logging.basicConfig(
        stream=sys.stderr,
        level=config.log_level.upper(),
        format="%(asctime)s ca-server %(levelname)s %(message)s",
    )
    raise typer.Exit(int(run_server(config)))


def run_server(config: ServerConfig) -> ExitCode:
    """Start the daemon for `config`, serve until a signal, shut down; return the exit code: the
    failing error's `exit_code` (see `ca_server.errors`), 1 for a bug, 0 after a clean stop."""
    from ca_server.errors import CAServerError, OutOfMemoryError
    from ca_server.server import CAServer
    from ca_server.wire.errors import RingTruncatedError
    from ca_server.xp import select_backend

    log = logging.getLogger("ca_server.cli")
    try:
        backend = select_backend(config.backend, config.gpu, config.gpu_memory_cap_mb)
        config = config.resolved(backend.name)
        if backend.is_gpu:
            log.info("GPU memory cap: %d MB", config.gpu_memory_cap_mb)
            if warning := config.memory_cap_warning():
                log.warning("%s", warning)
        try:
            server = CAServer(config, backend)
        except Exception as exc:
            if not backend.ran_out_of_memory(exc):
                raise
            raise OutOfMemoryError(out_of_memory_line(config, backend.is_gpu, exc)) from exc
    except CAServerError as exc:
        log.error("%s", exc)
        return exc.exit_code
    server.install_signal_handlers()
    try:
        server.run()
    except RingTruncatedError as exc:  # one line, not SIGBUS
        log.error("%s", exc)
        return exc.exit_code
    except Exception as exc:
        if not backend.ran_out_of_memory(exc):
            log.exception("the daemon stopped on an unexpected error")
            return ExitCode.UNEXPECTED
        error = OutOfMemoryError(out_of_memory_line(config, backend.is_gpu, exc))
        log.error("%s", error)
        return error.exit_code
    finally:
        server.close()
    log.info("stopped cleanly")
    return ExitCode.OK


def out_of_memory_line(config: ServerConfig, on_gpu: bool, error: BaseException) -> str:
    """The one line for a daemon that ran out of memory with nothing to drop (a change that does
    not fit is dropped while the stream goes on; see Simulation)."""
    if on_gpu:
        cap = f"--max-vram-mb {config.gpu_memory_cap_mb}"
        where, fix = f"GPU {config.gpu} ({cap})", "raise --max-vram-mb, free the GPU or lower"
    else:
        where, fix = "the host", "free memory or lower"
    return (
        f"out of memory on {where} at {config.width}x{config.height} "
        f"({type(error).__name__}: {error}); {fix} --width/--height"
    )


# --- ctl ---------------------------------------------------------------------------------------
