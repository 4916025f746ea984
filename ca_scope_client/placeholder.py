"""The frame Scope shows while no daemon is feeding the ring, so the user sees why.

A dark test card with diagonal warning stripes top and bottom and two lines of text: what is
wrong and the command that fixes it. Text is drawn with Pillow when it is importable (it is a
dependency of ca-server, so normally it is), else the card carries the stripes alone, which are
still unmistakably not a cellular automaton. Frames are cached per (size, text): the plugin
asks for one every half second. The card has the size the daemon will serve, so a stream
opened on the card keeps its size when frames arrive.
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np

logger = logging.getLogger(__name__)

BACKGROUND_RGB = (24, 24, 28)
STRIPE_RGB = (240, 180, 0)
TEXT_RGB = (235, 235, 235)
HINT_RGB = (120, 200, 255)
# `ca-server serve`'s default frame size (ServerConfig.resolved; a test keeps them equal).
GPU_DEFAULT_SIZE = 1024
CPU_DEFAULT_SIZE = 512
SIZE_ENV = ("CA_SERVER_HEIGHT", "CA_SERVER_WIDTH")


def expected_frame_size(*, cuda: bool | None = None) -> tuple[int, int]:
    """(height, width) the daemon will serve before its ring says: `$CA_SERVER_HEIGHT` and
    `$CA_SERVER_WIDTH` (what `serve` reads too) when set, else its default for the backend
    it picks on this host (`cuda`: whether there is a CUDA GPU; None: ask torch)."""
    if cuda is None:
        cuda = _cuda_available()
    side = GPU_DEFAULT_SIZE if cuda else CPU_DEFAULT_SIZE
    size = []
    for variable in SIZE_ENV:
        try:
            value = int(os.environ.get(variable, ""))
        except ValueError:
            value = 0
        size.append(value if 16 <= value <= 8192 else side)
    return size[0], size[1]


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # no torch (tests only): the daemon cannot be on a GPU Scope can use
        return False
    return bool(torch.cuda.is_available())


def _stripes(height: int, width: int, band_px: int) -> np.ndarray:
    """A (height, width) bool mask of 45° stripes `band_px` wide."""
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    return ((rows + cols) // max(1, band_px)) % 2 == 0


def _draw_text(frame: np.ndarray, lines: tuple[tuple[str, tuple[int, int, int]], ...]) -> None:
    """Draw `lines` centred on `frame` (H, W, 3) uint8 in place; no-op without Pillow."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return
    height, width = frame.shape[:2]
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    size_px = max(8, min(width // 18, height // 10))
    font = _font(ImageFont, size_px)
    widest_px = max(draw.textlength(text, font=font) for text, _ in lines)
    if widest_px > 0.92 * width:  # shrink once so the longest line fits
        size_px = max(8, int(size_px * 0.92 * width / widest_px))
        font = _font(ImageFont, size_px)
    line_gap_px = size_px // 2
    boxes = [draw.textbbox((0, 0), text, font=font) for text, _ in lines]
    total_px = sum(b[3] - b[1] for b in boxes) + line_gap_px * (len(lines) - 1)
    y = (height - total_px) // 2
    for (text, rgb), box in zip(lines, boxes, strict=True):
        x = max(0, (width - (box[2] - box[0])) // 2)
        draw.text((x - box[0], y - box[1]), text, font=font, fill=rgb)
        y += box[3] - box[1] + line_gap_px
    frame[...] = np.asarray(image)


def _font(image_font, size_px: int):
    try:
        return image_font.load_default(size=size_px)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return image_font.load_default()


@functools.lru_cache(maxsize=4)
def placeholder_frame(height: int, width: int, problem: str, fix: str) -> np.ndarray:
    """The placeholder card, shape (1, height, width, 3), dtype uint8, range [0, 255], host
    memory, read-only (shared between callers through the cache)."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[...] = BACKGROUND_RGB
    band_px = max(4, min(height, width) // 24)
    stripe_rows = max(1, height // 10)
    mask = _stripes(stripe_rows, width, band_px)
    frame[:stripe_rows][mask] = STRIPE_RGB
    frame[height - stripe_rows :][mask] = STRIPE_RGB
    try:
        _draw_text(frame, ((problem, TEXT_RGB), (fix, HINT_RGB)))
    except Exception as exc:  # a broken font install must not cost the user the stripes
        logger.debug("placeholder text not drawn: %s", exc)
    frame.flags.writeable = False
    return frame[None]
