"""The call card's picture of who spoke when: one row per person, a time axis. Pillow, PNG.

Blocking (font loading, drawing, PNG encoding): call it through asyncio.to_thread. Names are
people's text: they are drawn as glyphs, never interpreted, and cut to fit the label column.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

from PIL import Image, ImageDraw, ImageFont

# Fonts that come with Debian's fonts-dejavu-core / fonts-liberation (chromium pulls them in).
FONT_PATHS: Final = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
)
WIDTH: Final = 760
LABEL_W: Final = 170  # the name column
PAD: Final = 12
ROW_H: Final = 30
BAR_H: Final = 18
AXIS_H: Final = 30
FONT_SIZE: Final = 14
MAX_ROWS: Final = 30

BACKGROUND: Final = (255, 255, 255)
TEXT: Final = (40, 40, 40)
GRID: Final = (225, 225, 225)
PRESENT: Final = (232, 236, 242)  # in the call, not speaking
# One colour per row (cycled): speaking.
PALETTE: Final = (
    (13, 110, 253),
    (220, 53, 69),
    (25, 135, 84),
    (253, 126, 20),
    (111, 66, 193),
    (32, 201, 151),
    (214, 51, 132),
    (102, 16, 242),
)

Span = tuple[float, float]  # seconds from the call's start


@dataclass(frozen=True)
class Row:
    name: str
    present: Sequence[Span]  # when the person was in the call
    spoke: Sequence[Span]  # when they spoke


@dataclass(frozen=True)
class Layout:
    """Where things are in the picture (the tests read pixels through it)."""

    rows: int
    duration_s: float

    @property
    def width(self) -> int:
        return WIDTH

    @property
    def height(self) -> int:
        return PAD + self.rows * ROW_H + AXIS_H + PAD

    @property
    def plot_x0(self) -> int:
        return LABEL_W

    @property
    def plot_x1(self) -> int:
        return WIDTH - PAD

    def x_at(self, t: float) -> int:
        """The x of second `t` of the call."""
        span = max(self.duration_s, 1e-9)
        frac = min(1.0, max(0.0, t / span))
        return round(self.plot_x0 + frac * (self.plot_x1 - self.plot_x0))

    def row_y(self, i: int) -> int:
        """The y of the middle of row `i`'s bar."""
        return PAD + i * ROW_H + ROW_H // 2


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in FONT_PATHS:
        if Path(path).is_file():
            try:
                return ImageFont.truetype(path, size)
            except OSError:
                continue
    return ImageFont.load_default(size)


def _fit(
    draw: ImageDraw.ImageDraw,
    text: str,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    width: int,
) -> str:
    """`text` on one line, cut with "…" to `width` pixels."""
    flat = " ".join(text.split()) or "?"
    if draw.textlength(flat, font=font) <= width:
        return flat
    while flat and draw.textlength(flat + "…", font=font) > width:
        flat = flat[:-1]
    return flat + "…"


def _tick_step(duration_s: float) -> float:
    for step in (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if duration_s / step <= 8:
            return float(step)
    return 14400.0


def _tick_label(t: float) -> str:
    s = int(t)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600} h {s % 3600 // 60:02d}"


def color_of(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


def draw_timeline(rows: Sequence[Row], duration_s: float) -> tuple[bytes, Layout]:
    """The PNG and its layout. More than MAX_ROWS people: the first MAX_ROWS are drawn."""
    rows = list(rows)[:MAX_ROWS]
    layout = Layout(len(rows), max(duration_s, 1.0))
    img = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    font = _font(FONT_SIZE)
    small = _font(FONT_SIZE - 3)
    plot_bottom = PAD + len(rows) * ROW_H
    # Grid and axis.
    step = _tick_step(layout.duration_s)
    t = 0.0
    while t <= layout.duration_s + 1e-6:
        x = layout.x_at(t)
        draw.line([(x, PAD), (x, plot_bottom)], fill=GRID)
        draw.line([(x, plot_bottom), (x, plot_bottom + 4)], fill=TEXT)
        draw.text((x, plot_bottom + 6), _tick_label(t), fill=TEXT, font=small, anchor="mt")
        t += step
    draw.line([(layout.plot_x0, plot_bottom), (layout.plot_x1, plot_bottom)], fill=TEXT)
    for i, row in enumerate(rows):
        y = layout.row_y(i)
        top, bottom = y - BAR_H // 2, y + BAR_H // 2
        label = _fit(draw, row.name, font, LABEL_W - 2 * PAD)
        draw.text((PAD, y), label, fill=TEXT, font=font, anchor="lm")
        for s, e in row.present:
            draw.rectangle([(layout.x_at(s), top), (layout.x_at(e), bottom)], fill=PRESENT)
        for s, e in row.spoke:
            x0, x1 = layout.x_at(s), layout.x_at(e)
            draw.rectangle([(x0, top), (max(x1, x0 + 1), bottom)], fill=color_of(i))
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue(), layout
