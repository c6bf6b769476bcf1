"""Word error rate: (substitutions + deletions + insertions) / words said, over words
lower-cased and stripped of punctuation (Whisper writes "Let's", "meeting." and "2")."""

from __future__ import annotations

import re


def words_of(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def word_error_rate(said: list[str], heard: list[str]) -> float:
    """Levenshtein distance over words, divided by len(said)."""
    if not said:
        return 0.0 if not heard else 1.0
    prev = list(range(len(heard) + 1))
    for i, s in enumerate(said, 1):
        cur = [i] + [0] * len(heard)
        for j, h in enumerate(heard, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (s != h))
        prev = cur
    return prev[-1] / len(said)
