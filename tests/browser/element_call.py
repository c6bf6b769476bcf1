"""The real Element Call (npm `@element-hq/element-call-embedded`, pinned in package-lock.json)
in Debian's headless Chromium, driven through playwright-core by `driver.mjs`.

What a test gets is an `ElementCallPage`: a Matrix user logged in by an injected session, in a
room's call, with a fake microphone playing a WAV tone. It shows what a person would see and
hear: `tiles()` (name tag, status text such as "Waiting for media…"), `inbound_audio()` /
`wait_for_audio()` (what each remote LiveKit participant sounds like: `audioLevel` and
`totalAudioEnergy` of the inbound-rtp audio stream, keyed by participant identity) and
`screenshot()`.

Nothing is downloaded here: the browser is /usr/bin/chromium (apt), Element Call and
playwright-core come from `npm ci`. A missing piece is an error that names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from rtcbot_stack.element_call_web import EC_PACKAGE
from tests.stack.node_driver import NodeDriver

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DRIVER = HERE / "driver.mjs"
PROBE = HERE / "probe.js"
EC_VERSION = "0.26.1"
CHROMIUM_ENV = "RTCBOT_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
RTC_MODES = ("compatibility", "matrix_2_0")  # the two modes EC 0.26.1 knows

# Chromium inside the test namespace: fake media, no DNS, loopback ICE allowed.
CHROMIUM_ARGS = (
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--disable-dev-shm-usage",
)


class HarnessMissing(RuntimeError):
    """Something the browser tests need is not installed (the message says what and how)."""


class ElementCallError(AssertionError):
    """Element Call did not reach the expected state; the message has the page's text and the
    tail of the browser console."""


@dataclass(frozen=True)
class Installation:
    node: str
    chromium: str
    dist: Path  # Element Call's built files


def find_installation() -> Installation:
    """Check that node, chromium, playwright-core and Element Call are there; say what is not."""
    missing: list[str] = []
    node = shutil.which("node")
    if node is None:
        missing.append("`node` is not on PATH (install Node.js ≥ 20)")
    chromium = os.environ.get(CHROMIUM_ENV, DEFAULT_CHROMIUM)
    if not (Path(chromium).is_file() and os.access(chromium, os.X_OK)):
        missing.append(
            f"no Chromium at {chromium} (`apt-get install chromium`, or set {CHROMIUM_ENV})"
        )
    modules = REPO / "node_modules"
    if not (modules / "playwright-core" / "package.json").is_file():
        missing.append(f"{modules}/playwright-core (run `npm ci` in {REPO})")
    pkg = modules / EC_PACKAGE
    dist = pkg / "dist"
    if not (dist / "index.html").is_file():
        missing.append(f"{dist}/index.html (run `npm ci` in {REPO})")
    else:
        version = json.loads((pkg / "package.json").read_text()).get("version")
        if version != EC_VERSION:
            missing.append(
                f"{EC_PACKAGE} is {version}, the harness is for {EC_VERSION} (`npm ci`)"
            )
    if missing:
        raise HarnessMissing(
            "the Element Call browser tests cannot run: " + "; ".join(missing) + ". "
            "`make setup` installs all of it."
        )
    assert node is not None
    return Installation(node=node, chromium=chromium, dist=dist)


def write_tone_wav(path: Path, freq: float, seconds: float = 4.0, rate: int = 48_000) -> Path:
    """A sine tone (amplitude 0.5) for Chromium's fake microphone, which loops the file.
    A whole number of periods per file keeps the loop click-free."""
    periods = max(1, round(freq * seconds))
    n = round(periods * rate / freq)
    t = np.arange(n) / rate
    sf.write(path, 0.5 * np.sin(2 * np.pi * freq * t), rate, subtype="PCM_16")
    return path


# -- the Node driver ----------------------------------------------------------------------------
class Driver(NodeDriver):
    """One `node driver.mjs` process (playwright-core driving Chromium)."""

    def __init__(self, install: Installation, log_path: Path) -> None:
        super().__init__("the browser driver", install.node, DRIVER, REPO, log_path, 32 * 2**20)
        self.install = install

    async def start(self, timeout: float = 20) -> None:
        try:
            await super().start(timeout)
        except (TimeoutError, ConnectionError) as e:
            raise HarnessMissing(
                f"the browser driver (node {DRIVER.name}) did not start: {e}; "
                f"its log: {self.log_tail()}"
            ) from e


class Chromium:
    """Chromium browsers of one test session, one per fake-microphone WAV (the WAV is a
    command-line flag of the whole browser). A browser is launched on first use and shared."""

    def __init__(self, driver: Driver, wav_dir: Path) -> None:
        self.driver = driver
        self.wav_dir = wav_dir
        self._browsers: dict[float, int] = {}
        self._lock = asyncio.Lock()
        self.version = ""
        self.launch_seconds: dict[float, float] = {}

    async def browser_for_tone(self, freq: float) -> int:
        async with self._lock:
            if freq not in self._browsers:
                wav = write_tone_wav(self.wav_dir / f"tone-{freq:g}Hz.wav", freq)
                args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"]
                t0 = time.monotonic()
                res = await self.driver.call(
                    "launch", executablePath=self.driver.install.chromium, args=args
                )
                self.launch_seconds[freq] = time.monotonic() - t0
                self._browsers[freq] = int(res["browser"])
                self.version = str(res["version"])
            return self._browsers[freq]

    async def kill_browser(self, freq: float) -> list[int]:
        """SIGKILL the browser of this tone and every process it started (no page gets to
        hang up or say goodbye, as when the machine dies), and forget it: the next page with
        this tone gets a new browser. Returns the pids killed. Found by the browser's
        fake-microphone flag, whose WAV path is unique to this session and tone."""
        flag = f"--use-file-for-fake-audio-capture={self.wav_dir / f'tone-{freq:g}Hz.wav'}"

        def process_tree() -> set[int]:
            parents: dict[int, int] = {}
            doomed: set[int] = set()
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                with contextlib.suppress(OSError, ValueError, IndexError):
                    args = (proc / "cmdline").read_bytes().split(b"\0")
                    # /proc/<pid>/stat: "pid (comm) state ppid …"; comm may contain spaces.
                    stat = (proc / "stat").read_text()
                    parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                    if flag.encode() in args:
                        doomed.add(int(proc.name))
            while more := {p for p, pp in parents.items() if pp in doomed} - doomed:
                doomed |= more  # renderers, GPU and network processes, zygotes
            return doomed

        async with self._lock:
            if self._browsers.pop(freq, None) is None:
                raise KeyError(f"no browser for {freq:g} Hz in this session")
            self.launch_seconds.pop(freq, None)
            doomed = await asyncio.to_thread(process_tree)
            for pid in sorted(doomed):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return sorted(doomed)


# -- what the page shows ------------------------------------------------------------------------
@dataclass(frozen=True)
class Tile:
    name: str | None  # the name tag, as shown
    text: str  # all text on the tile (name tag, status lines)
    identity: str | None  # LiveKit identity, only with the connection-stats setting on
    video_enabled: bool
    waiting_for_media: bool  # "Waiting for media…"


@dataclass(frozen=True)
class TilePicture:
    """What a tile's video shows now (None fields: the tile has no playing video)."""

    name: str | None  # the tile's name tag
    width: int | None  # the video's own size
    height: int | None
    red_share: float  # share of clearly red pixels in a 160×90 copy of the frame
    mean_rgb: tuple[float, float, float] | None


