"""One declaration per setting: base-config.yaml says exactly what the code declares.

Every declared key is in the YAML with the declared default, the YAML has no key the code does
not declare, and maubot's config update copies every declared key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mautrix.util.config import RecursiveDict
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from rtcbot.settings import Config, declared_settings, parse_settings

BASE = Path(__file__).resolve().parents[2] / "base-config.yaml"
# Maps whose keys are the operator's (server names): the map is the setting.
MAPS = {"auth_service.homeserver_urls", "auth_service.client_api_urls"}


def yaml_leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in MAPS:
            out.update(yaml_leaves(value, f"{path}."))
        else:
            out[path] = value
    return out


def plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def test_base_config_has_every_declared_key_with_its_default_and_nothing_else() -> None:
    yaml = yaml_leaves(YAML().load(BASE.read_text()))
    declared = {key: default for key, default, _doc in declared_settings()}
    assert sorted(set(yaml) - set(declared)) == [], "in base-config.yaml, declared nowhere"
    assert sorted(set(declared) - set(yaml)) == [], "declared, missing in base-config.yaml"
    wrong = {
        key: (plain(yaml[key]), plain(default))
        for key, default in declared.items()
        if plain(yaml[key]) != plain(default)
    }
    assert wrong == {}, "base-config.yaml value != declared default (yaml, code)"


def test_every_setting_says_what_it_means() -> None:
    assert [key for key, _default, doc in declared_settings() if not doc.strip()] == []


def test_the_config_update_copies_every_declared_key() -> None:
    """maubot's do_update: an instance config with every key set keeps every value."""
    mine = YAML().load(BASE.read_text())
    mine["recording"]["max_minutes"] = 33
    mine["permissions"]["join"] = 77
    mine["auth_service"]["client_api_urls"] = {"example.org": "https://matrix.example.org"}
    saved: list[Any] = []
    config = Config(
        lambda: mine,
        lambda: RecursiveDict(YAML().load(BASE.read_text()), CommentedMap),
        saved.append,
    )
    config.load()
    config.update()
    assert saved, "maubot saves the updated config"
    settings = parse_settings(config)
    assert settings.recording.max_minutes == 33
    assert settings.permissions["join"] == 77
    assert settings.auth_service.client_api_urls == {"example.org": "https://matrix.example.org"}
    copied = yaml_leaves(saved[-1])
    assert set(copied) == {key for key, _d, _doc in declared_settings()}
