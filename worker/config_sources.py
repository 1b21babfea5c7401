"""Where settings come from: the YAML file (named by ``FRAMESCRIBE_CONFIG``, else the repo's
``configs/default.yaml``), and ``load_settings``, which turns any bad key or value into one ConfigError."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import PydanticBaseSettingsSource
from pydantic_settings.exceptions import SettingsError

from worker.config import Settings
from worker.errors import ConfigError

REPO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


class YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by FRAMESCRIBE_CONFIG (or configs/default.yaml)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_path()
        if path is None:
            return {}
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at its top level")
        _check_keys(data, path)
        data.setdefault("config", str(path))
        return data


def _check_keys(data: dict[Any, Any], path: Path, where: str = "") -> None:
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"config file {path}: key {key!r}{where} is not a name; keys must be text")
        if isinstance(value, dict):
            _check_keys(value, path, f" under '{key}'" if not where else f"{where}.{key}")


def config_path() -> Path | None:
    named = os.environ.get("FRAMESCRIBE_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"FRAMESCRIBE_CONFIG names {path}, which is not a file")
        return path
    return REPO_CONFIG if REPO_CONFIG.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build Settings; a bad key or value becomes one ConfigError naming it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "config"
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown setting '{where}'")
            else:
                problems.append(f"setting '{where}': {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


@functools.cache
def get_settings() -> Settings:
    return load_settings()
