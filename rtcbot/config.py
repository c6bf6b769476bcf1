"""Declaring a setting once: its key, default, bounds and meaning in one field.

Each feature declares its config section beside itself (`recording/settings.py`, …) as a
frozen dataclass whose fields are `setting(default, reader, doc)`; the key is
`<section>.<field>`. From those declarations come the validation (`read_section`: every value
read, bounded and named in the error), maubot's config update (`declared_keys`: what
`do_update` copies) and the check that base-config.yaml says the same (tests/unit).
Cross-field rules are a section's `validate()`. This module is a foundation: it imports no
feature; `rtcbot/settings.py` assembles the sections.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any

# (the raw config, the full key, the declared default) → the value; raises ConfigError.
Reader = Callable[[Any, str, Any], Any]


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what is expected."""


def setting(default: Any, read: Reader, doc: str, *, secret: bool = False) -> Any:
    """A settings field: its default, how it is read and checked, one line of what it means.
    Secrets stay out of reprs (and so out of logs)."""
    meta = {"read": read, "doc": doc}
    if isinstance(default, dict):
        return dataclasses.field(
            default_factory=lambda: dict(default), repr=not secret, metadata=meta
        )
    return dataclasses.field(default=default, repr=not secret, metadata=meta)


def get(raw: Any, key: str) -> Any:
    """The raw value of a dotted key (maubot's proxy config resolves the dots), None if unset."""
    try:
        return raw[key]
    except (KeyError, TypeError):
        return None


def read_section(cls: type[Any], raw: Any, prefix: str) -> Any:
    """Every declared field of `cls` read from `raw` under `prefix.`, then `validate()`."""
    values = {
        f.name: f.metadata["read"](raw, f"{prefix}.{f.name}", _default(f))
        for f in dataclasses.fields(cls)
        if "read" in f.metadata
    }
    section = cls(**values)
    check = getattr(section, "validate", None)
    if check is not None:
        check()
    return section


def declared(cls: type[Any], prefix: str) -> Iterator[tuple[str, Any, str]]:
    """(key, default, doc) of every setting of the section."""
    for f in dataclasses.fields(cls):
        if "read" in f.metadata:
            yield f"{prefix}.{f.name}", _default(f), f.metadata["doc"]


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


# -- readers ---------------------------------------------------------------------------------
def text(*, empty_is_default: bool = False) -> Reader:
    def read(raw: Any, key: str, default: Any) -> str:
        val = get(raw, key)
        if val is None:
            return str(default)
        if not isinstance(val, str):
            raise ConfigError(f"{key} must be text, got {val!r}")
        return val.strip() or (str(default) if empty_is_default else "")

    return read


def choice(*options: str) -> Reader:
    def read(raw: Any, key: str, default: Any) -> str:
        val = text(empty_is_default=True)(raw, key, default)
        if val not in options:
            raise ConfigError(f"{key} must be one of {', '.join(options)}, got {val!r}")
        return val

    return read


def text_list() -> Reader:
    def read(raw: Any, key: str, default: Any) -> tuple[str, ...]:
        val = get(raw, key)
        if val is None:
            return tuple(default)
        if isinstance(val, str):
            val = [val]
        if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
            raise ConfigError(f"{key} must be a list of text values, got {val!r}")
        return tuple(v.strip() for v in val if v.strip())

    return read


def whole(minimum: int, maximum: int) -> Reader:
    def read(raw: Any, key: str, default: Any) -> int:
        val = get(raw, key)
        if val is None:
            return int(default)
        if isinstance(val, bool) or not isinstance(val, int):
            raise ConfigError(f"{key} must be a whole number, got {val!r}")
        if not minimum <= val <= maximum:
            raise ConfigError(f"{key} must be between {minimum} and {maximum}, got {val}")
        return val

    return read


def number(minimum: float, maximum: float) -> Reader:
    def read(raw: Any, key: str, default: Any) -> float:
        val = get(raw, key)
        if val is None:
            return float(default)
        if isinstance(val, bool) or not isinstance(val, int | float):
            raise ConfigError(f"{key} must be a number, got {val!r}")
        if not minimum <= float(val) <= maximum:
            raise ConfigError(f"{key} must be between {minimum} and {maximum}, got {val}")
        return float(val)

    return read


def flag() -> Reader:
    def read(raw: Any, key: str, default: Any) -> bool:
        val = get(raw, key)
        if val is None:
            return bool(default)
        if not isinstance(val, bool):
            raise ConfigError(f"{key} must be true or false, got {val!r}")
        return val

    return read


def url(*schemes: str) -> Reader:
    def read(raw: Any, key: str, default: Any) -> str:
        val = text()(raw, key, default)
        if val and not re.match(rf"^({'|'.join(schemes)})://[^/\s]+", val):
            raise ConfigError(
                f"{key} must be a URL starting with {' or '.join(schemes)}://, got {val!r}"
            )
        return val.rstrip("/")

    return read


def name_map(*, urls: tuple[str, ...] = ()) -> Reader:
    """Server names → text (URLs with one of `urls`' schemes, when given)."""

    def read(raw: Any, key: str, default: Any) -> dict[str, str]:
        val = get(raw, key) or {}
        if not isinstance(val, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in val.items()
        ):
            raise ConfigError(f"{key} must map server names to URLs")
        if not urls:
            return {k: v.rstrip("/") for k, v in val.items()}
        named = {f"{key}.{k}": v for k, v in val.items()}
        return {k[len(key) + 1 :]: url(*urls)(named, k, "") for k in named}

    return read