@dataclass(frozen=True)
class InboundAudio:
    """One inbound-rtp audio stream of the page, at one moment."""

    identity: str | None  # LiveKit participant identity (None: the SFU does not know it)
    track_sid: str | None  # LiveKit track sid (TR_…), from the SDP msid of the stream's mid
    participant_sid: str | None  # LiveKit participant sid (PA_…), likewise
    receiver_track_id: str | None  # the MediaStreamTrack id Chromium gave the receiver
    audio_level: float  # 0..1, most recent
    total_audio_energy: float  # cumulative (sum of level² × duration)
    total_samples_duration: float  # seconds of audio received
    packets_received: int

    @staticmethod
    def from_stats(raw: dict[str, Any], identities: dict[str, str]) -> InboundAudio:
        # LiveKit's msid: stream "PA_<participant>|TR_<track>", track "TR_<track>"
        stream = str(raw.get("streamId") or "")
        participant_sid, _, stream_track = stream.partition("|")
        track_sid = raw.get("msidTrack") or stream_track or None
        identity = None
        for key in (track_sid, participant_sid, raw.get("trackIdentifier")):
            if key and key in identities:
                identity = identities[key]
                break
        return InboundAudio(
            identity=identity,
            track_sid=track_sid,
            participant_sid=participant_sid or None,
            receiver_track_id=raw.get("trackIdentifier"),
            audio_level=float(raw.get("audioLevel") or 0),
            total_audio_energy=float(raw.get("totalAudioEnergy") or 0),
            total_samples_duration=float(raw.get("totalSamplesDuration") or 0),
            packets_received=int(raw.get("packetsReceived") or 0),
        )


