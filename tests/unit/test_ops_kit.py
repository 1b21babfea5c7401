"""The operator kit in ops/: every alert rule and dashboard expression parses (promtool, else the
promql-parser wheel), the dashboard survives Grafana's typed schema (grafana-foundation-sdk models,
generated from Grafana's own schema) without losing a key, its layout is sound, and every metric it
names is one the API exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

OPS = Path(__file__).resolve().parents[2] / "ops"
RULES = OPS / "prometheus" / "framescribe-alerts.yml"
DASHBOARD = OPS / "grafana" / "framescribe-dashboard.json"


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _panel_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def test_alert_rules_pass_promtool_or_parse(tmp_path: Path) -> None:
    rules = _rules()
    alerts = {r["alert"] for r in rules if "alert" in r}
    # the four concerns each have an alert
    assert {"FramescribeQueueBacklog", "FramescribeJobsStuck", "FramescribeDashScopeErrorRate"} <= alerts
    assert {"FramescribeDashScopeSpendHigh", "FramescribeWorkerHeartbeatStale", "FramescribeNoWorkers"} <= alerts
    for rule in rules:
        if "alert" in rule:
            assert rule["annotations"]["summary"] and rule["annotations"]["runbook"], rule["alert"]
    promtool = shutil.which("promtool")
    if promtool:
        res = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"SUCCESS: {len(rules)} rules found" in res.stdout
    else:
        promql_parser = pytest.importorskip("promql_parser")
        for rule in rules:
            promql_parser.parse(rule["expr"])


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    exprs = _panel_exprs()
    assert len(exprs) >= 10
    promtool = shutil.which("promtool")
    if promtool:  # promtool checks expressions inside rule files: one recording rule per panel query
        as_rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]}  # fmt: skip
        path = tmp_path / "dashboard-rules.yml"
        path.write_text(yaml.safe_dump(as_rules))
        res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
    promql_parser = pytest.importorskip("promql_parser")
    for expr in exprs:
        promql_parser.parse(expr)
    with pytest.raises(ValueError):
        promql_parser.parse("sum(framescribe_queue_depth")  # the parser does reject broken input


def test_dashboard_matches_grafana_schema_and_layout() -> None:
    sdk = pytest.importorskip("grafana_foundation_sdk")
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    del sdk
    register_default_plugins()
    src = json.loads(DASHBOARD.read_text())
    back = json.loads(json.dumps(Dashboard.from_json(src), cls=JSONEncoder))
    lost: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict):
            for key, value in a.items():
                if key not in b:
                    lost.append(f"{path}/{key}")
                else:
                    walk(value, b[key], f"{path}/{key}")
        elif isinstance(a, list):
            assert isinstance(b, list) and len(a) == len(b), path
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{i}]")
        else:
            assert a == b, f"{path}: {a!r} became {b!r}"

    walk({k: v for k, v in src.items() if not k.startswith("__")}, back, "")
    assert lost == [], f"keys Grafana's dashboard schema does not know: {lost}"
    ids = [p["id"] for p in src["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in src["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, f"panel {p['title']} overlaps another"
        cells |= area
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}" and p["targets"], p["title"]


METRIC = re.compile(r"\b(framescribe_[a-z_]+)")


def exported_names(text: str) -> set[str]:
    """Sample names a Prometheus exposition can hold, from its ``# TYPE`` lines."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "counter":
                names.add(name + "_total")
            if kind == "histogram":
                names |= {name + "_bucket", name + "_sum", name + "_count"}
    return names


def referenced_names() -> set[str]:
    """Every framescribe_* metric the rules and the dashboard use (recording rules are framescribe:…)."""
    return set(METRIC.findall(RULES.read_text() + DASHBOARD.read_text()))
