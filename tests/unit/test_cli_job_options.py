"""``run`` and ``submit`` share the job options, declared once (``worker.cli.with_job_options``): Typer
sees the same options in the same place of both commands, and their values reach the job."""

from __future__ import annotations

import json
from pathlib import Path

import typer.main
from typer.testing import CliRunner

from worker.cli import JOB_OPTIONS, _register_command_modules, app

ROOT = Path(__file__).resolve().parents[2]


def params(command: str) -> list[tuple[str, tuple[str, ...], str | None]]:
    _register_command_modules()
    group = typer.main.get_command(app)
    with group.make_context("framescribe", [command, "--help"], resilient_parsing=True) as ctx:
        cmd = group.get_command(ctx, command)  # type: ignore[attr-defined]
    return [(p.name, tuple(p.opts), getattr(p, "help", None)) for p in cmd.params]


def test_both_commands_list_the_job_options_right_after_the_video() -> None:
    run, submit = params("run"), params("submit")
    n = len(JOB_OPTIONS)
    assert [name for name, _, _ in run[1 : n + 1]] == list(JOB_OPTIONS)
    assert run[1 : n + 1] == submit[1 : n + 1], "the same flags and help in both"
    assert ("fps", ("--fps",), "Frames sampled per second.") in run
    assert [name for name, _, _ in run[0:1] + run[n + 1 :]] == [
        "video", "dry_run", "as_json", "webhook_url", "out_file", "config", "data_dir", "database_url"]  # fmt: skip
    assert [name for name, _, _ in submit[n + 1 :]] == [
        "idempotency_key", "webhook_url", "queue", "config", "data_dir", "database_url"]  # fmt: skip
    assert "options" not in {name for name, _, _ in run + submit}, "the values' dict is not an option"


def test_the_job_options_given_shape_the_job(tmp_path: Path) -> None:
    """6 s of the clip at 2 fps in 3 s segments: 2 segments of 6 frames (the defaults would differ)."""
    video = str(ROOT / "examples" / "street.mp4")
    args = ["run", video, "--dry-run", "--json", "--fps", "2", "--segment-seconds", "3", "--start", "1", "--end", "7"]
    env = {"FRAMESCRIBE_DATA_DIR": str(tmp_path / "data"), "FRAMESCRIBE_CONFIG": str(ROOT / "configs/default.yaml")}
    res = CliRunner().invoke(app, args, env=env, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    est = json.loads(res.stdout)["estimate"]
    assert (est["segments"], est["frames"]) == (2, 12)
