"""Looking at a ring without Scope: `presets`, `snapshot`, `record` and `view`.

These read the ring like any other client (`RingReader`) and never talk to the daemon's loop.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ca_server.cli.common import NameOption, fail, ring_name_or_default
from ca_server.exit_codes import ExitCode

READ_BATCH_FRAMES = 4  # frames per ring read: what `record` holds besides the encoder's one


def presets(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    presets_dir: Annotated[Path | None, typer.Option(envvar="CA_SERVER_PRESETS_DIR")] = None,
) -> None:
    """List the presets (no daemon needed); a bad preset file is named on stderr (exit 78)."""
    from ca_server.presets import PresetFileError, catalog

    try:
        found = catalog(presets_dir)
    except PresetFileError as exc:
        fail(str(exc), exc.exit_code)
    if as_json:
        rows = [{"name": p.name, "title": p.title, "engine": p.engine} for p in found.presets]
        typer.echo(json.dumps({"ok": True, "result": rows}))
    else:
        for info in found.presets:
            typer.echo(f"{info.name:<16} {info.engine:<11} {info.description}")
    for problem in found.problems.values():
        typer.echo(f"ca-server: {problem}", err=True)
    if found.problems:
        raise typer.Exit(int(ExitCode.CONFIG))


def snapshot(
    out: Annotated[Path, typer.Argument(help="Image file to write (.png, .jpg, ...).")],
    name: NameOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a frame.")] = 2.0,
) -> None:
    """Write the newest frame of the ring to a PNG."""
    from PIL import Image

    writable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}
    check_output_path(out, writable)
    reader = open_ring(ring_name_or_default(name))
    try:
        frame = next(iter_frames(reader, seconds=0.0, timeout_s=timeout))[0].copy()
    finally:
        reader.close()
    try:
        Image.fromarray(frame).save(out)
    except (OSError, ValueError) as exc:
        fail(f"cannot write {out}: {exc}", ExitCode.CANNOT_CREATE)
    typer.echo(f"wrote {out} ({frame.shape[1]}x{frame.shape[0]})")


def record(
    out: Annotated[Path, typer.Argument(help="Output .gif or .mp4.")],
    seconds: Annotated[float, typer.Option(help="Length of the clip.")] = 5.0,
    name: NameOption = None,
) -> None:
    """Record the ring's frames for a few seconds into a GIF or MP4 (streamed to the file as
    they arrive, so memory stays flat for any length)."""
    check_output_path(out, {".gif", ".mp4"})
    if not 0 < seconds <= 600:
        fail(f"--seconds {seconds}: choose from 0 to 600", ExitCode.USAGE)
    reader = open_ring(ring_name_or_default(name))
    try:
        nominal_fps = (reader.header() or {}).get("nominal_fps") or 30.0
        encoder = open_encoder(out, nominal_fps)
        stamps = (0, 0)
        count = 0
        try:
            for frame, t_mono_ns in iter_frames(reader, seconds=seconds, timeout_s=2.0):
                encoder.add(frame, t_mono_ns)
                stamps = (stamps[0] or t_mono_ns, t_mono_ns)
                count += 1
            encoder.close()
        except OSError as exc:
            fail(f"cannot write {out}: {exc}", ExitCode.CANNOT_CREATE)
    finally:
        reader.close()
    span_s = (stamps[1] - stamps[0]) / 1e9
    fps = (count - 1) / span_s if span_s > 0 else nominal_fps
    typer.echo(f"wrote {out}: {count} frames at {fps:.1f} fps")


def view(
    name: NameOption = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8080,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    allow_remote: Annotated[
        bool, typer.Option(envvar="CA_SERVER_ALLOW_REMOTE", help="Allow a non-loopback --host.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="CA_SERVER_VIEW_TOKEN",
            help="Token every request must carry (default off loopback: a new one, printed).",
        ),
    ] = None,
    control: Annotated[
        str | None, typer.Option(envvar="CA_SERVER_CONTROL", help="Daemon's control endpoint.")
    ] = None,
    presets_dir: Annotated[Path | None, typer.Option(envvar="CA_SERVER_PRESETS_DIR")] = None,
) -> None:
    """Play the daemon live in a browser: the picture, a preset gallery, the controls and the
    readout (http://127.0.0.1:8080/)."""
    import secrets

    from ca_server.control_page import ControlPage, serve_control_page
    from ca_server.wire.endpoint_addresses import _is_loopback_host

    remote = not _is_loopback_host(host)
    if remote and not allow_remote:
        fail(
            f"refusing to serve the control page on {host}: it is not a loopback address, so "
            "other hosts could watch and drive the daemon; use 127.0.0.1, or pass --allow-remote "
            "(a token is then required)",
            ExitCode.CONFIG,
        )
    if token is not None and len(token) < 16:
        fail("--token: use at least 16 characters (or omit it for a new one)", ExitCode.USAGE)
    if remote and token is None:
        token = secrets.token_urlsafe(24)
    logging.basicConfig(stream=sys.stderr, level="INFO", format="ca-server view: %(message)s")
    page = ControlPage(
        ring_name_or_default(name), control=control, token=token, presets_dir=presets_dir
    )
    try:
        serve_control_page(page, host, port)
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc.strerror}; pick another --port", ExitCode.CONFIG)
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.OK)) from None


