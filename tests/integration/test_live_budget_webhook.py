"""Shared live budgets in the real Redis, signed webhooks for alerts, and the retained camera state."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from scheduler.webhooks import verify_request
from tests.integration.live_fixtures import live_settings
from tests.live_servers import answering
from worker.adapters.stores.sql import SqlResultStore
from worker.live.budget import CallBudget
from worker.live.notify import Notifier
from worker.live.store import LiveStore

pytestmark = pytest.mark.services
REDIS = "redis://127.0.0.1:6379/3"


@pytest.mark.skipif(not answering(6379), reason="Redis is not running")
def test_the_hourly_budget_holds_across_concurrent_cameras() -> None:
    budget = CallBudget(REDIS, per_hour=25, per_day=1000, prefix=f"test:live:{uuid.uuid4().hex}")
    granted: list[bool] = []
    lock = threading.Lock()

    def camera() -> None:
        for _ in range(10):
            ok = budget.reserve(at=1_800_000_000) is None
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=camera) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 25 and len(granted) == 50  # never more than the cap, whatever the interleaving
    assert budget.used(at=1_800_000_000) == (25, 25)
    assert budget.reserve(at=1_800_000_000 + 3600) is None  # the next hour has room again
    refused = budget.reserve(at=1_800_000_000)
    assert refused is not None and "per hour" in refused


@pytest.mark.skipif(not answering(6379), reason="Redis is not running")
def test_workers_whose_clocks_disagree_count_into_the_same_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    """The windows follow Redis's clock: a worker an hour ahead does not open a fresh hour for itself."""
    prefix = f"test:live:{uuid.uuid4().hex}"
    here, ahead = CallBudget(REDIS, per_hour=1, per_day=0, prefix=prefix), CallBudget(REDIS, 1, 0, prefix)
    assert here.reserve() is None
    monkeypatch.setattr(time, "time", lambda: 1_900_000_000.0)  # this process's clock, years ahead
    refused = ahead.reserve()
    assert refused is not None and "per hour" in refused  # the same Redis hour: over the cap of 1
    assert ahead.used() == here.used() == (1, 1)


class Receiver(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    status = 500

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).got.append(({k: v for k, v in self.headers.items()}, body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


def test_webhook_alerts_are_signed_retried_and_sent_once(tmp_path: Path) -> None:
    settings = live_settings(tmp_path)
    live = LiveStore(SqlResultStore(settings.resolved_database_url))
    Receiver.got, Receiver.status = [], 500
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    notifier = Notifier(live, None, "s3cret", timeout_s=5)
    try:
        payload = {"type": "alert", "dedup_key": "job:3:alert", "camera": "gate"}
        assert live.enqueue("job:3:alert", "gate", "alert", payload, False, url)
        assert not live.enqueue("job:3:alert", "gate", "alert", payload, False, url)  # redelivered: not twice
        assert notifier.flush("gate") == 1  # the receiver failed: still pending
        Receiver.status = 204
        assert notifier.flush("gate") == 0
        assert notifier.flush("gate") == 0  # nothing left to send
        assert len(Receiver.got) == 2
        headers, body = Receiver.got[-1]
        assert json.loads(body) == payload
        assert verify_request("s3cret", headers, body, now=int(time.time())) is None
        assert headers["X-Framescribe-Delivery"] == "job:3:alert"
    finally:
        server.shutdown()
        server.server_close()
