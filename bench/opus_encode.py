"""What encoding one recorded track costs: libopus through PyAV, as `OggOpusFile` does, on
the publisher farm's speech-like audio, in % of one core per real-time stream.

    .venv/bin/python -m bench.opus_encode [--seconds 30]

Variants: the recorder's settings (complexity 1, 60 ms frames, 48 kHz, VoIP), complexity 0,
DTX, 120 ms frames, 16 kHz input, and digital silence (what gap padding encodes).
`--quick` (2 s of audio) runs in the unit tests.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import av
import numpy as np

from bench.publisher_farm import speech_like
from rtcbot.media.audio_files import OPUS_BITRATE

VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("the recorder's (complexity 1, 60 ms, 48 kHz)", {}),
    ("complexity 0", {"complexity": 0}),
    ("DTX on", {"dtx": True}),
    ("120 ms frames", {"frame_ms": 120}),
    ("16 kHz input", {"rate": 16_000}),
    ("digital silence", {"silence": True}),
]


def cost(
    audio: np.ndarray,
    rate: int = 48_000,
    complexity: int = 1,
    dtx: bool = False,
    frame_ms: int = 60,
    silence: bool = False,
) -> float:
    """CPU per real-time stream (1.0 = one core) to encode `audio` (int16 48 kHz mono)."""
    codec: Any = av.CodecContext.create("libopus", "w")
    codec.sample_rate = rate
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = OPUS_BITRATE
    codec.options = {
        "application": "voip",
        "frame_duration": str(frame_ms),
        "compression_level": str(complexity),
        **({"dtx": "1"} if dtx else {}),
    }
    data = np.zeros_like(audio) if silence else audio
    data = data[:: 48_000 // rate].copy() if rate != 48_000 else data
    step = rate // 10  # the recorder's 100 ms chunks
    t0 = time.process_time()
    for i in range(0, len(data) - step + 1, step):
        frame = av.AudioFrame.from_ndarray(
            data[i : i + step].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        frame.pts = i
        for _packet in codec.encode(frame):
            pass
    for _packet in codec.encode(None):
        pass
    return (time.process_time() - t0) / (len(audio) / 48_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    audio = speech_like(3, 2.0 if args.quick else args.seconds)
    for name, kw in VARIANTS:
        print(f"{name}: {cost(audio, **kw):.2%} of a core per stream")


if __name__ == "__main__":
    main()
