"""The engine's file reading: chunks cut at quiet places, nothing lost or repeated."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtcbot.media.audio_files import OggOpusFile
from rtcbot.transcripts.engine import RATE, read_chunks


def test_chunks_cover_the_file_once_and_end_in_quiet(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    loud = (rng.standard_normal(48_000 * 70) * 3000).astype(np.int16)
    for at in (27, 55):  # a quiet second near the end of each 30 s chunk
        loud[at * 48_000 : (at + 1) * 48_000] = 0
    path = tmp_path / "a.ogg"
    f = OggOpusFile(path)
    f.write(loud)
    f.close()
    whole = list(read_chunks(path, chunk_s=1000))
    assert len(whole) == 1
    chunks = list(read_chunks(path, chunk_s=30))
    assert len(chunks) == 3
    joined = np.concatenate([c for _, c in chunks])
    assert np.array_equal(joined, whole[0][1])
    start = 0.0
    for s, c in chunks:
        assert s == start
        start += len(c) / RATE
    # Each cut lies in the quiet second (20–30 s of the chunk's end are searched).
    assert 27 <= chunks[1][0] <= 28 and 55 <= chunks[2][0] <= 56
