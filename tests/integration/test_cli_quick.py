"""The quick path of ``status``, ``show`` and ``jobs list`` (worker/cli_quick.py, issue 19 goal 3): the same
bytes, errors and exit codes as the full Typer/SQLAlchemy/rich path on the same stores, without loading them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text, update

from worker.adapters.stores.quick_read import QuickReader
from worker.adapters.stores.schema import JobRow, SegmentDbRow
from worker.adapters.stores.sql import SqlResultStore
from worker.core.models import SegmentPlan, VideoInfo
from worker.settings_cache import VERSIONS

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
full = json.loads(sys.argv[2])
sys.argv = ["framescribe", *json.loads(sys.argv[1])]
import worker.cli_quick
if full:  # the path every command took before: Typer, pydantic-settings, SQLAlchemy, rich
    worker.cli_quick.quick = lambda argv: False
from worker.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stderr.write("\\nEXIT " + json.dumps([code, sorted(sys.modules)]) + "\\n")
"""
HEAVY = {"sqlalchemy", "pydantic", "pydantic_settings", "rich", "alembic", "yaml"}


def run(args: list[str], env: dict[str, str], full: bool = False) -> tuple[str, str, Any, set[str]]:
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(full)], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=120)  # fmt: skip
    stderr, _, tail = res.stderr.rpartition("\nEXIT ")
    code, modules = json.loads(tail)
    return res.stdout, stderr, code, {m.split(".")[0] for m in modules}


def seed(data: Path) -> list[str]:
    """Jobs in several states: segments done, static, failed, pending; an error; a summary with usage."""
    store = SqlResultStore(f"sqlite:///{data / 'framescribe.db'}")
    ids = []
    for n, (state, name) in enumerate([("done", "a.mp4"), ("failed", "b b.mp4"), ("partial", "c.mkv"),
                                       ("queued", "d.mp4")]):  # fmt: skip
        job, _ = store.create_job(f"/v/{name}", name, {"fps": 1.0})
        plans = [SegmentPlan(i, i * 10_000, (i + 1) * 10_000, 1, (i * 10_000,)) for i in range(3 + n)]  # type: ignore[arg-type]
        store.plan_job(job.id, VideoInfo(60_000, 30.0, 1800, 640, 360, "avc1"), plans)
        with store.session() as s, s.begin():
            for i, seg_state in enumerate(["done", "static", "failed", "done", "pending", "cancelled"][: 3 + n]):
                s.execute(update(SegmentDbRow).where(SegmentDbRow.job_id == job.id, SegmentDbRow.index == i).values(
                    state=seg_state, description=f"A person walks. Part {i}." if seg_state != "failed" else None,
                    error="model said no" if seg_state == "failed" else None, input_tokens=10 * i,
                    output_tokens=3 * i, video_tokens=100 * i, attempts=1, http_attempts=i))  # fmt: skip
            summary = {
                "state": "done",
                "text": "Two parts: walking, then standing.",
                "usage": {"summary": {"input_tokens": 7, "output_tokens": 2, "calls": 1, "http_attempts": 1}},
            }
            s.execute(update(JobRow).where(JobRow.id == job.id).values(
                state=state, error="2 segment(s) failed" if state == "failed" else None,
                summary=summary if state in ("done", "partial") else None))  # fmt: skip
        ids.append(job.id)
    store.close()
    return ids


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMESCRIBE_", "DASHSCOPE_"))}
    return {**base, "XDG_CACHE_HOME": str(tmp_path / "cache"), "FRAMESCRIBE_CONFIG": str(ROOT / "configs/default.yaml")}