@dataclass(frozen=True)
class HeardAudio:
    """What the page heard from one participant over a window."""

    identity: str
    seconds: float  # audio duration in the window
    energy: float  # totalAudioEnergy gained in the window
    audio_level: float  # the last audioLevel

    @property
    def mean_power(self) -> float:
        """Mean of audioLevel² over the window. audioLevel is the peak amplitude of the
        played-out audio (0..1), so a sine of amplitude 0.5 gives about 0.25; a stream that
        is received but not played (no element renders it) stays at 0."""
        return self.energy / self.seconds if self.seconds > 0 else 0.0


# track sid / participant sid -> identity, from the SFU
IdentityResolver = Callable[[], Awaitable[dict[str, str]]]


@dataclass
class ElementCallPage:
    driver: Driver
    page_id: int
    url: str
    user_id: str
    resolve_identities: IdentityResolver
    failure_dir: Path
    _identities: dict[str, str] = field(default_factory=dict)

    async def evaluate(self, expression: str, timeout: float = 30) -> Any:
        return await self.driver.call(
            "evaluate", timeout, page=self.page_id, expression=expression
        )

    async def state(self) -> dict[str, Any]:
        return dict(await self.evaluate("window.__rtcbot.state()"))

    async def tiles(self) -> list[Tile]:
        raw = await self.evaluate("window.__rtcbot.tiles()")
        return [
            Tile(
                name=t["name"],
                text=t["text"],
                identity=t["identity"],
                video_enabled=bool(t["videoEnabled"]),
                waiting_for_media=bool(t["waitingForMedia"]),
            )
            for t in raw
        ]

    async def tile_pictures(self) -> list[TilePicture]:
        """Each tile's current video frame, sampled in the page (colours, not pixels)."""
        out = []
        for t in await self.evaluate("window.__rtcbot.tilePictures()"):
            pic = t.get("picture") or {}
            rgb = pic.get("meanRgb")
            out.append(
                TilePicture(
                    name=t.get("name"),
                    width=pic.get("width"),
                    height=pic.get("height"),
                    red_share=float(pic.get("redShare") or 0.0),
                    mean_rgb=(float(rgb[0]), float(rgb[1]), float(rgb[2])) if rgb else None,
                )
            )
        return out

    async def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.driver.call("screenshot", page=self.page_id, path=str(path))
        return path

    async def console_tail(self, lines: int = 40) -> list[str]:
        try:
            return list(await self.driver.call("console", 10, page=self.page_id, lines=lines))
        except Exception as e:  # the driver may be gone; the caller is already failing
            return [f"(console unavailable: {e})"]

    async def fail(self, what: str) -> ElementCallError:
        """An error describing the page now: its text, a screenshot, the console tail."""
        parts = [what]
        try:
            st = await self.state()
            parts.append(f"page state: {json.dumps(st)}")
        except Exception as e:
            parts.append(f"(page state unavailable: {e})")
        try:
            shot = await self.screenshot(self.failure_dir / f"failure-{self.page_id}.png")
            parts.append(f"screenshot: {shot}")
        except Exception as e:
            parts.append(f"(no screenshot: {e})")
        tail = await self.console_tail(40)
        parts.append("browser console (last 40 lines):\n  " + "\n  ".join(tail))
        return ElementCallError("\n".join(parts))

    async def wait_for_state(
        self, done: Callable[[dict[str, Any]], bool], what: str, timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = await self.state()
            if done(st):
                return st
            if st.get("error"):
                raise await self.fail(
                    f"Element Call shows an error instead of {what}: {st['error']}"
                )
            if time.monotonic() > deadline:
                raise await self.fail(f"Element Call: {what} not reached within {timeout:g} s")
            await asyncio.sleep(0.25)

    async def join(self, timeout: float = 30) -> float:
        """Click "Join call" in the lobby and wait for the in-call view with a tile and a
        connected peer connection. Returns the seconds it took from the lobby. Fails at once
        when EC shows its error page, else after `timeout` (each wait), with the page's text,
        a screenshot and the console tail."""
        await self.wait_for_state(lambda s: s["lobby"] or s["inCall"], "the lobby", timeout)
        t0 = time.monotonic()
        await self.driver.call(
            "click", page=self.page_id, selector='[data-testid="lobby_joinCall"]', timeoutMs=10000
        )
        await self.wait_for_state(
            lambda s: s["inCall"] and s["tiles"] > 0 and s["connected"] > 0,
            "the joined call (in-call view, a tile, a connected peer connection)",
            timeout,
        )
        return time.monotonic() - t0

    async def hang_up(self, timeout: float = 30) -> float:
        """Click Element Call's hang-up button and wait until the page has left the call (no
        in-call view, no connected peer connection). Returns the seconds it took. EC sends
        its leave (its delayed leave, at once) and goes to its home page.

        The click is the DOM's (`element.click()`, which runs EC's handler): Playwright's
        click sometimes waited past its timeout for the navigation the hang-up starts."""
        t0 = time.monotonic()
        clicked = await self.evaluate(
            "(() => { const b = document.querySelector('[data-testid=\"incall_leave\"]');"
            " if (!b) return false; b.click(); return true; })()"
        )
        if not clicked:
            raise await self.fail("no hang-up button (incall_leave) on the page")
        await self.wait_for_state(
            lambda s: not s["inCall"] and s["connected"] == 0,
            "the call left (no in-call view, no connected peer connection)",
            timeout,
        )
        return time.monotonic() - t0

    async def wait_for_tiles(
        self, predicate: Callable[[list[Tile]], bool], what: str, timeout: float = 30
    ) -> list[Tile]:
        deadline = time.monotonic() + timeout
        while True:
            tiles = await self.tiles()
            if predicate(tiles):
                return tiles
            if time.monotonic() > deadline:
                raise await self.fail(f"tiles: {what} not shown within {timeout:g} s: {tiles}")
            await asyncio.sleep(0.25)

    async def inbound_audio(self) -> list[InboundAudio]:
        """Every inbound audio stream of the page, with the sender's LiveKit identity."""
        raw = await self.evaluate("window.__rtcbot.inboundAudio()")
        audio = [InboundAudio.from_stats(r, self._identities) for r in raw]
        if any(a.identity is None for a in audio):  # a new participant or track: ask the SFU
            self._identities.update(await self.resolve_identities())
            audio = [InboundAudio.from_stats(r, self._identities) for r in raw]
        return audio

    async def audio_by_identity(self) -> dict[str, InboundAudio]:
        """Inbound audio keyed by participant identity (the track id when unknown)."""
        return {
            (a.identity or a.track_sid or a.receiver_track_id or "?"): a
            for a in await self.inbound_audio()
        }

    async def wait_for_audio(
        self,
        identity: str,
        min_power: float = 1e-3,
        window: float = 1.0,
        timeout: float = 30,
    ) -> HeardAudio:
        """Wait until the page plays audio from `identity` with a mean power (level²) of at
        least `min_power` over `window` seconds of received audio."""
        deadline = time.monotonic() + timeout
        first: InboundAudio | None = None
        last: HeardAudio | None = None
        while True:
            now = (await self.audio_by_identity()).get(identity)
            if now is not None:
                if first is None or now.total_samples_duration < first.total_samples_duration:
                    first = now  # a new stream (reconnect) starts the window again
                seconds = now.total_samples_duration - first.total_samples_duration
                last = HeardAudio(
                    identity=identity,
                    seconds=seconds,
                    energy=now.total_audio_energy - first.total_audio_energy,
                    audio_level=now.audio_level,
                )
                if seconds >= window:
                    if last.mean_power >= min_power:
                        return last
                    first = now  # too quiet: measure the next window
            if time.monotonic() > deadline:
                streams = await self.inbound_audio()
                raise await self.fail(
                    f"no audio from {identity} (mean power ≥ {min_power:g} over {window:g} s) "
                    f"within {timeout:g} s; last window: {last}; inbound audio: {streams}"
                )
            await asyncio.sleep(0.25)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.driver.call("closePage", 15, page=self.page_id)


def room_url(base: str, room_id: str) -> str:
    """EC's link to a room's call, by room id (`/room/#?roomId=…`)."""
    return f"{base}/room/#?roomId={urllib.parse.quote(room_id, safe='')}"


def session_storage(
    user_id: str,
    device_id: str,
    access_token: str,
    rtc_mode: str | None = None,
    connection_stats: bool = False,
) -> dict[str, str]:
    """localStorage entries set before EC's scripts run: the Matrix session (EC's
    `matrix-auth-store`) and settings. Audio processing is off so a pure tone stays a tone."""
    storage = {
        "matrix-auth-store": json.dumps(
            {
                "user_id": user_id,
                "device_id": device_id,
                "access_token": access_token,
                "passwordlessUser": False,
            }
        ),
        "matrix-setting-echo-cancellation": "false",
        "matrix-setting-noise-suppression": "false",
        "matrix-setting-auto-gain-control": "false",
        "matrix-setting-show-connection-stats": json.dumps(connection_stats),
    }
    if rtc_mode is not None:
        if rtc_mode not in RTC_MODES:
            raise ValueError(f"rtc_mode {rtc_mode!r}: Element Call {EC_VERSION} knows {RTC_MODES}")
        storage["matrix-setting-matrix-rtc-mode"] = json.dumps(rtc_mode)
    return storage


async def open_page(
    driver: Driver,
    browser: int,
    url: str,
    storage: dict[str, str],
    user_id: str,
    resolve_identities: IdentityResolver,
    failure_dir: Path,
) -> ElementCallPage:
    res = await driver.call(
        "newPage", browser=browser, storage=storage, initScripts=[PROBE.read_text()]
    )
    page = ElementCallPage(
        driver=driver,
        page_id=int(res["page"]),
        url=url,
        user_id=user_id,
        resolve_identities=resolve_identities,
        failure_dir=failure_dir,
    )
    try:
        await driver.call("goto", page=page.page_id, url=url, timeoutMs=30000)
    except Exception as e:
        raise await page.fail(f"loading {url} failed: {e}") from e
    return page
