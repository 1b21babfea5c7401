"""Bounded fuzzing runs (slow tier): the atheris target must find no crash in its time budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fuzz_parsing_finds_nothing(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    seconds = int(os.environ.get("FRAMESCRIBE_FUZZ_SECONDS", "60"))
    args = [f"-max_total_time={seconds}", f"-artifact_prefix={tmp_path}/"]
    res = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.fuzz_parsing", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Done" in res.stderr or "DONE" in res.stderr or "pulse" in res.stderr, res.stderr[-1000:]
