"""The quick commands' two stand-ins (issue 19 goal 3): the remembered store equals what the one settings
model says for every mix of env, YAML and flags, and any change of them is a miss; the text and table
written without rich are the bytes rich writes whenever the quick path claims so."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker import settings_cache
from worker.cli_quick import _DIGIT_EMOJI, JOB_STATES, plain, rich_jobs_table, table
from worker.config import load_settings
from worker.config_sources import REPO_CONFIG


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    saved = dict(os.environ)  # `--config` sets FRAMESCRIBE_CONFIG for the whole process: not for later tests
    for name in list(os.environ):
        if name.upper().startswith("FRAMESCRIBE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    yield
    os.environ.clear()
    os.environ.update(saved)


def model_url(config: Path | None, data_dir: Path | None, db: str | None) -> str:
    if config is not None:  # as `--config` does (clean_env restores the environment after the test)
        os.environ["FRAMESCRIBE_CONFIG"] = str(config)
    overrides = {k: v for k, v in (("data_dir", data_dir), ("database_url", db)) if v is not None}
    return load_settings(**overrides).resolved_database_url


@pytest.mark.parametrize("yaml_dir", [None, "from-yaml"])
@pytest.mark.parametrize("env_dir", [None, "from-env"])
@pytest.mark.parametrize("flag_dir", [None, "from-flag"])
@pytest.mark.parametrize("db", [None, "env", "flag"])
@pytest.mark.parametrize("config_by", ["env", "flag"])
def test_the_remembered_store_is_the_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, yaml_dir: str | None,
                                            env_dir: str | None, flag_dir: str | None, db: str | None,
                                            config_by: str) -> None:  # fmt: skip
    conf = tmp_path / "c.yaml"
    conf.write_text(f"data_dir: {yaml_dir}\n" if yaml_dir else "sampling:\n  fps: 2\n")
    config = conf if config_by == "flag" else None
    if config_by == "env":
        monkeypatch.setenv("FRAMESCRIBE_CONFIG", str(conf))
    if env_dir:
        monkeypatch.setenv("FRAMESCRIBE_DATA_DIR", env_dir)
    url = f"sqlite:///{tmp_path / 'other.db'}"
    if db == "env":
        monkeypatch.setenv("FRAMESCRIBE_DATABASE_URL", url)
    flag_db = url if db == "flag" else None
    data_dir = Path(flag_dir) if flag_dir else None
    first = settings_cache.resolve(config, data_dir, flag_db)
    again = settings_cache.resolve(config, data_dir, flag_db)  # from the cache this time
    assert first is not None and again is not None
    digest = settings_cache.key(config, data_dir, flag_db)
    assert digest is not None and settings_cache.lookup(digest) is not None
    want = model_url(config, data_dir, flag_db)
    assert f"sqlite:///{first.path}" == f"sqlite:///{again.path}" == want


def test_a_change_of_any_input_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text("data_dir: one\n")
    monkeypatch.setenv("FRAMESCRIBE_CONFIG", str(conf))
    found = settings_cache.resolve(None, None, None)
    assert found is not None and found.path == str(tmp_path / "one" / "framescribe.db")
    before = settings_cache.key(None, None, None)
    conf.write_text("data_dir: two\n")  # same size, maybe the same mtime: the bytes are in the key
    assert settings_cache.key(None, None, None) != before
    found = settings_cache.resolve(None, None, None)
    assert found is not None and found.path == str(tmp_path / "two" / "framescribe.db")
    keys = {settings_cache.key(None, None, None)}
    monkeypatch.setenv("framescribe_sampling__fps", "2")  # pydantic-settings reads names in any case
    keys.add(settings_cache.key(None, None, None))
    keys |= {settings_cache.key(None, Path("x"), None), settings_cache.key(None, None, "sqlite:////x.db")}
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # relative data folders resolve against it
    keys.add(settings_cache.key(None, None, None))
    assert len(keys) == 5
    monkeypatch.setenv("FRAMESCRIBE_SAMPLING__FPS", "abc")  # a miss builds the model: the bad value fails there
    from worker.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sampling\.fps"):
        settings_cache.resolve(None, None, None)


def test_an_upgraded_settings_library_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic, pydantic-settings and PyYAML decide what the model answers: a reinstall of any (here a
    stand-in package on sys.path, rewritten) changes the key; they are found without being imported."""
    fake = tmp_path / "site" / "yaml"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("version = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    before = settings_cache.key(None, None, None)
    assert settings_cache._library("yaml") == settings_cache._library("yaml")
    assert settings_cache._library("yaml")[0] == str(fake / "__init__.py")  # type: ignore[index]
    (fake / "__init__.py").write_text("version = 22\n")
    assert settings_cache.key(None, None, None) != before
    assert settings_cache._library("no_such_package_here") is None


def test_old_entries_are_pruned(tmp_path: Path) -> None:
    folder = settings_cache.cache_dir()
    found = settings_cache.Resolved("/x.db", "sqlite:////x.db", ["h"], None)
    for n in range(settings_cache.KEEP + 5):
        settings_cache.remember(f"{n:064x}", found)
        os.utime(folder / f"{n:064x}.json", ns=(n * 10**9, n * 10**9))  # written in this order
    kept = sorted(p.name for p in folder.glob("*.json"))
    assert kept == sorted(f"{n:064x}.json" for n in range(5, settings_cache.KEEP + 5))
    assert settings_cache.lookup(f"{settings_cache.KEEP + 4:064x}") is not None


def test_a_moved_symlink_is_a_miss_and_postgres_is_not_remembered(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "data").symlink_to(tmp_path / "a")
    found = settings_cache.resolve(None, tmp_path / "data", None)
    assert found is not None and found.path == str(tmp_path / "a" / "framescribe.db")
    (tmp_path / "data").unlink()
    (tmp_path / "data").symlink_to(tmp_path / "b")
    digest = settings_cache.key(None, tmp_path / "data", None)
    assert digest is not None and settings_cache.lookup(digest) is None
    assert settings_cache.resolve(None, None, "postgresql+psycopg://u:secret@h/db") is None
    assert not any("secret" in p.read_text() for p in (tmp_path / "cache").rglob("*.json"))


def test_sample_defaults_are_the_models_and_follow_every_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``framescribe sample``'s settings from the cache equal the model's, for the YAML and the environment; a
    change is a miss; an entry that is not ours is rebuilt, not trusted. (``--config`` sets FRAMESCRIBE_CONFIG
    for the process, as every command does: the next process's key is the same.)"""
    conf = tmp_path / "c.yaml"
    monkeypatch.setenv("FRAMESCRIBE_CONFIG", str(conf))
    conf.write_text("sampling:\n  jpeg_quality: 70\n  reader_backend: pyav\nlimits:\n  max_duration_s: 60\n")

    def model() -> dict[str, object]:
        s = load_settings()
        return {"reader_backend": s.sampling.reader_backend, "jpeg_quality": s.sampling.jpeg_quality,
                "limits": s.limits, "log_level": s.log_level, "log_format": s.logging.format}  # fmt: skip

    first = settings_cache.sample_defaults(None)
    assert first == model() and first["jpeg_quality"] == 70 and first["limits"].max_duration_s == 60
    assert list((tmp_path / "cache").rglob("*.sample.json"))
    with monkeypatch.context() as m:  # a hit builds no model
        m.setattr("worker.config.load_settings", lambda **_: pytest.fail("the model was built on a hit"))
        assert settings_cache.sample_defaults(None) == first
    monkeypatch.setenv("FRAMESCRIBE_SAMPLING__JPEG_QUALITY", "55")
    assert settings_cache.sample_defaults(None)["jpeg_quality"] == 55  # the environment changed: a miss
    conf.write_text("limits:\n  max_duration_s: 90\n")
    assert settings_cache.sample_defaults(None)["limits"].max_duration_s == 90  # the file changed: a miss
    digest = settings_cache.key(None, None, None)
    entry = settings_cache.cache_dir() / f"{digest}.sample.json"
    entry.write_text('{"reader_backend": "auto", "jpeg_quality": 90, "limits": {"max_duration_s": "many"}, '
                     '"log_level": "INFO", "log_format": "text"}')  # fmt: skip
    assert settings_cache.sample_defaults(None) == model()  # not a valid entry: the model's answer again


def test_constants_follow_their_sources() -> None:
    from worker.cli_jobs import JobState

    assert get_args(JobState) == JOB_STATES
    assert settings_cache.REPO_CONFIG == REPO_CONFIG
    from rich._emoji_codes import EMOJI

    assert all(re.search("[A-Za-z]", name) or name in _DIGIT_EMOJI for name in EMOJI)


def rich_print(text: str, *, terminal: bool) -> str:
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, highlight=False, soft_wrap=True, width=None if terminal else 220,
                      force_terminal=terminal, color_system="truecolor" if terminal else None)  # fmt: skip
    console.print(text)
    return buf.getvalue()


PIECES = [*"ab Z09:[]/\\#@-_+.–é\t\n\r", ":smile:", ":100:", ":__1:", "[bold]", "😄"]
TRICKY = st.lists(st.sampled_from(PIECES)).map("".join)


@settings(max_examples=300, deadline=None)
@given(TRICKY)
def test_plain_text_is_what_rich_prints(text: str) -> None:
    if plain(text):
        assert rich_print(text, terminal=False) == text + "\n"
        assert rich_print(text, terminal=True) == text + "\n"


def rich_table(rows: list[list[str]]) -> str:
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, highlight=False, soft_wrap=True, width=220).print(rich_jobs_table(rows))
    return buf.getvalue()


CELL = st.text(st.sampled_from(list("abc09:[]-_. /é")), max_size=70)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(CELL, min_size=5, max_size=5), max_size=4))
def test_the_table_is_the_one_rich_prints(rows: list[list[str]]) -> None:
    text = table(["id", "state", "source", "segments", "created"], rows, [32, 0, 0, 0, 0])
    if text is not None:
        assert text == rich_table(rows)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.text(st.sampled_from(list("abc09-_. /:")), max_size=80), min_size=5, max_size=5),
                max_size=4))  # fmt: skip
def test_wide_tables_are_left_to_rich(rows: list[list[str]]) -> None:
    text = table(["id", "state", "source", "segments", "created"], rows, [32, 0, 0, 0, 0])
    if text is not None:
        assert text == rich_table(rows)
    else:
        assert max(len(line) for line in rich_table(rows).splitlines()) >= 215 or not all(
            plain(c) for row in rows for c in row
        )