def check_output_path(out: Path, suffixes: set[str]) -> None:
    """Exit with one line unless `out` has one of `suffixes` (2) and can be created (73)."""
    if out.suffix.lower() not in suffixes:
        choices = ", ".join(sorted(suffixes)[:12])
        fail(f"cannot write {out}: use a file name ending in one of {choices}", ExitCode.USAGE)
    folder = out.parent
    if out.is_dir():
        fail(f"cannot write {out}: it is a folder; name a file", ExitCode.CANNOT_CREATE)
    if not folder.is_dir():
        fail(f"cannot write {out}: folder {folder} does not exist", ExitCode.CANNOT_CREATE)
    if not os.access(folder, os.W_OK):
        fail(f"cannot write {out}: folder {folder} is not writable", ExitCode.CANNOT_CREATE)


def open_ring(name: str) -> Any:
    """An attached RingReader for ring `name`, or exit 69 with the reason."""
    from ca_server.wire.errors import RingError
    from ca_server.wire.ring import RingReader

    reader = RingReader(name)
    try:
        reader.attach()
    except RingError as exc:
        reader.close()
        fail(str(exc), exc.exit_code)
    return reader


def iter_frames(reader: Any, *, seconds: float, timeout_s: float) -> Iterator[tuple[Any, int]]:
    """Yield (frame, t_mono_ns) as frames arrive for `seconds` (0: just the newest one). Each
    frame is an (H, W, 3) uint8 host view into one reused batch buffer, valid until the next
    frame is asked for: copy it to keep it. Exits 69 with a clear line when no frame arrives
    within `timeout_s`."""
    import numpy as np

    started = time.monotonic()
    any_frame = False
    batch = None
    while True:
        if batch is None and reader.frame_shape is not None:
            batch = np.empty((READ_BATCH_FRAMES, *reader.frame_shape), np.uint8)
        result = reader.read_new(1 if seconds == 0 else READ_BATCH_FRAMES, out=batch)
        for pixels, meta in zip(result.pixels, result.meta, strict=True):
            any_frame = True
            yield pixels, meta.t_mono_ns
        elapsed = time.monotonic() - started
        if any_frame and elapsed >= seconds:
            return
        if not any_frame and elapsed > timeout_s:
            reason = result.message or result.status.name.lower()
            fail(
                f"no frame arrived from ring {reader.name!r} within {timeout_s:g} s ({reason})",
                ExitCode.UNAVAILABLE,
            )
        time.sleep(0.005)


def open_encoder(out: Path, nominal_fps: float) -> Any:
    """A streaming encoder for `out` (.gif or .mp4) with `add(frame, t_mono_ns)` and `close()`."""
    if out.suffix.lower() == ".gif":
        return GifStream(out)
    try:
        import imageio.v2 as imageio
    except ImportError:
        fail("mp4 needs imageio: pip install 'ca-server[video]'", ExitCode.CONFIG)
    writer = imageio.get_writer(out, fps=nominal_fps, macro_block_size=1)
    return _Mp4Stream(writer)


class _Mp4Stream:
    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def add(self, frame: Any, _t_mono_ns: int) -> None:
        self._writer.append_data(frame)

    def close(self) -> None:
        self._writer.close()


class GifStream:
    """An animated GIF written frame by frame with Pillow's documented legacy `getheader` and
    `getdata`: each frame is quantised and written when the next one arrives (its duration is the
    gap between their ring timestamps), so at most one frame is held in memory."""

    def __init__(self, out: Path) -> None:
        self._file = open(out, "wb")  # noqa: SIM115 - closed by close()
        self._held: tuple[Any, int] | None = None
        self._started = False

    def add(self, frame: Any, t_mono_ns: int) -> None:
        if self._held is not None:
            self._write(self._held[0], (t_mono_ns - self._held[1]) / 1e6)
        self._held = (frame.copy(), t_mono_ns)  # `frame` is a view the reader will reuse

    def close(self) -> None:
        try:
            if self._held is not None:
                self._write(self._held[0], 1000 / 30)
            if self._started:
                self._file.write(b";")  # the GIF trailer
        finally:
            self._file.close()

    def _write(self, frame: Any, duration_ms: float) -> None:
        from PIL import GifImagePlugin, Image

        image = Image.fromarray(frame).quantize(256)
        duration = max(20, round(duration_ms))  # browsers treat < 20 ms as 100 ms
        if not self._started:
            header, _ = GifImagePlugin.getheader(image, info={"loop": 0, "duration": duration})
            self._file.writelines(header)
            self._started = True
        self._file.writelines(
            GifImagePlugin.getdata(image, duration=duration, include_color_table=True)
        )
