"""Small parts of the operator's view: JSON log lines, the no-worker warning, the one error line."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from worker.cli_errors import error_line, exit_code
from worker.config import load_settings
from worker.errors import ConfigError, NotFound, PlanError
from worker.heartbeat import NO_WORKER, WORKER_KEY, beats, no_worker_warning
from worker.logs import ContextFilter, JsonFormatter, bind


class DictRedis:
    """The three Redis calls the heartbeat reader makes, over a dict (the real Redis is in the e2e tests)."""

    def __init__(self, data: dict[str, bytes]) -> None:
        self.data = data

    def scan_iter(self, match: str, count: int = 0) -> Any:
        prefix = match.rstrip("*")
        return iter([k for k in self.data if k.startswith(prefix)])

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)


def _beat(host: str, queues: list[str]) -> bytes:
    return json.dumps({"hostname": host, "pid": 7, "queues": queues, "ts": time.time()}).encode()


def test_no_worker_warning_names_the_fix() -> None:
    assert no_worker_warning(DictRedis({}), "framescribe") == NO_WORKER
    assert "`framescribe worker`" in NO_WORKER
    other = DictRedis({WORKER_KEY + "a": _beat("a", ["streams"]), WORKER_KEY + "bad": b"{not json"})
    warning = no_worker_warning(other, "framescribe")
    assert warning is not None and "consume: streams" in warning and "--queues framescribe" in warning
    assert len(beats(other)) == 1, "a malformed heartbeat is skipped"
    mine = DictRedis({WORKER_KEY + "b": _beat("b", ["framescribe", "x"])})
    assert no_worker_warning(mine, "framescribe") is None


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("worker.tasks", logging.INFO, __file__, 1, msg, args, None)


def test_json_lines_carry_bound_and_mentioned_job_ids() -> None:
    fmt, flt = JsonFormatter(), ContextFilter()
    job = "ab" * 16
    bind(job, 3)
    try:
        rec = _record("segment %d ended: %s", 3, "done")
        assert flt.filter(rec)
        doc = json.loads(fmt.format(rec))
        assert doc["job_id"] == job and doc["segment"] == 3 and doc["msg"] == "segment 3 ended: done"
    finally:
        bind(None)
    rec = _record("job %s: 2 segments planned", "cd" * 16)
    flt.filter(rec)
    assert json.loads(fmt.format(rec))["job_id"] == "cd" * 16, "the id named in the message when none is bound"
    rec = _record("job %s: segment %d done", "ef" * 16, 4)
    flt.filter(rec)
    assert json.loads(fmt.format(rec))["segment"] == 4
    rec = _record("worker ready")
    flt.filter(rec)
    doc = json.loads(fmt.format(rec))
    assert doc["job_id"] is None and doc["segment"] is None and doc["level"] == "INFO"


def test_logging_format_setting_is_checked() -> None:
    assert load_settings(logging={"format": "json"}).logging.format == "json"
    with pytest.raises(ConfigError, match=r"logging\.format"):
        load_settings(logging={"format": "xml"})


def test_error_line_and_exit_codes() -> None:
    assert error_line("bad\n  value\tthere") == "framescribe: error: bad value there"
    assert exit_code(PlanError("x")) == 2 and exit_code(ConfigError("x")) == 2 and exit_code(NotFound("x")) == 1
