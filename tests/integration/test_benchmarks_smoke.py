"""``python -m benchmarks --smoke``: every goal still prints its ratio line and the JSON is whole.

A CI guard against the benchmarks rotting; its figures come from tiny inputs on a shared machine and are
never asserted on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import media

REPO = Path(__file__).resolve().parents[2]
GOALS = ["G1", "G2", "G3", "G4", "G5", "G6", "G7", "R3", "R4", "R6"]  # G: issue 10; R: issue 19


@pytest.mark.skipif(not media.have_ffmpeg(), reason="ffmpeg makes the benchmark media")
def test_smoke_run_prints_every_goal_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out), "--media", str(tmp_path / "media")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    for key in GOALS:
        ratio_lines = [ln for ln in lines if ln.startswith(f"{key} ") and ": ratio " in ln]
        assert ratio_lines, f"no ratio line for {key}:\n{res.stdout[-3000:]}"
    assert "Traceback" not in res.stderr, res.stderr[-3000:]

    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["smoke"] is True and data["machine"]["cpus"] >= 1
    goals = {g["key"]: g for g in data["goals"]}
    assert sorted(goals) == GOALS
    issue19 = [ln for ln in lines if ln.startswith("issue 19 goal ")]
    assert [ln.split()[3] for ln in issue19] == ["1", "2", "3", "4", "5", "6"], res.stdout[-3000:]
    assert all(" not measured " not in ln for ln in issue19), issue19  # all six, baselines from this run
    assert data["issue19"] == issue19
    for key in ["G1", "G2", "G3", "G4", "G5", "R3", "R4", "R6"]:  # these need nothing but ffmpeg and the code
        g = goals[key]
        assert g["measured"] and isinstance(g["ratio"], float) and g["ratio"] > 0, g
        assert g["met"] in (True, False)
    if goals["G6"]["measured"]:
        assert isinstance(goals["G6"]["ratio"], float)
    else:
        assert goals["G6"]["note"], "an unmeasured goal says why"
    names = [m["name"] for m in data["measurements"]]
    assert any("ffmpeg -vf fps=1" in n for n in names) and any("framescribe sample" in n for n in names)
    for m in data["measurements"]:
        assert m["seconds"] and all(s > 0 for s in m["seconds"])
    assert data["scale"] and {"hours_per_day", "decode_cores", "bottleneck"} <= set(data["scale"][0])
