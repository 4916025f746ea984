"""Looking at a ring without Scope: `presets`, `snapshot`, `record` and `view`.

These read the ring like any other client (`RingReader`) and never talk to the daemon's loop.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ca_server.cli.common import NameOption, fail, ring_name_or_default
from ca_server.exit_codes import ExitCode


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
