"""Render every preset side by side into one contact sheet (default `docs/presets.png`).

`python bench/render_grid.py [--size 256] [--frames 120] [--columns 6] [--seed 1] [--out PATH]
[--presets coral medusa ...]`
Each preset is built with `Simulation` on numpy (warm-up included), advanced `--frames` video
frames at speed 1 and rendered once; tiles are labelled with the preset name, engine and palette.
It is a look check for the renderer and the presets — the picture users pay for — and the timing
line per preset is informational only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ca_server.presets import load_preset, preset_names
from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend

LABEL_HEIGHT_PX = 18
GAP_PX = 2


def render_preset(name: str, size: int, frames: int, seed: int) -> np.ndarray:
    """The preset's frame after warm-up and `frames` ticks: (size, size, 3) uint8 on the host."""
    backend = numpy_backend()
    sim = Simulation(backend, width=size, height=size, preset=name, seed=seed)
    frame = None
    for _ in range(frames):
        frame = sim.next_frame(frame)
    return backend.to_host(sim.render(frame))


def labelled_tile(frame: np.ndarray, label: str) -> Image.Image:
    height, width = frame.shape[:2]
    tile = Image.new("RGB", (width, height + LABEL_HEIGHT_PX), (12, 12, 14))
    tile.paste(Image.fromarray(frame), (0, LABEL_HEIGHT_PX))
    ImageDraw.Draw(tile).text((4, 3), label, fill=(220, 220, 225))
    return tile


def contact_sheet(tiles: list[Image.Image], columns: int) -> Image.Image:
    tile_w, tile_h = tiles[0].size
    rows = -(-len(tiles) // columns)
    sheet = Image.new(
        "RGB",
        (columns * tile_w + (columns - 1) * GAP_PX, rows * tile_h + (rows - 1) * GAP_PX),
        (0, 0, 0),
    )
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        sheet.paste(tile, (column * (tile_w + GAP_PX), row * (tile_h + GAP_PX)))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="tile side in px (default 256)")
    parser.add_argument("--frames", type=int, default=120, help="ticks after warm-up")
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/presets.png"))
    parser.add_argument("--presets", nargs="*", help="default: every preset")
    args = parser.parse_args()
    names = args.presets or preset_names()
    tiles = []
    for name in names:
        started = time.perf_counter()
        frame = render_preset(name, args.size, args.frames, args.seed)
        preset = load_preset(name)
        palette = preset.render.get("palette", "oil_slick")
        tiles.append(labelled_tile(frame, f"{name}  ({preset.engine}, {palette})"))
        print(f"{name:<14} {time.perf_counter() - started:6.1f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(tiles, min(args.columns, len(tiles))).save(args.out)
    print(f"wrote {args.out} ({len(tiles)} presets)")


if __name__ == "__main__":
    main()
