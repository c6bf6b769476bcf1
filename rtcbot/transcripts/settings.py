"""The config sections of transcripts and live captions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, Reader, choice, flag, number, setting, text, url, whole
from .engine import ModelSettings

COMPUTE_TYPES = ("int8", "int8_float32", "int16", "float32", "default")


def language() -> Reader:
    def read(raw: Any, key: str, default: Any) -> str:
        code = text()(raw, key, default).lower()
        if code in ("auto", "detect"):
            return ""
        if code and not re.fullmatch(r"[a-z]{2,3}", code):
            raise ConfigError(f"{key} must be a language code such as 'en' or empty, got {code!r}")
        return code

    return read


@dataclass(frozen=True)
class TranscriptSettings:
    # A transcript after each recording (a room can turn it off or on: `!call transcript`).
    enabled: bool = setting(True, flag(), "a transcript after each recording")
    model: str = setting(
        "base",
        text(empty_is_default=True),
        "a faster-whisper model name, a local directory or package:<module>",
    )
    language: str = setting("", language(), "a language code; empty: detected")
    compute_type: str = setting("int8", choice(*COMPUTE_TYPES), "CTranslate2 compute type")
    cpu_threads: int = setting(1, whole(1, 64), "threads per transcription")
    max_jobs: int = setting(2, whole(1, 16), "transcriptions at once")
    chunk_minutes: float = setting(5.0, number(0.5, 60.0), "audio read per piece")
    download_root: str = setting("", text(), "where models are downloaded to")
    local_files_only: bool = setting(False, flag(), "never download a model")
    model_idle_s: float = setting(
        300.0, number(0.0, 86_400.0), "release the model after this long unused (0: keep it)"
    )
    # Recordings waiting for (or getting) their transcript: in all rooms, and per room.
    max_queued: int = setting(20, whole(1, 1000), "recordings waiting, in all rooms")
    max_queued_per_room: int = setting(3, whole(1, 1000), "recordings waiting, per room")

    def model_settings(self) -> ModelSettings:
        return ModelSettings(
            model=self.model,
            language=self.language,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            max_jobs=self.max_jobs,
            download_root=self.download_root,
            local_files_only=self.local_files_only,
            idle_s=self.model_idle_s,
        )


@dataclass(frozen=True)
class CaptionSettings:
    # Live captions while recording (off by default; a room turns them on: `!call captions`).
    enabled: bool = setting(False, flag(), "live captions while recording")
    batch_seconds: float = setting(
        4.0, number(0.5, 60.0), "a speaker who speaks on is posted this often (else at a pause)"
    )


@dataclass(frozen=True)
class RecapSettings:
    # A recap (summary, decisions, action items) after each transcript, from a model behind an
    # OpenAI-compatible chat-completions API: Ollama, llama.cpp's server, vLLM, a hosted one.
    # Off by default; a room turns it on or off with `!call recap on|off`.
    enabled: bool = setting(False, flag(), "a recap after each transcript")
    base_url: str = setting(
        "", url("http", "https"), "the API's base URL, e.g. http://127.0.0.1:8080/v1"
    )
    model: str = setting("", text(), "the model name the API expects")
    api_key: str = setting("", text(), "sent as a bearer token; empty: none")
    timeout_s: float = setting(180.0, number(5.0, 3600.0), "per request to the model")
    max_input_chars: int = setting(
        6000, whole(500, 1_000_000), "transcript per request (longer calls are cut in parts)"
    )
    max_output_tokens: int = setting(700, whole(64, 32_000), "the model's answer, at most")
    json_schema: bool = setting(
        True, flag(), "send the answer's JSON schema (response_format.schema) with each request"
    )
    # Said in the consent notices and on the recap: where people's words go.
    location: str = setting(
        "", text(), "where the model runs, as people are told; empty: the API's host"
    )

    def where(self) -> str:
        if self.location:
            return self.location
        host = self.base_url.split("://", 1)[-1].split("/", 1)[0]
        local = host.split(":")[0] in ("127.0.0.1", "localhost", "[::1]")
        return "on the bot's own server" if local else f"at {host}"
