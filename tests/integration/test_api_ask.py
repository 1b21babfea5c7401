"""``POST /v1/ask`` (JSON and Server-Sent Events) and ``GET /v1/search`` modes/filters through the real app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from scheduler.main import create_app
from tests.fakes.dashscope_server import FakeDashScope
from tests.integration.test_ask import _seed
from worker.adapters.stores.sql import SqlResultStore
from worker.config import Settings, load_settings
from worker.indexing import embedder_for, reindex

KEY = "test-key-ask"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _settings(tmp_path: Path, fake: FakeDashScope | None) -> Settings:
    ds = {"api_key": "sk-test", "base_url": fake.base_http_api_url, "max_attempts": 1} if fake else {}
    return load_settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'api.db'}",
                         describer={"kind": "local"}, api_keys=[KEY], dashscope=ds,
                         security={"allowed_hosts": ["testserver"]},  # TestClient's Host
                         ask={"embedder": "dashscope" if fake else "none", "embed_dimension": 256,
                              "look_again": False})  # fmt: skip


def events(body: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append((lines["event"], json.loads(lines["data"])))
    return out


@pytest.fixture
def fake() -> Iterator[FakeDashScope]:
    with FakeDashScope() as f:
        yield f


def test_ask_offline_json_and_stream(tmp_path: Path) -> None:
    settings = _settings(tmp_path, None)
    job = _seed(SqlResultStore(settings.resolved_database_url), tmp_path)
    with TestClient(create_app(settings, inline=True)) as client:
        res = client.post("/v1/ask", json={"question": "when did the van park?", "job": job}, headers=AUTH)
        assert res.status_code == 200, res.text
        data = res.json()
        assert data["kind"] == "extractive" and data["written_by_model"] is False
        (first, *_) = data["citations"]
        assert first["index"] == 1 and first["review"] == f"/#/jobs/{job}?seg=1"
        assert first["thumbnail"] == f"/v1/jobs/{job}/frames/1/0.jpg" and "thumb_path" not in first
        sse = client.post("/v1/ask", json={"question": "when did the van park?", "stream": True}, headers=AUTH)
        assert sse.headers["content-type"].startswith("text/event-stream")
        kinds = [k for k, _ in events(sse.text)]
        assert kinds == ["evidence", "answer"]
        assert events(sse.text)[-1][1]["answer"] == data["answer"]
        for body, status, field in (
            ({"question": "x", "where": ["colour>3"]}, 422, "where"),
            ({"question": "x", "job": "0" * 32}, 404, None),
            ({"question": ""}, 422, "question"),
            ({"question": "x", "from": "soon"}, 422, "from"),
        ):
            bad = client.post("/v1/ask", json=body, headers=AUTH)
            assert bad.status_code == status, bad.text
            if field:
                assert bad.json()["error"]["field"] == field
        assert client.post("/v1/ask", json={"question": "x"}).status_code == 401
        found = client.get("/v1/search", params={"where": "people>=2"}, headers=AUTH).json()
        assert [(i["index"], i["mode"]) for i in found["items"]] == [(2, "filter")]
        text = client.get("/v1/search", params={"q": "people", "mode": "text"}, headers=AUTH).json()
        assert {i["index"] for i in text["items"]} == {1, 2}, "segment 0 has 'people: []' (none): no match"
        assert client.get("/v1/search", params={"q": "van", "mode": "semantic"}, headers=AUTH).status_code == 422


def test_ask_streams_model_text_then_the_checked_answer(tmp_path: Path, fake: FakeDashScope) -> None:
    settings = _settings(tmp_path, fake)
    store = SqlResultStore(settings.resolved_database_url)
    job = _seed(store, tmp_path)
    reindex(store, embedder_for(settings))  # type: ignore[arg-type]
    fake.reply_fn = lambda rec: "Two people argued at the gate [00:20–00:30] and left by car [00:55]."
    with TestClient(create_app(settings, inline=True)) as client:
        res = client.post("/v1/ask", json={"question": "when did people argue at the gate?", "stream": True},
                          headers=AUTH)  # fmt: skip
        got = events(res.text)
        kinds = [k for k, _ in got]
        assert kinds[0] == "evidence" and kinds[-1] == "answer" and kinds.count("delta") > 3
        streamed = "".join(d["text"] for k, d in got if k == "delta")
        assert "[00:55]" in streamed, "the stream shows the model's raw text"
        final = got[-1][1]
        assert final["answer"] == "Two people argued at the gate [00:20–00:30] and left by car."
        assert [c["text"] for c in final["unsupported_citations"]] == ["[00:55]"]
        assert final["citations"][0]["review"] == f"/#/jobs/{job}?seg=2"
        hybrid = client.get("/v1/search", params={"q": "argue gate"}, headers=AUTH).json()
        assert hybrid["mode"] == "hybrid" and hybrid["items"][0]["index"] == 2
