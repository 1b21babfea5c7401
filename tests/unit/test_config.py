"""Settings: YAML file, env overrides, CLI overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.config import load_settings
from worker.errors import ConfigError


def _yaml(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    monkeypatch.setenv("FRAMESCRIBE_CONFIG", str(path))


def test_precedence_yaml_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _yaml(tmp_path, "sampling:\n  fps: 2\n  segment_seconds: 30\n", monkeypatch)
    assert load_settings().sampling.fps == 2
    monkeypatch.setenv("FRAMESCRIBE_SAMPLING__FPS", "3")
    s = load_settings()
    assert s.sampling.fps == 3 and s.sampling.segment_seconds == 30, "env overrides one key, YAML keeps the rest"
    assert load_settings(sampling={"fps": 4}).sampling.fps == 4, "explicit (CLI) overrides win"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sampling:\n  fsp: 2\n", "unknown setting 'sampling.fsp'"),
        ("nonsense: 1\n", "unknown setting 'nonsense'"),
        ("sampling:\n  fps: -1\n", "setting 'sampling.fps'"),
        ("- a\n- b\n", "mapping at its top level"),
        ("sampling: [\n", "cannot read config file"),
        ("1: x\n", "keys must be text"),
        ("sampling:\n  1.5: 1\n", "keys must be text"),
        ("sampling:\n  ? [a]\n  : 1\n", "cannot read config file"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str) -> None:
    _yaml(tmp_path, text, monkeypatch)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_settings()


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FRAMESCRIBE_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()


def test_env_json_lists_and_unknown_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FRAMESCRIBE_ALLOWED_ROOTS", f'["{tmp_path}"]')
    monkeypatch.setenv("FRAMESCRIBE_API_KEYS", "k1,k2")
    s = load_settings()
    assert s.allowed_roots == [tmp_path] and s.api_keys == ["k1", "k2"]
    monkeypatch.setenv("FRAMESCRIBE_SAMPLING__BOGUS", "1")
    with pytest.raises(ConfigError, match=r"sampling\.bogus"):
        load_settings()


def test_describer_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    assert load_settings().effective_describer == "local"
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-x")
    assert load_settings().effective_describer == "dashscope"
