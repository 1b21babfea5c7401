"""Signed URLs through the CLI (issue 14, item 15): a source URL's query string and credentials never
reach the terminal, the worker's log lines or the job's stored error, whatever way the download fails.
``framescribe run`` as a subprocess against a loopback server, JSON logs on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.api_fixtures import LoopbackServer, Recorded
from worker.adapters.stores.sql import SqlResultStore

pytestmark = pytest.mark.security

SECRET = "SECRETSIG0123"
ANSWERS = {
    "404": (404, {"Content-Type": "text/plain"}, b"no such object"),
    "not a video": (200, {"Content-Type": "video/mp4"}, b"<html>hello, this is not a video</html>" * 40),
    "redirect loop": (302, {"Location": f"/again?X-Amz-Signature={SECRET}"}, b""),
}


@pytest.mark.parametrize("answer", sorted(ANSWERS))
def test_signed_url_secrets_stay_out_of_output_logs_and_errors(tmp_path: Path, answer: str) -> None:
    def respond(req: Recorded) -> tuple[int, dict[str, str], bytes]:
        return ANSWERS[answer]

    with LoopbackServer(respond) as server:
        url = server.url(f"/clip.mp4?X-Amz-Signature={SECRET}&token={SECRET}")  # credentials: refused upfront
        env = {
            **os.environ,
            "FRAMESCRIBE_DATA_DIR": str(tmp_path / "data"),
            "FRAMESCRIBE_SCHEDULER__ALLOW_PRIVATE_URLS": json.dumps(["127.0.0.1"]),
            "FRAMESCRIBE_LOGGING__FORMAT": "json",
        }
        proc = subprocess.run(
            [sys.executable, "-m", "worker.cli", "run", url, "--describer", "local"],
            capture_output=True, text=True, env=env, timeout=180,
        )  # fmt: skip
        assert server.hits, "the download was attempted"
    assert proc.returncode != 0, proc.stdout
    assert proc.stderr.strip(), "the failure is reported"
    assert SECRET not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    store = SqlResultStore(f"sqlite:///{tmp_path / 'data' / 'framescribe.db'}")
    try:
        for job in store.list_jobs(limit=10):
            assert job.state == "failed" and job.error, job
            assert SECRET not in job.error and SECRET not in (json.dumps(job.summary) if job.summary else "")
    finally:
        store.close()
