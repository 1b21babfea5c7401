"""Each friction point a new user met in the first hour, driven as a subprocess (issue 20)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.integration.celery_fixtures import RedisServer
from worker.adapters.stores.schema import JobRow
from worker.adapters.stores.sql import SqlResultStore

ROOT = Path(__file__).resolve().parents[2]
ERROR_LINE = re.compile(r"^framescribe: error: \S[^\n]*$")


def one_error_line(stderr: str) -> bool:
    """Exactly one line of error; besides it only the ``framescribe: store: …`` notice may appear."""
    lines = [ln for ln in stderr.splitlines() if not ln.startswith("framescribe: store: ")]
    return len(lines) == 1 and ERROR_LINE.match(lines[0]) is not None


def env_for(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMESCRIBE_", "DASHSCOPE_"))}
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)  # fmt: skip


@pytest.mark.services
def test_submit_and_follow_warn_when_no_worker_runs(tmp_path: Path, redis_server: RedisServer) -> None:
    env = env_for(FRAMESCRIBE_DATA_DIR=str(tmp_path / "data"), FRAMESCRIBE_BROKER_URL=redis_server.url,
                  FRAMESCRIBE_WORKER__QUEUE=f"nobody-{uuid.uuid4().hex[:6]}")  # fmt: skip
    res = cli("submit", str(ROOT / "examples" / "street.mp4"), env=env)
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    assert "framescribe: warning: no worker is running: start one with `framescribe worker`" in res.stderr
    follow = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "status", job_id, "--follow", "--warn-after", "1", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert follow.stderr is not None
        line = follow.stderr.readline()  # the follow loop keeps running; the warning comes after ~1 s idle
        while line.startswith("framescribe: store: "):
            line = follow.stderr.readline()
        assert "no worker has consumed from queue" in line and "start one with `framescribe worker`" in line, line
    finally:
        follow.terminate()
        follow.wait(10)


def test_data_folder_hint_and_no_new_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = cli("jobs", "list", env=env_for(), cwd=elsewhere)
    assert res.returncode == 1 and one_error_line(res.stderr), res.stderr
    assert f"no result store at {elsewhere / 'data' / 'framescribe.db'}" in res.stderr
    assert "FRAMESCRIBE_DATA_DIR" in res.stderr
    assert not (elsewhere / "data").exists(), "a read-only command must not create a data folder"
    # with the folder named, the command says which store it uses
    data = tmp_path / "data"
    ran = cli("run", str(ROOT / "examples" / "street.mp4"), env=env_for(FRAMESCRIBE_DATA_DIR=str(data)))
    assert ran.returncode == 0, ran.stderr
    listed = cli("jobs", "list", env=env_for(FRAMESCRIBE_DATA_DIR=str(data)), cwd=elsewhere)
    assert listed.returncode == 0 and "street.mp4" in listed.stdout
    assert f"framescribe: store: sqlite:///{data / 'framescribe.db'} (from FRAMESCRIBE_DATA_DIR)" in listed.stderr
    flagged = cli("jobs", "list", "--data-dir", str(data), env=env_for(), cwd=elsewhere)
    assert "(from --data-dir)" in flagged.stderr and "street.mp4" in flagged.stdout
    # the summary of this short job reads as a summary, not the segment descriptions again
    summary = next(ln for ln in ran.stdout.splitlines() if ln.startswith("Summary ("))
    descriptions = [ln.split("] ", 1)[1] for ln in ran.stdout.splitlines() if ln.startswith("[")]
    assert len(descriptions) == 2
    for text in descriptions:
        assert text not in summary and text.split(". ")[0] not in summary, summary
    assert "2 parts: 00:00–00:10" in summary and summary.count("Local OpenCV analysis") == 1


def test_choices_flags_and_readme(tmp_path: Path) -> None:
    env = env_for(FRAMESCRIBE_DATA_DIR=str(tmp_path / "data"))
    bogus = cli("jobs", "list", "--state", "bogus", env=env)
    assert bogus.returncode == 2 and one_error_line(bogus.stderr) and "'bogus' is not one of" in bogus.stderr
    helped = cli("run", "--help", env={**env, "COLUMNS": "120"})
    assert helped.returncode == 0
    dry = next(ln for ln in helped.stdout.splitlines() if "--dry-run" in ln)
    assert "<bool>" not in dry and "Estimate" in dry
    assert "<float>" in next(ln for ln in helped.stdout.splitlines() if "--fps" in ln), "typed options keep types"
    readme = (ROOT / "README.md").read_text()
    assert "jobs show" not in readme and "`framescribe show JOB_ID`" in readme
    assert "framescribe doctor" in "\n".join(readme.splitlines()[:30]), "the first screen shows doctor"


@pytest.mark.parametrize(
    ("args", "env_extra", "expect"),
    [
        (("jobs", "list", "--bogus"), {}, "No such option: --bogus"),
        (("run", "x.mp4", "--fps"), {}, "Option '--fps' requires an argument"),
        (("run", "x.mp4", "--fps", "abc"), {}, "Invalid value for '--fps'"),
        (("jobs", "list"), {"FRAMESCRIBE_SAMPLING__FPS": "abc"}, "setting 'sampling.fps'"),
        (("jobs", "list"), {"FRAMESCRIBE_CONFIG": "/nonexistent.yaml"}, "FRAMESCRIBE_CONFIG names"),
        (("jobs", "list"), {"FRAMESCRIBE_WORKER__VISIBILITY_TIMEOUT_S": "-1"}, "worker.visibility_timeout_s"),
        (("jobs", "list"), {"FRAMESCRIBE_DASHSCOPE__FRAMES_AS": "base64"}, "dashscope.frames_as"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: tuple[str, ...], env_extra: dict[str, str],
                                      expect: str) -> None:  # fmt: skip
    res = cli(*args, env=env_for(FRAMESCRIBE_DATA_DIR=str(tmp_path / "d"), **env_extra))
    assert res.returncode == 2, res.stderr
    assert one_error_line(res.stderr), res.stderr
    assert expect in res.stderr and "╭" not in res.stderr and "Traceback" not in res.stderr


def test_bad_config_file_value_is_exit_2(tmp_path: Path) -> None:
    conf = tmp_path / "bad.yaml"
    conf.write_text("sampling:\n  fps: -3\n")
    res = cli("jobs", "list", env=env_for(FRAMESCRIBE_DATA_DIR=str(tmp_path / "d"), FRAMESCRIBE_CONFIG=str(conf)))
    assert res.returncode == 2 and one_error_line(res.stderr) and "sampling.fps" in res.stderr
    conf.write_text("sampling:\n  fsp: 2\n")
    res = cli("jobs", "list", env=env_for(FRAMESCRIBE_DATA_DIR=str(tmp_path / "d"), FRAMESCRIBE_CONFIG=str(conf)))
    assert res.returncode == 2 and one_error_line(res.stderr) and "unknown setting 'sampling.fsp'" in res.stderr


def test_busy_port_is_one_line_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = cli("scheduler", "--port", str(port), env=env_for(FRAMESCRIBE_DATA_DIR=str(tmp_path / "d")))
    assert res.returncode == 2, res.stderr
    assert one_error_line(res.stderr) and f"127.0.0.1:{port}: the port is in use" in res.stderr, res.stderr
    assert "INFO" not in res.stderr and "ERROR" not in res.stderr, "no uvicorn log lines"


def test_jobs_list_stuck(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = SqlResultStore(f"sqlite:///{data / 'framescribe.db'}")
    idle, _ = store.create_job("/v/idle.mp4", "idle.mp4", {})
    store.create_job("/v/fresh.mp4", "fresh.mp4", {})
    with store.session() as s, s.begin():
        old = datetime.now(UTC) - timedelta(hours=1)
        s.execute(update(JobRow).where(JobRow.id == idle.id).values(state="running", updated_at=old))
    store.close()
    env = env_for(FRAMESCRIBE_DATA_DIR=str(data))
    res = cli("jobs", "list", "--stuck", env=env)
    assert res.returncode == 0, res.stderr
    assert idle.id in res.stdout and "fresh.mp4" not in res.stdout and "framescribe retry" in res.stdout
    none = cli("jobs", "list", "--stuck", "--older-than", "7200", env=env)
    assert none.returncode == 0 and "no stuck jobs" in none.stdout


def test_json_logs_carry_the_job_id(tmp_path: Path) -> None:
    env = env_for(FRAMESCRIBE_DATA_DIR=str(tmp_path / "d"), FRAMESCRIBE_LOGGING__FORMAT="json")
    res = cli("run", str(ROOT / "examples" / "street.mp4"), env=env)
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.split()[1]
    logged = [ln for ln in res.stderr.splitlines() if not ln.startswith("framescribe: ")]
    assert logged, res.stderr
    docs = [json.loads(ln) for ln in logged]
    assert {"ts", "level", "logger", "msg", "job_id", "segment"} <= set(docs[0])
    assert all(d["job_id"] == job_id for d in docs), docs
