"""Quick commands stay quick by not loading what they do not use (issue 19, goal 3).

These tests read which modules a command's process imported; they assert no timing. ``--help`` loads no
settings, store, video, queue or model library; the read-only store commands (``jobs list``, ``show``,
``status``) load the store but no video, queue or model library, and no Alembic when the schema is current
(nor SQLAlchemy, pydantic or rich once the quick path knows the store: worker/cli_quick.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from worker.adapters.stores.schema_version import at_heads, heads
from worker.adapters.stores.sql import MIGRATIONS, SqlResultStore, build_engine, migrate

VERSIONS = MIGRATIONS / "versions"
ROOT = Path(__file__).resolve().parents[2]
HEAVY_EVERYWHERE = {"cv2", "av", "numpy", "celery", "kombu", "dashscope", "httpx", "redis", "scenedetect"}
FOR_HELP = HEAVY_EVERYWHERE | {"pydantic_settings", "worker.config", "sqlalchemy", "alembic", "rich.markdown"}

PROBE = """
import json, sys
sys.argv = ["framescribe", *json.loads(sys.argv[1])]
from worker.cli import main
try:
    main()
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def loaded(args: list[str], env: dict[str, str] | None = None) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    full = {**os.environ, "FRAMESCRIBE_CONFIG": str(ROOT / "configs" / "default.yaml"), **(env or {})}
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True,
                         env=full, cwd=ROOT, timeout=120)  # fmt: skip
    line = next(ln for ln in res.stderr.splitlines() if ln.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES "))), res


def top(modules: set[str]) -> set[str]:
    return modules | {m.split(".")[0] for m in modules}


def test_help_loads_no_settings_store_video_queue_or_model_library() -> None:
    modules, res = loaded(["--help"])
    assert "Commands:" in res.stdout and "jobs" in res.stdout and "sample" in res.stdout
    assert not (top(modules) & FOR_HELP), sorted(top(modules) & FOR_HELP)


def test_read_only_commands_load_the_store_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = SqlResultStore(f"sqlite:///{data / 'framescribe.db'}")
    job, _ = store.create_job(str(tmp_path / "v.mp4"), "v.mp4", {"fps": 1.0})
    env = {"FRAMESCRIBE_DATA_DIR": str(data), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    for n, args in enumerate((["jobs", "list"], ["show", job.id], ["status", job.id], ["jobs", "list"])):
        modules, res = loaded(args, env)
        assert job.id in res.stdout, (args, res.stdout, res.stderr)
        unwanted = top(modules) & (HEAVY_EVERYWHERE | {"alembic", "worker.bootstrap"})
        assert not unwanted, (args, sorted(unwanted))
        if n:  # the first run built the settings model once; then the quick path (worker/cli_quick.py) reads
            assert "sqlite3" in modules, args  # the store with sqlite3, without settings, SQLAlchemy or rich
            assert not top(modules) & {"sqlalchemy", "pydantic", "pydantic_settings", "rich", "yaml"}, args


def test_heads_are_alembics_heads() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS))
    assert heads(VERSIONS) == frozenset(script.get_heads())


def test_at_heads_only_when_every_head_is_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    engine = build_engine(url)
    assert not at_heads(engine, VERSIONS)  # a new store: no alembic_version table
    migrate(engine)
    assert at_heads(engine, VERSIONS)
    wanted = sorted(heads(VERSIONS) or [])
    with engine.begin() as conn:  # one branch behind: the upgrade must run
        conn.execute(text("DELETE FROM alembic_version WHERE version_num = :v"), {"v": wanted[-1]})
    assert not at_heads(engine, VERSIONS)
    with engine.begin() as conn:  # an unknown extra revision (a newer release's): not ours to skip either
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v), ('9999')"), {"v": wanted[-1]})
    assert not at_heads(engine, VERSIONS)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version WHERE version_num = '9999'"))
    assert at_heads(engine, VERSIONS)
    engine.dispose()


def test_unreadable_migration_files_leave_the_decision_to_alembic(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0001_x.py").write_text('revision = "0001"\ndown_revision = None\n')
    (versions / "0002_y.py").write_text('revision = make_revision()\ndown_revision = "0001"\n')
    assert heads(versions) is None
    engine = create_engine(f"sqlite:///{tmp_path / 'e.db'}")
    assert not at_heads(engine, versions)
    engine.dispose()


@pytest.mark.parametrize(
    ("files", "expect"),
    [
        ({"a": ('"1"', "None"), "b": ('"2"', '"1"'), "c": ('"3"', '"1"')}, {"2", "3"}),
        ({"a": ('"1"', "None"), "b": ('"2"', '"1"'), "m": ('"3"', '("2", "1")')}, {"3"}),
    ],
)
def test_heads_of_branches_and_merges(tmp_path: Path, files: dict[str, tuple[str, str]], expect: set[str]) -> None:
    versions = tmp_path / "v"
    versions.mkdir()
    for name, (rev, down) in files.items():
        (versions / f"{name}.py").write_text(f"revision = {rev}\ndown_revision = {down}\nbranch_labels = None\n")
    assert heads(versions) == frozenset(expect)


def test_sample_builds_no_settings_model_once_it_knows_the_answer(tmp_path: Path) -> None:
    """``framescribe sample`` takes its few settings from the settings cache (``sample_defaults``) on the
    second run: no pydantic-settings, YAML or settings model; the same frames either way."""
    from tests.media import make_lavfi_video

    clip = tmp_path / "clip.mp4"
    make_lavfi_video(clip, seconds=2, size=(160, 120), fps=10, gop=10)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    runs = []
    for n in range(2):
        out = tmp_path / f"out{n}"
        modules, res = loaded(["sample", str(clip), "--fps", "2", "--out", str(out)], env)
        assert res.returncode == 0 and "wrote 4 frames" in res.stdout, res.stderr[-500:]
        runs.append((modules, sorted((p.name, p.read_bytes()) for p in out.glob("*.jpg"))))
    (first, frames_first), (second, frames_second) = runs
    assert {"pydantic_settings", "worker.config"} <= first  # the first run builds the model
    assert not top(second) & {"pydantic_settings", "worker.config", "yaml"}, sorted(top(second) & {"yaml"})
    assert frames_first == frames_second and len(frames_first) == 4
