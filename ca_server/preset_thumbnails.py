"""Preset thumbnails for the control page: one small PNG per preset, drawn by the real Simulation.

Each thumbnail is the daemon's own pipeline (engine, flow, iridescent renderer) run on numpy at
`THUMBNAIL_SIDE`² from seed 0 for `THUMBNAIL_FRAMES` frames, so the gallery shows what the preset
looks like, not a drawing of it. They are made once, in the viewer's background thread (a few
tenths of a second each on one core), and kept in `<runtime folder>/cache/thumbnails/`, named by
a digest of the preset's validated fields, the package version and the recipe, so an edited
preset file gets a new thumbnail and an unchanged one is never drawn twice.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from pathlib import Path

from ca_server import __version__
from ca_server.presets import PresetError, load_preset

log = logging.getLogger("ca_server.preset_thumbnails")

THUMBNAIL_SIDE = 96  # pixels; the gallery shows them at about this size
THUMBNAIL_FRAMES = 45  # after the synchronous warm-up: the organism has moved and the flow shows
RECIPE = f"v1 {THUMBNAIL_SIDE} {THUMBNAIL_FRAMES} seed0"


def thumbnail_cache_dir() -> Path:
    """`<runtime folder>/cache/thumbnails`, created 0700 like the runtime folder."""
    from ca_server.wire.paths import runtime_dir

    folder = runtime_dir() / "cache" / "thumbnails"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def render_thumbnail_png(name: str, presets_dir: Path | None = None) -> bytes:
    """PNG bytes of preset `name`: a (THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3) uint8 frame from the
    numpy Simulation. Raises PresetError for an unknown or bad preset."""
    import numpy as np
    from PIL import Image

    from ca_server.simulation import Simulation
    from ca_server.xp import numpy_backend

    sim = Simulation(
        numpy_backend(fft_workers=1),
        width=THUMBNAIL_SIDE,
        height=THUMBNAIL_SIDE,
        preset=name,
        seed=0,
        presets_dir=presets_dir,
    )
    frame = np.empty((THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3), np.uint8)
    for _ in range(THUMBNAIL_FRAMES):
        sim.next_frame(host_out=frame)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


class ThumbnailCache:
    """Thumbnails by preset name: `get` answers from memory or disk at once (None while one is
    still to be drawn); `request` queues names for the single background drawing thread."""

    def __init__(self, folder: Path, presets_dir: Path | None = None) -> None:
        self.folder = folder
        self.presets_dir = presets_dir
        self._ready: dict[str, bytes] = {}
        self._failed: set[str] = set()
        self._queue: list[str] = []
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="thumbnails", daemon=True)
        self._thread.start()

    def path_for(self, name: str) -> Path | None:
        """The cache file for preset `name` as it is now, or None if it does not load."""
        try:
            preset = load_preset(name, self.presets_dir)
        except PresetError:
            return None
        digest = hashlib.sha256(f"{__version__}\n{RECIPE}\n{preset!r}".encode()).hexdigest()
        return self.folder / f"{name}-{digest[:16]}.png"

    def get(self, name: str) -> bytes | None:
        """The PNG for `name` if drawn (now or in an earlier run), else None; never blocks."""
        if name in self._ready:
            return self._ready[name]
        path = self.path_for(name)
        if path is not None and path.is_file():
            self._ready[name] = path.read_bytes()
            return self._ready[name]
        return None

    def failed(self, name: str) -> bool:
        """True when `name` could not be drawn (not a preset this viewer can load)."""
        return name in self._failed

    def request(self, names: list[str]) -> None:
        """Queue the names that have no thumbnail yet, in gallery order."""
        with self._wake:
            for name in names:
                if name not in self._queue and name not in self._failed and not self.get(name):
                    self._queue.append(name)
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._stopped or bool(self._queue))
                if self._stopped:
                    return
                name = self._queue.pop(0)
            self._draw(name)

    def _draw(self, name: str) -> None:
        path = self.path_for(name)
        if path is None or self.get(name) is not None:
            self._failed.update(() if path else (name,))
            return
        try:
            png = render_thumbnail_png(name, self.presets_dir)
        except (PresetError, ValueError, MemoryError) as exc:
            log.warning("no thumbnail for preset %s: %s", name, exc)
            self._failed.add(name)
            return
        partial = path.with_suffix(f".{os.getpid()}.part")
        try:  # write then rename, so a reader never sees half a file
            partial.write_bytes(png)
            partial.replace(path)
        except OSError as exc:
            log.warning("cannot cache the thumbnail of %s in %s: %s", name, self.folder, exc)
        self._ready[name] = png
