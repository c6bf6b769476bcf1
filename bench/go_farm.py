"""The Go publisher farm (bench/go_farm/): built once, fed with pre-encoded speech.

The Python farm (publisher_farm.py) encodes Opus in the LiveKit SDK for every speaker, about
1.5 % of a core each, so one core feeds ~60 speakers. The Go farm sends packets encoded once
beforehand (`write_voices`: the same speech-like audio, 20 ms Opus packets), which leaves
only packetizing, SRTP and, in encrypted mode, AES-GCM per packet.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np

from bench.publisher_farm import RATE, speech_like
from rtcbot_stack.paths import CACHE_DIR, ROOT

if TYPE_CHECKING:
    from rtcbot_stack.stack import Stack

SOURCE = ROOT / "bench" / "go_farm"
VOICES = 10  # distinct voices; speaker i speaks voice i % 10, each from its own offset


def binary() -> Path:
    """The farm's program, built from bench/go_farm when its sources changed."""
    digest = hashlib.sha1()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    target = CACHE_DIR / f"go-farm-{digest.hexdigest()[:12]}"
    if not target.exists():
        if shutil.which("go") is None:
            raise RuntimeError("Go is needed once to build bench/go_farm")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        env = {**os.environ, "CGO_ENABLED": "0"}
        subprocess.run(["go", "build", "-o", str(tmp), "."], cwd=SOURCE, env=env, check=True)
        tmp.replace(target)
    return target


def farm_command(
    stack: Stack, speakers: int, room: str, voices: Path, mode: str = "plain"
) -> list[str]:
    """The farm's command line: `speakers` publishers in the stack's LiveKit room `room`."""
    key, secret = stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"]
    return [str(binary()), str(speakers), stack.livekit.url, key, secret, room, str(voices), mode]


def encode_packets(samples: np.ndarray) -> list[bytes]:
    """20 ms Opus packets of int16 48 kHz mono audio (libopus, as the recorder writes)."""
    codec: Any = av.CodecContext.create("libopus", "w")
    codec.sample_rate = RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = 32_000
    codec.options = {"application": "voip", "frame_duration": "20"}
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    frame.pts = 0
    return [bytes(p) for p in [*codec.encode(frame), *codec.encode(None)]]


def write_voices(directory: Path, seconds: float = 20.0) -> Path:
    """`voice-<n>.opus` files of length-prefixed packets, as the Go farm reads them."""
    directory.mkdir(parents=True, exist_ok=True)
    for v in range(VOICES):
        with (directory / f"voice-{v:02d}.opus").open("wb") as f:
            for packet in encode_packets(speech_like(v, seconds)):
                f.write(struct.pack(">H", len(packet)) + packet)
    return directory


if __name__ == "__main__":
    print(binary())
