"""The auth model through the real app: Bearer keys (plain or sha256), read-only scope, open health
endpoints, loopback-only when no key is configured. No workers (a recording enqueuer)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.requests import Request
from typer.testing import CliRunner

from scheduler.api.deps import authenticate
from scheduler.api.errors import ApiError
from tests.integration.api_fixtures import Api, error_of, running_api, wait_for
from worker.config import load_settings
from worker.errors import ConfigError

WRITE, HASHED, READ = "write-key-1", "hashed-key-2", "read-key-3"
ENDPOINTS = [  # (method, path, needs)
    ("GET", "/v1/jobs", "read"),
    ("GET", "/v1/jobs/0123456789abcdef0123456789abcdef", "read"),
    ("GET", "/v1/schedules", "read"),
    ("GET", "/metrics", "read"),
    ("POST", "/v1/jobs", "write"),
    ("POST", "/v1/schedules", "write"),
    ("POST", "/v1/jobs/0123456789abcdef0123456789abcdef/cancel", "write"),
    ("DELETE", "/v1/jobs/0123456789abcdef0123456789abcdef", "write"),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    hashed = "sha256:" + hashlib.sha256(HASHED.encode()).hexdigest()
    with running_api(tmp_path_factory.mktemp("auth"), api_keys=[WRITE, hashed], read_only_api_keys=[READ]) as a:
        yield a


@pytest.mark.parametrize(("method", "path", "needs"), ENDPOINTS)
@pytest.mark.parametrize("key", [None, "wrong", READ, WRITE, HASHED])
def test_auth_matrix(api: Api, method: str, path: str, needs: str, key: str | None) -> None:
    with api.http(key) as http:
        resp = http.request(method, path, json={})
    if key in (None, "wrong"):
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert error_of(resp)["code"] == "unauthorized"
    elif key == READ and needs == "write":
        assert resp.status_code == 403
        assert "read-only" in error_of(resp)["message"]
    else:  # authenticated: whatever the endpoint says next, it is not an auth refusal
        assert resp.status_code not in (401, 403), resp.text


def test_refused_requests_create_nothing(api: Api) -> None:
    media = api.media / "x.mp4"
    with api.http(READ) as http:
        assert http.post("/v1/jobs", json={"path": str(media)}).status_code == 403
    with api.http("wrong") as http:
        assert http.post("/v1/jobs", json={"path": str(media)}).status_code == 401
    assert api.enqueuer.jobs == [] and api.store().list_jobs() == []


def test_health_is_open_and_keys_in_the_url_are_refused(api: Api) -> None:
    with api.http() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"store": True, "broker": True, "workers": 1}
        resp = http.get("/v1/jobs", params={"api_key": WRITE}, headers={"Authorization": f"Bearer {WRITE}"})
    assert resp.status_code == 401 and error_of(resp)["code"] == "key_in_url"


def test_other_schemes_and_empty_bearer_are_refused(api: Api) -> None:
    with api.http() as http:
        for header in (f"Basic {WRITE}", "Bearer", WRITE, f"Token {WRITE}", f"Bearer {WRITE}x"):
            resp = http.get("/v1/jobs", headers={"Authorization": header})
            assert resp.status_code == 401, header


def test_readyz_reports_a_dead_queue(api: Api) -> None:
    api.enqueuer.down = True
    try:
        with api.http() as http:  # a /readyz answer is reused for security.readiness_cache_s (3 s)
            resp = wait_for(lambda: (r := http.get("/readyz")).status_code == 503 and r, 10, "/readyz to see it")
        assert resp.status_code == 503
        assert resp.json() == {"status": "not ready", "checks": {"store": True, "broker": False, "workers": 0}}
    finally:
        api.enqueuer.down = False


def _request(host: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/v1/jobs", "headers": [], "query_string": b"",
                    "client": (host, 40000)})  # fmt: skip


def test_without_keys_only_loopback_clients_are_served(tmp_path: Path) -> None:
    with running_api(tmp_path) as api, api.http() as http:  # no keys; the test client is 127.0.0.1
        assert http.get("/v1/jobs").status_code == 200
    open_settings = load_settings(data_dir=tmp_path / "d")
    for host in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert authenticate(_request(host), open_settings).scope == "write"
    for host in ("10.1.2.3", "192.168.0.9", "2001:db8::1"):
        with pytest.raises(ApiError) as err:
            authenticate(_request(host), open_settings)
        assert err.value.status == 401 and "loopback" in err.value.message


def test_cli_refuses_a_public_bind_without_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from worker import cli

    cli._register_command_modules()
    monkeypatch.setenv("FRAMESCRIBE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("FRAMESCRIBE_API_KEYS", raising=False)
    result = CliRunner().invoke(cli.app, ["scheduler", "--host", "0.0.0.0", "--port", "0"])
    assert isinstance(result.exception, ConfigError)
    assert "without API keys" in result.exception.message
