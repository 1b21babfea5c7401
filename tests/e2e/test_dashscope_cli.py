"""``framescribe run VIDEO --describer dashscope`` as a subprocess against the fake run standalone
(``python -m tests.fakes.dashscope_server``), exactly as the README tells a person to do it by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-e2e-4b1d"


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    """The native API base of a fake started the way a person would start it."""
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.dashscope_server", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("FakeDashScope base_http_api_url="), line
        yield line.split("=", 1)[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cli(*args: str, data: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMESCRIBE_", "DASHSCOPE_"))}
    full.update({"FRAMESCRIBE_DATA_DIR": str(data), "NO_PROXY": "127.0.0.1,localhost", **env})
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, env=full, timeout=180, cwd=ROOT
    )


def test_run_prints_per_segment_usage_and_a_summary(tmp_path: Path, clip_12s: Path, fake_url: str) -> None:
    env = {"DASHSCOPE_API_KEY": KEY, "FRAMESCRIBE_DASHSCOPE__BASE_URL": fake_url}
    args = ("run", str(clip_12s), "--describer", "dashscope", "--fps", "2", "--segment-seconds", "4")
    dry = cli(*args, "--dry-run", data=tmp_path / "d", env=env)
    assert dry.returncode == 0, dry.stderr
    estimate = json.loads(dry.stdout)["estimate"]
    res = cli(*args, data=tmp_path / "d", env=env)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    job_id = lines[0].split()[1]
    segments = [ln for ln in lines if ln.startswith("[")]
    usage = [ln.strip() for ln in lines if ln.startswith("    usage: ")]
    assert [s.split("]")[0] for s in segments] == ["[00:00–00:04", "[00:04–00:08", "[00:08–00:12"]
    assert all("8 frames @ fps=2" in s for s in segments)  # the fake's reply names what it was sent
    assert len(usage) == 3 and all("video tokens" in u and "qwen-vl-max-latest" in u for u in usage)
    assert any(ln.startswith("Summary (done): ") for ln in lines)
    total = next(ln for ln in lines if ln.startswith("Usage: "))
    # 3 segment calls + the summary's (on the text model), every HTTP request, and the cost
    assert "in 4 call(s), 4 HTTP request(s) (summary: " in total and total.endswith(" CNY")
    export = json.loads((tmp_path / "d" / "exports" / f"{job_id}.json").read_text())
    billed = export["usage"]["video_tokens"]
    assert billed == sum(s["video_tokens"] for s in export["segments"]) and f"/ {billed} video tokens" in total
    assert abs(estimate["video_tokens"] - billed) <= 0.02 * billed and estimate["calls"] == 3
    assert KEY not in res.stdout + res.stderr + json.dumps(export)


def test_sdk_env_base_url_openai_transport_and_streaming(tmp_path: Path, clip_12s: Path, fake_url: str) -> None:
    env = {
        "DASHSCOPE_API_KEY": KEY,
        "DASHSCOPE_HTTP_BASE_URL": fake_url,  # the SDK's own variable, read at import
        "FRAMESCRIBE_DASHSCOPE__TRANSPORT": "openai",
        "FRAMESCRIBE_DASHSCOPE__STREAM": "true",
    }
    res = cli(
        "run",
        str(clip_12s),
        "--describer",
        "dashscope",
        "--end",
        "8",
        "--segment-seconds",
        "4",
        data=tmp_path / "d",
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert len([ln for ln in res.stdout.splitlines() if ln.startswith("    usage: ")]) == 2
    assert "Summary (done): " in res.stdout


def test_bad_key_fails_the_job_with_the_hint(tmp_path: Path, clip_12s: Path, fake_url: str) -> None:
    env = {"DASHSCOPE_API_KEY": "bad-key-0000", "FRAMESCRIBE_DASHSCOPE__BASE_URL": fake_url}
    res = cli("run", str(clip_12s), "--describer", "dashscope", data=tmp_path / "d", env=env)
    assert res.returncode == 1
    assert "check DASHSCOPE_API_KEY / model access" in res.stdout
    assert "Summary (failed)" in res.stdout and "bad-key-0000" not in res.stdout + res.stderr
    assert "Traceback" not in res.stderr


def test_budget_over_the_estimate_is_one_line_before_any_call(tmp_path: Path, clip_12s: Path, fake_url: str) -> None:
    env = {"DASHSCOPE_API_KEY": KEY, "FRAMESCRIBE_DASHSCOPE__BASE_URL": fake_url}
    res = cli(
        "run", str(clip_12s), "--describer", "dashscope", "--max-video-tokens", "100", data=tmp_path / "d", env=env
    )
    assert res.returncode == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("framescribe: error:")]
    assert len(errors) == 1 and "exceed the cap of 100 by" in errors[0]
