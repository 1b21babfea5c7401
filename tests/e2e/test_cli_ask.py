"""``framescribe search`` modes/filters, ``ask`` and ``reindex`` as subprocesses, offline and against the fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_cli import cli
from tests.fakes.dashscope_server import FakeDashScope

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "street.mp4"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example clip described by the local describer in 5 s segments (people in the first ten seconds)."""
    if not EXAMPLE.exists():
        pytest.skip("examples/street.mp4 is missing: run scripts/make_example.py")
    d = tmp_path_factory.mktemp("cli-ask") / "d"
    res = cli("run", str(EXAMPLE), "--segment-seconds", "5", "--describer", "local", data=d, timeout=300)
    assert res.returncode == 0, res.stderr
    return d


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]


def test_search_modes_filters_and_negation(data: Path) -> None:
    rows = _json_lines(cli("search", "people", "--mode", "text", "--json", data=data).stdout)
    assert rows and all("no people" not in str(r["snippet"]) for r in rows), rows
    people = {r["index"] for r in rows}
    where = _json_lines(cli("search", "", "--where", "people>=1", "--json", data=data).stdout)
    assert {r["index"] for r in where} == people and {r["mode"] for r in where} == {"filter"}
    sem = _json_lines(cli("search", "--semantic", "pedestrians walking about", "--json", data=data).stdout)
    assert sem and {r["mode"] for r in sem} == {"semantic"}
    assert all(
        r["index"] in people for r in _json_lines(cli("search", "--semantic", "people", "--json", data=data).stdout)
    )
    bad = cli("search", "", "--where", "colour>2", data=data)
    errors = [line for line in bad.stderr.splitlines() if line.startswith("framescribe: error:")]
    assert bad.returncode == 2 and errors[0].startswith("framescribe: error: unknown fact")
    again = cli("reindex", data=data)
    assert again.returncode == 0 and "0 embedded" in again.stdout, "vectors were computed when segments were stored"


def test_search_and_ask_take_the_same_time_range_and_search_pages(data: Path) -> None:
    """``--from``/``--to`` read seconds, MM:SS or HH:MM:SS in ``search`` as in ``ask`` (a bad one is a usage
    error), and ``search --offset`` pages as the REST API's ``offset`` does."""
    every = _json_lines(cli("search", "", "--where", "people>=0", "--json", data=data).stdout)
    assert len(every) >= 4, every
    start, end = every[1]["start_ms"], every[1]["end_ms"]
    inside = {r["index"] for r in every if r["end_ms"] > start and r["start_ms"] < end}
    for lo, hi in ((f"{start / 1000:g}", f"0:{end // 1000:02d}"), (f"0:00:{start // 1000:02d}", f"{end / 1000:g}")):
        ranged = cli("search", "", "--where", "people>=0", "--from", lo, "--to", hi, "--json", data=data)
        got = _json_lines(ranged.stdout)
        assert ranged.stderr.count("framescribe: store:") == 1, ranged.stderr  # settings resolved once
        assert {r["index"] for r in got} == inside and len(inside) < len(every), (lo, hi, got)
    pages = [cli("search", "", "--where", "people>=0", "--limit", "2", "--offset", str(o), "--json", data=data)
             for o in (0, 2)]  # fmt: skip
    assert [r["index"] for p in pages for r in _json_lines(p.stdout)] == [r["index"] for r in every[:4]]
    ask = cli("ask", "what happened?", "--from", f"{start / 1000:g}", "--to", f"{end / 1000:g}", "--json", data=data)
    asked = json.loads(ask.stdout)
    assert ask.stderr.count("framescribe: store:") == 1, ask.stderr
    assert {c["index"] for c in asked["citations"]} <= inside
    for command in (("search", "people"), ("ask", "who?")):
        bad = cli(*command, "--from", "-5", data=data)
        assert bad.returncode == 2 and "framescribe: error: --from must be seconds, MM:SS or HH:MM:SS" in bad.stderr


def test_ask_offline_is_extractive_with_checked_citations(data: Path) -> None:
    res = cli("ask", "when were people visible?", "--json", data=data)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["kind"] == "extractive" and not out["written_by_model"]
    assert out["answer"].startswith("Not written by a language model")
    assert out["citations"] and out["unsupported_citations"] == []
    plain = cli("ask", "was there a helicopter on the roof?", data=data)
    assert plain.returncode == 0 and "Nothing in the stored descriptions matches" in plain.stdout


def test_ask_with_the_model_warns_about_removed_citations(data: Path) -> None:
    with FakeDashScope() as fake:
        fake.reply_fn = lambda rec: "People walk past [00:01–00:04] and again at [09:59]."
        env = {"FRAMESCRIBE_DASHSCOPE__API_KEY": "sk-test", "FRAMESCRIBE_DASHSCOPE__BASE_URL": fake.base_http_api_url,
               "FRAMESCRIBE_ASK__EMBEDDER": "local", "FRAMESCRIBE_DASHSCOPE__MAX_ATTEMPTS": "1"}  # fmt: skip
        res = cli("ask", "when were people visible?", data=data, env=env)
        assert res.returncode == 0, res.stderr
        assert "People walk past [00:01–00:04] and again at." in res.stdout
        assert "warning: removed citation [09:59]" in res.stderr
        assert "Cited moments:" in res.stdout and "thumbnail" in res.stdout
        assert len(fake.text_generations()) == 1