def test_same_output_errors_and_exit_codes_as_the_full_path(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "data"
    ids = seed(data)
    with_dir = {**env, "FRAMESCRIBE_DATA_DIR": str(data)}
    cases: list[tuple[list[str], dict[str, str]]] = [(["jobs", "list"], with_dir)]
    cases += [(["status", i], with_dir) for i in ids] + [(["show", i], with_dir) for i in ids]
    cases += [(["jobs", "list", "--state", "failed", "--limit=2"], with_dir)]
    cases += [(["jobs", "list", "--limit", "2"], with_dir)]
    cases += [(["show", ids[0], "--data-dir", str(data)], env), (["status", "nope"], with_dir)]
    cases += [(["jobs", "list", "--data-dir", str(tmp_path / "none")], env), (["show", ids[1]], env)]
    cases += [(["status", ids[2], f"--database-url=sqlite:///{data / 'framescribe.db'}"], env)]
    for args, e in cases:
        run(args, e)  # the first run fills the settings cache
        quick = run(args, e)
        full = run(args, e, full=True)
        assert quick[:3] == full[:3], (args, quick[:3], full[:3])
        assert not quick[3] & HEAVY, (args, sorted(quick[3] & HEAVY))
        assert "sqlalchemy" in full[3]
    assert "no job with id nope" in run(["status", "nope"], with_dir)[1]


def test_forms_it_does_not_promise_go_the_full_way(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "data"
    ids = seed(data)
    e = {**env, "FRAMESCRIBE_DATA_DIR": str(data)}
    for args in (["jobs", "list", "--state", "bogus"], ["jobs", "list", "--limit", "0"], ["status", ids[0], "-f"],
                 ["show", "--help"], ["status", ids[0], "--bogus"]):  # fmt: skip
        got, full = run(args, e), run(args, e, full=True)
        assert got[:3] == full[:3] and "pydantic" in got[3], args  # Typer parsed them (its coercion is pydantic)
    run(["status", ids[0]], e)  # fills the settings cache
    store = SqlResultStore(f"sqlite:///{data / 'framescribe.db'}")
    with store.session() as s, s.begin():  # markup and an emoji code in a source name: rich prints it
        s.execute(update(JobRow).where(JobRow.id == ids[0]).values(source_name="[bold]x[/bold] :smile:.mp4"))
    for args in (["show", ids[0]], ["jobs", "list"]):
        got, full = run(args, e), run(args, e, full=True)
        assert got[:3] == full[:3] and "rich" in got[3] and "sqlalchemy" not in got[3], args
    assert "source=x 😄.mp4" in run(["show", ids[0]], e)[0]
    with store.engine.begin() as conn:  # a revision this code does not know: refused as before
        conn.execute(text("INSERT INTO alembic_version VALUES ('9999')"))
    store.close()
    got, full = run(["status", ids[1]], e), run(["status", ids[1]], e, full=True)
    assert got[:3] == full[:3] and got[2] == 1 and "alembic" in got[3], got[:3]


def test_quick_reader_reads_what_the_store_reads(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = seed(data)
    store = SqlResultStore(f"sqlite:///{data / 'framescribe.db'}")
    from worker.adapters.stores.schema_version import heads

    reader = QuickReader(str(data / "framescribe.db"), heads(VERSIONS) or [])
    fields = ("id", "state", "source_name", "error", "summary", "segment_count", "created_at")
    for state in (None, "done", "failed", "running"):
        for limit in (1, 3, 50):
            want = store.list_jobs(state=state, limit=limit)
            got = reader.list_jobs(state=state, limit=limit)
            assert [[getattr(j, f) for f in fields] for j in got] == [[getattr(j, f) for f in fields] for j in want]
    assert reader.counts_of(ids) == {i: store.counts(i) for i in ids}
    for job_id in ids:
        job = store.get_job(job_id)
        assert [getattr(reader.get_job(job_id), f) for f in fields] == [getattr(job, f) for f in fields]
        assert reader.counts(job_id) == store.counts(job_id)
        assert reader.usage(job_id, job.summary) == store.usage(job_id)
        seg_fields = ("start_ms", "end_ms", "state", "description", "error")
        assert [[getattr(r, f) for f in seg_fields] for r in reader.segment_rows(job_id)] == [
            [getattr(r, f) for f in seg_fields] for r in store.segment_rows(job_id)
        ]
    reader.close()
    store.close()


def on_terminal(args: list[str], env: dict[str, str], full: bool) -> bytes:
    """What the command writes to a terminal (a pseudo-terminal as its stdout)."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(full)], stdout=follower,
                          stderr=subprocess.PIPE, env=env, cwd=ROOT, timeout=120, check=False)  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert b"\nEXIT [0," in proc.stderr, proc.stderr
    return b"".join(chunks)


def test_on_a_terminal_rich_draws_the_table(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "data"
    ids = seed(data)
    e = {**env, "FRAMESCRIBE_DATA_DIR": str(data), "COLUMNS": "100"}
    for args in (["jobs", "list"], ["show", ids[0]], ["status", ids[1]]):
        quick = on_terminal(args, e, full=False)
        shown = ids[0] if args[0] != "status" else ids[1]
        assert quick == on_terminal(args, e, full=True) and shown.encode() in quick, args


def test_jobs_list_narrows_and_pages_as_the_rest_api_does(tmp_path: Path, env: dict[str, str]) -> None:
    """``--source``, ``--schedule`` and ``--before`` (the next page) are the API's ``source``, ``schedule_id`` and
    ``cursor``; they take the full path, and the quick path's output stays the same without them."""
    data = tmp_path / "data"
    ids = seed(data)  # created in this order: the newest (ids[-1]) is listed first
    e = {**env, "FRAMESCRIBE_DATA_DIR": str(data)}

    def listed(*args: str) -> list[str]:
        out, err, code, _ = run(["jobs", "list", *args], e)
        assert code == 0, err
        return re.findall(r"\b[0-9a-f]{32}\b", out)

    newest_first = ids[::-1]
    assert listed() == newest_first
    assert listed("--source", "mp4") == [ids[3], ids[1], ids[0]]  # c.mkv is not listed
    first = listed("--limit", "2")
    assert first == newest_first[:2] and listed("--limit", "2", "--before", first[-1]) == newest_first[2:]
    store = SqlResultStore(f"sqlite:///{data / 'framescribe.db'}")
    with store.session() as s, s.begin():
        s.execute(update(JobRow).where(JobRow.id == ids[2]).values(schedule_id="5" * 32))
    store.close()
    assert listed("--schedule", "5" * 32) == [ids[2]]
    out, err, code, _ = run(["jobs", "list", "--before", "0" * 32], e)
    assert code != 0 and f"no job with id {'0' * 32}" in err and not out
