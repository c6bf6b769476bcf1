"""What the bot's tile shows in a call: a small video track saying what the bot is doing.

Element Call shows every LiveKit participant that matches a call membership as a tile; a
participant that publishes no video is an avatar, one that publishes nothing at all (the old
hidden recorder) is "Waiting for media…". So the bot publishes a low-rate camera track whose
frames say "● Recording" with the elapsed time, or "Announcer": the call itself shows that it
is being recorded, to everyone, in every client.

Frames are drawn with numpy from a built-in 5×7 bitmap font (no imaging library), 320×240
RGBA, a few per second; a frame is redrawn only when its text changes (once a second while
recording), so the cost is the tiny VP8 encode of a still picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from livekit import rtc

from ..tasks import cancel_and_wait

WIDTH, HEIGHT = 320, 240
FPS = 5.0
TRACK_NAME = "rtcbot-status"
LabelKind = Literal["recording", "announcer"]

_FONT_ROWS: dict[str, tuple[str, ...]] = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    ":": (".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."),
    " ": (".....",) * 7,
    "(": ("...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."),
    ")": (".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."),
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "a": (".....", ".....", ".###.", "....#", ".####", "#...#", ".####"),
    "b": ("#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."),
    "c": (".....", ".....", ".###.", "#....", "#....", "#...#", ".###."),
    "d": ("....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"),
    "e": (".....", ".....", ".###.", "#...#", "#####", "#....", ".###."),
    "g": (".....", ".....", ".####", "#...#", ".####", "....#", ".###."),
    "i": ("..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."),
    "n": (".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"),
    "o": (".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."),
    "r": (".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."),
    "s": (".....", ".....", ".####", "#....", ".###.", "....#", "####."),
    "t": (".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."),
    "u": (".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"),
}
FONT: dict[str, np.ndarray] = {
    ch: np.array([[c == "#" for c in row] for row in rows], dtype=bool)
    for ch, rows in _FONT_ROWS.items()
}
_UNKNOWN = np.ones((7, 5), dtype=bool)

BACKGROUND = {"recording": (28, 28, 32), "announcer": (22, 44, 92)}
RED = (230, 30, 40)
WHITE = (245, 245, 245)
GREY = (150, 150, 160)


@dataclass(frozen=True)
class Label:
    """What one frame says: the kind (colours, icon), a title, an optional second line."""

    kind: LabelKind
    title: str
    detail: str = ""
    footer: str = ""


def recording_label(elapsed_s: float, footer: str = "") -> Label:
    whole = max(0, int(elapsed_s))
    hours, rest = divmod(whole, 3600)
    clock = f"{rest // 60:02d}:{rest % 60:02d}"
    return Label("recording", "Recording", f"{hours}:{clock}" if hours else clock, footer)


def announcer_label(footer: str = "") -> Label:
    return Label("announcer", "Announcer", "", footer)


def text_width(text: str, scale: int) -> int:
    return max(0, len(text) * 6 * scale - scale)


def draw_text(
    img: np.ndarray, text: str, x: int, y: int, scale: int, color: tuple[int, int, int]
) -> None:
    """Draw `text` with its top-left corner at (x, y), each font pixel `scale`×`scale`."""
    for i, ch in enumerate(text):
        glyph = FONT.get(ch, _UNKNOWN)
        mask = np.kron(glyph, np.ones((scale, scale), dtype=bool))
        gx = x + i * 6 * scale
        h, w = mask.shape
        y0, x0 = max(0, y), max(0, gx)
        y1, x1 = min(img.shape[0], y + h), min(img.shape[1], gx + w)
        if y1 <= y0 or x1 <= x0:
            continue
        region = img[y0:y1, x0:x1, :3]
        region[mask[y0 - y : y1 - y, x0 - gx : x1 - gx]] = color


def draw_disc(img: np.ndarray, cx: int, cy: int, r: int, color: tuple[int, int, int]) -> None:
    yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r, :3] = color


def draw_speaker(img: np.ndarray, x: int, y: int, size: int, color: tuple[int, int, int]) -> None:
    """A loudspeaker: a small box and a cone widening to the right, `size` pixels tall."""
    box_h = size // 3
    img[y + box_h : y + 2 * box_h, x : x + size // 3, :3] = color
    for dx in range(size // 2):
        half = box_h // 2 + (dx * (size // 2 - box_h // 2)) // max(1, size // 2)
        cx = x + size // 3 + dx
        img[y + size // 2 - half : y + size // 2 + half + 1, cx, :3] = color


def render(label: Label, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """One RGBA frame (height × width × 4, uint8) showing `label`. Everything but the footer
    sits in the middle square, so a tile that crops the picture to a square keeps it."""
    img = np.empty((height, width, 4), dtype=np.uint8)
    img[:, :, :3] = BACKGROUND[label.kind]
    img[:, :, 3] = 255
    cx = width // 2
    icon = 34
    top = max(4, height // 2 - 80) if label.detail else max(4, height // 2 - 50)
    if label.kind == "recording":
        draw_disc(img, cx, top + icon // 2, icon // 2, RED)
    else:
        draw_speaker(img, cx - icon // 2, top, icon, WHITE)
    y = top + icon + 12
    scale = 3 if text_width(label.title, 3) <= min(width, height) - 8 else 2
    draw_text(img, label.title, cx - text_width(label.title, scale) // 2, y, scale, WHITE)
    y += 7 * scale + 12
    if label.detail:
        draw_text(img, label.detail, cx - text_width(label.detail, 4) // 2, y, 4, WHITE)
    if label.footer:
        draw_text(img, label.footer, cx - text_width(label.footer, 2) // 2, height - 20, 2, GREY)
    return img


class Indicator:
    """Publishes the status track into a room and keeps its frames current."""

    def __init__(
        self,
        label: Callable[[], Label],
        log: logging.Logger,
        *,
        fps: float = FPS,
        width: int = WIDTH,
        height: int = HEIGHT,
    ) -> None:
        self.label = label
        self.log = log
        self.fps = fps
        self.width = width
        self.height = height
        self._source: rtc.VideoSource | None = None
        self._publication: rtc.LocalTrackPublication | None = None
        self._room: rtc.Room | None = None
        self._task: asyncio.Task[None] | None = None
        self._drawn: Label | None = None
        self._frame: rtc.VideoFrame | None = None
        self.frames_sent = 0

    @property
    def published(self) -> bool:
        return self._publication is not None

    @property
    def track_sid(self) -> str | None:
        return self._publication.sid if self._publication is not None else None

    def current(self) -> Label | None:
        return self._drawn

    async def publish(self, room: rtc.Room) -> None:
        """Publish a new status track into `room` (a previous one is dropped first)."""
        await self.close()
        source = rtc.VideoSource(self.width, self.height)
        track = rtc.LocalVideoTrack.create_video_track(TRACK_NAME, source)
        options = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_CAMERA,
            simulcast=False,
            video_encoding=rtc.VideoEncoding(max_bitrate=120_000, max_framerate=self.fps),
        )
        self._source = source
        self._drawn = None
        self._capture()  # a first frame before anyone subscribes
        try:
            pub = await room.local_participant.publish_track(track, options)
        except Exception:
            self._source = None
            with contextlib.suppress(Exception):
                await source.aclose()
            raise
        self._publication, self._room = pub, room
        self._task = asyncio.ensure_future(self._loop())

    def refresh(self) -> None:
        """Draw the current label now (e.g. after a role changed), not at the next tick."""
        if self._source is not None:
            self._capture()

    async def close(self) -> None:
        """Stop the frames and unpublish the track (if its room is still connected)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        pub, self._publication = self._publication, None
        room, self._room = self._room, None
        if pub is not None and room is not None and room.isconnected():
            with contextlib.suppress(Exception):
                await room.local_participant.unpublish_track(pub.sid)
        source, self._source = self._source, None
        if source is not None:
            with contextlib.suppress(Exception):
                await source.aclose()

    def _capture(self) -> None:
        source = self._source
        if source is None:
            return
        label = self.label()
        if label != self._drawn or self._frame is None:
            pixels = render(label, self.width, self.height)
            self._frame = rtc.VideoFrame(
                self.width, self.height, rtc.VideoBufferType.RGBA, pixels.tobytes()
            )
            self._drawn = label
        source.capture_frame(self._frame)
        self.frames_sent += 1

    async def _loop(self) -> None:
        period = 1.0 / self.fps
        while True:
            await asyncio.sleep(period)
            try:
                self._capture()
            except Exception:
                self.log.exception("drawing the status frame failed")
                return
