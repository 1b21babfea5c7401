"""``framescribe doctor`` as a subprocess: passes with every service up, then names the right fix as each
service stops in turn. Every service is private to the test (redis-server on a free port, a fresh
PostgreSQL database, a worker and a beat on that Redis, the DashScope fake, Mosquitto): the machine's
shared Redis/PostgreSQL are never stopped; "PostgreSQL down" is a URL pointing at a closed port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.celery_fixtures import RedisServer, Worker, free_port, wait_for
from tests.integration.store_fixtures import pg_database, pg_up
from worker.config import Settings
from worker.doctor_checks import mqtt_connect

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-doctor-test-5a1f"
pytestmark = pytest.mark.services


def doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    res = subprocess.run(
        [sys.executable, "-m", "worker.cli", "doctor", "--json", *args],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT,
    )  # fmt: skip
    checks = {d["check"]: d for d in map(json.loads, res.stdout.splitlines())}
    assert "Traceback" not in res.stderr and KEY not in res.stdout + res.stderr, "never a traceback, never the key"
    return res.returncode, checks, res.stderr


def failing(checks: dict[str, dict[str, Any]]) -> set[str]:
    return {name for name, d in checks.items() if d["status"] == "fail"}


@pytest.fixture
def fake_dashscope() -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.dashscope_server", "--port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("FakeDashScope base_http_api_url="), line
        yield proc, line.split("=", 1)[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.skip("mosquitto is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: mqtt_connect(f"mqtt://127.0.0.1:{port}") is None, 10, "mosquitto")
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(10)


def test_mqtt_check_against_a_real_broker(mosquitto: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = mosquitto
    assert mqtt_connect(f"mqtt://127.0.0.1:{port}") is None
    proc.terminate()
    proc.wait(10)
    problem = mqtt_connect(f"mqtt://127.0.0.1:{port}")
    assert problem is not None and "does not answer" in problem


def test_doctor_passes_then_names_each_fix(
    tmp_path: Path, fake_dashscope: tuple[subprocess.Popen[str], str], mosquitto: tuple[subprocess.Popen[bytes], int]
) -> None:
    if not pg_up():
        pytest.skip("PostgreSQL is not answering on 127.0.0.1:5432")
    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    queue = f"doctor-{uuid.uuid4().hex[:8]}"
    fake, fake_url = fake_dashscope
    with pg_database("doctor") as pg_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMESCRIBE_", "DASHSCOPE_"))}
        env.update({
            "FRAMESCRIBE_DATA_DIR": str(tmp_path / "data"), "FRAMESCRIBE_DATABASE_URL": pg_url,
            "FRAMESCRIBE_BROKER_URL": server.url, "FRAMESCRIBE_WORKER__QUEUE": queue,
            "DASHSCOPE_API_KEY": KEY, "FRAMESCRIBE_DASHSCOPE__BASE_URL": fake_url, "NO_PROXY": "127.0.0.1,localhost",
        })  # fmt: skip
        if "live" in Settings.model_fields:  # alerts over MQTT exist in this build: configure them
            env["FRAMESCRIBE_LIVE__MQTT_URL"] = f"mqtt://127.0.0.1:{mosquitto[1]}"
        worker = Worker(f"doctor-{queue}", env, tmp_path / "worker.log", queue)
        with (tmp_path / "beat.log").open("wb") as beat_log:
            beat = subprocess.Popen([sys.executable, "-m", "worker.cli", "beat", "--max-interval", "1"], cwd=ROOT,
                                    env=env, stdout=beat_log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        lock = f"redbeat:{queue}::lock"
        client = redis.Redis.from_url(server.url)
        try:
            worker.start()
            worker.wait_ready()
            wait_for(lambda: client.exists(lock), 60, "beat to take its lock", step=0.2)

            code, checks, err = doctor(env, "--online")
            assert code == 0, (checks, err)
            assert failing(checks) == set()
            assert checks["workers"]["status"] == "ok" and queue in checks["workers"]["detail"]
            assert checks["store"]["status"] == "ok" and "migrated" in checks["store"]["detail"]
            assert checks["dashscope key"]["detail"].startswith("present")
            assert checks["dashscope online"]["status"] == "ok"
            assert checks["beat"]["status"] == "ok"
            if "live" in Settings.model_fields:
                assert checks["mqtt"]["status"] == "ok"

            steps: list[tuple[str, Any, str, str]] = [
                ("dashscope online", lambda: fake.terminate() or fake.wait(10), "unreachable", "NO_PROXY"),
                ("beat", lambda: _stop(beat, lambda: not client.exists(lock)), "no beat", "framescribe beat"),
                ("workers", worker.stop, "no worker answered", "framescribe worker"),
            ]
            if "live" in Settings.model_fields:
                steps.insert(0, ("mqtt", lambda: mosquitto[0].terminate() or mosquitto[0].wait(10),
                                 "does not answer", "mosquitto"))  # fmt: skip
            down: set[str] = set()
            for name, stop, detail, fix in steps:
                stop()
                down.add(name)
                code, checks, _ = doctor(env, "--online")
                assert code == 1 and failing(checks) == down, (name, checks)
                assert detail in checks[name]["detail"] and fix in checks[name]["fix"], checks[name]

            # PostgreSQL "stopped": the same configuration pointing at a port nothing listens on
            env_pg = {**env, "FRAMESCRIBE_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"}
            code, checks, _ = doctor(env_pg)
            assert code == 1 and checks["store"]["status"] == "fail"
            assert "does not answer" in checks["store"]["detail"] and "PostgreSQL" in checks["store"]["fix"]

            server.stop()  # Redis down: the broker and everything behind it, with the Redis fix
            code, checks, _ = doctor(env)
            assert code == 1 and {"broker", "workers", "beat"} <= failing(checks)
            assert "start Redis" in checks["broker"]["fix"] and "does not answer" in checks["broker"]["detail"]
            # the embedded mode (framescribe run) needs none of them
            code, checks, _ = doctor(env, "--embedded")
            assert code == 0 and "broker" not in checks, checks
        finally:
            client.close()
            _stop(beat, lambda: True)
            worker.stop()
            server.stop()


def _stop(proc: subprocess.Popen[Any], gone: Any) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    wait_for(gone, 30, "the service to be gone", step=0.2)
