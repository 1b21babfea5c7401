"""Live cameras against real servers: GStreamer's RTSP server, ffmpeg HLS, Mosquitto — rolling segments with
wall-clock times, alerts and digests on MQTT, restarts without duplicates, drops and stalls recorded as gaps."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.live_fixtures import (
    assert_timeline,
    camera_name,
    live_settings,
    start_watch,
    stored,
    subscriber,
    wait_until,
)
from tests.integration.store_fixtures import temp_pg_database
from tests.live_servers import HlsServer, RtspServer, Subscriber, answering, free_port, make_clip, needs_rtsp
from worker.config import Settings
from worker.live.store import LiveStore

pytestmark = [needs_rtsp, pytest.mark.services]


@pytest.fixture(scope="session")
def motion_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "motion.mp4", seconds=4, motion=True)


@pytest.fixture(scope="session")
def quiet_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "quiet.mp4", seconds=4, motion=False)


@pytest.fixture
def rtsp(motion_clip: Path, tmp_path: Path) -> Iterator[RtspServer]:
    server = RtspServer(motion_clip, tmp_path / "rtsp.log")
    server.start()
    yield server
    server.stop()


ALWAYS = "keyword:scene"  # the local describer's text always says "scene": every described segment alerts


def test_watch_cli_stores_rolling_segments_and_publishes_alerts_and_a_digest(rtsp: RtspServer, tmp_path: Path) -> None:
    camera = camera_name()
    sub = subscriber(camera)
    try:
        cmd = [sys.executable, "-m", "worker.cli", "watch", rtsp.url, "--name", camera, "--segment-seconds", "2",
               "--fps", "2", "--describer", "local", "--alert", ALWAYS, "--digest", "10s", "--for", "12s",
               "--allow-camera", "127.0.0.1", "--data-dir", str(tmp_path / "data"),
               "--database-url", f"sqlite:///{tmp_path / 'live.db'}"]  # fmt: skip
        first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        settings = live_settings(tmp_path)
        wait_until(lambda: sub.of("state"), 30, "the first watcher to start")
        twin = subprocess.run(cmd, capture_output=True, text=True, timeout=60)  # the same camera again
        assert twin.returncode == 2 and "being watched already" in twin.stderr, twin.stderr[-2000:]
        out, err = first.communicate(timeout=90)
        assert first.returncode == 0, err[-2000:]
        report = json.loads(out.strip().splitlines()[-1])
        segments, gaps, rows = stored(settings, report["job_id"])
        assert report["segments"] == len(segments) >= 3
        assert [i for i, _ in rows] == [s.segment_index for s in segments]
        assert all(state == "done" for _, state in rows)
        assert_timeline(segments, gaps)
        assert all(s.utc_end_ms % 2000 == 0 for s in segments[:-1])  # cut at wall-clock boundaries
        assert all(s.utc_end_ms - s.utc_start_ms <= 2000 for s in segments[1:])
        assert segments[0].utc_end_ms - segments[0].utc_start_ms <= 4000  # a short first window joins the next
        alerts = wait_until(lambda: len(sub.of("alert")) >= report["alerts"] and sub.of("alert"), 10, "alerts")
        keys = [a["dedup_key"] for a in alerts]
        assert len(keys) == len(set(keys)) == report["alerts"] == len(segments)
        first = alerts[0]
        assert first["camera"] == camera and first["job_id"] == report["job_id"]
        assert first["start_utc"].endswith("Z") and Path(first["thumbnail"]).exists()
        seg, n = first["segment_index"], int(Path(first["thumbnail"]).stem.split("_")[1])  # frame_<n>_<t>ms.jpg
        assert first["thumbnail_url"] == f"/v1/jobs/{first['job_id']}/frames/{seg}/{n}.jpg"  # served from any machine
        digest = wait_until(lambda: sub.of("digest"), 10, "a digest")
        assert digest[0]["segments"] >= 1 and Path(digest[0]["path"]).exists()
        states = sub.of("state")
        assert states[-1]["status"] == "stopped" and any(s["status"] == "live" for s in states)
    finally:
        sub.stop()


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_restarted_watcher_resumes_without_duplicate_segments_or_alerts(
    rtsp: RtspServer, tmp_path: Path, db: str
) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(temp_pg_database("live")) if db == "postgresql" else None
        resumes_once(rtsp, live_settings(tmp_path, url))


def resumes_once(rtsp: RtspServer, settings: Settings) -> None:
    camera = camera_name()
    sub = subscriber(camera)
    try:
        first = start_watch(settings, rtsp.url, camera, 5, alert=[ALWAYS])
        c1 = first.join(40)
        second = start_watch(settings, rtsp.url, camera, 5, alert=[ALWAYS])
        c2 = second.join(40)
        assert second.watcher.job_id == first.watcher.job_id
        segments, gaps, rows = stored(settings, first.watcher.job_id)
        assert len(segments) == c1.segments + c2.segments == len(rows)
        assert len({s.utc_start_ms for s in segments}) == len(segments)
        assert_timeline(segments, gaps)
        assert any(g.reason == "watcher restarted" for g in gaps)
        alerts = wait_until(lambda: len(sub.of("alert")) >= c1.alerts + c2.alerts and sub.of("alert"), 10, "alerts")
        keys = [a["dedup_key"] for a in alerts]
        assert len(keys) == len(set(keys)) == c1.alerts + c2.alerts
    finally:
        sub.stop()


def test_server_killed_and_restarted_reconnects_and_records_the_gap(rtsp: RtspServer, tmp_path: Path) -> None:
    settings = live_settings(tmp_path)
    run = start_watch(settings, rtsp.url, camera_name(), 14)
    wait_until(lambda: run.watcher.counters.segments >= 1, 20, "a first segment")
    rtsp.kill()
    live = LiveStore(run.watcher.ports.store)
    away = wait_until(lambda: (s := live.get(run.watcher.stream.id)).status == "reconnecting" and s, 10, "status")
    assert away.reason  # e.g. "the stream ended" / "cannot connect: … Connection refused"
    time.sleep(1)
    rtsp.start()
    wait_until(lambda: live.get(run.watcher.stream.id).status == "live", 20, "live again")
    counters = run.join(60)
    segments, gaps, rows = stored(settings, run.watcher.job_id)
    assert counters.reconnects >= 1 and counters.reconnect_s, counters
    assert len(gaps) >= 1 and gaps[0].utc_end_ms - gaps[0].utc_start_ms >= 1500
    assert_timeline(segments, gaps)
    assert len({s.utc_start_ms for s in segments}) == len(segments) == len(rows)
    assert any(s.connection >= 1 for s in segments), "segments after the restart"


def test_a_stalled_server_is_cut_by_the_read_deadline(rtsp: RtspServer, tmp_path: Path) -> None:
    settings = live_settings(tmp_path)
    run = start_watch(settings, rtsp.url, camera_name(), 14)
    wait_until(lambda: run.watcher.counters.segments >= 1, 20, "a first segment")
    rtsp.stall()
    time.sleep(4)
    rtsp.resume()
    counters = run.join(60)
    segments, gaps, _ = stored(settings, run.watcher.job_id)
    assert counters.reconnects >= 1
    assert any(g.utc_end_ms - g.utc_start_ms >= 2000 for g in gaps), [g.__dict__ for g in gaps]
    assert_timeline(segments, gaps)


def test_a_quiet_camera_costs_no_model_calls(quiet_clip: Path, tmp_path: Path) -> None:
    server = RtspServer(quiet_clip, tmp_path / "quiet.log")
    server.start()
    try:
        settings = live_settings(tmp_path)
        run = start_watch(settings, server.url, camera_name(), 7, segmenter="motion")
        counters = run.join(40)
    finally:
        server.stop()
    segments, _, rows = stored(settings, run.watcher.job_id)
    assert counters.segments >= 2 and counters.described == 0
    assert all(state == "static" for _, state in rows) and all(s.static for s in segments)


def test_hls_playlist_over_http(motion_clip: Path, tmp_path: Path) -> None:
    hls = HlsServer(motion_clip, tmp_path / "hls")
    hls.start()
    try:
        settings = live_settings(tmp_path)
        run = start_watch(settings, hls.url, camera_name(), 7)
        counters = run.join(40)
    finally:
        hls.stop()
    segments, gaps, rows = stored(settings, run.watcher.job_id)
    assert counters.segments >= 2 and all(state == "done" for _, state in rows)
    assert_timeline(segments, gaps)


class PrivateBroker:
    """A real Mosquitto on its own loopback port, so stopping it does not disturb anything else."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        wait_until(lambda: answering(self.port), 10, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def test_alerts_made_while_mosquitto_is_down_are_delivered_once_after(rtsp: RtspServer, tmp_path: Path) -> None:
    port = free_port()
    broker = PrivateBroker(port)
    broker.start()
    settings = live_settings(tmp_path, mqtt_url=f"mqtt://127.0.0.1:{port}")
    camera = camera_name()
    sub = Subscriber(camera, port).start()
    run = start_watch(settings, rtsp.url, camera, 12, alert=[ALWAYS])
    try:
        wait_until(lambda: sub.of("alert"), 30, "a first alert")
        broker.stop()
        down_at = time.time()
        wait_until(lambda: run.watcher.counters.alerts >= len(sub.of("alert")) + 2, 30, "alerts while down")
        up_at = time.time()
        broker.start()
        sub.stop()
        sub = Subscriber(camera, port).start()
        counters = run.join(60)
        live = LiveStore(run.watcher.ports.store)
        wait_until(lambda: not live.pending(camera), 20, "the outbox to drain")
        rows = live.outbox(camera, "alert")
        made_while_down = [r for r in rows if down_at <= r.created_at.timestamp() <= up_at]
        assert made_while_down and all(r.mqtt_sent_at is not None for r in rows)
        keys_after = [a["dedup_key"] for a in sub.of("alert")]
        assert len(keys_after) == len(set(keys_after))  # never twice
        assert {r.dedup_key for r in made_while_down} <= set(keys_after)  # delivered after, not lost
        assert counters.alerts == len(rows)
    finally:
        sub.stop()
        broker.stop()


@pytest.mark.slow  # ~2.5 min: a soak with repeated drops, stalls and a watcher restart
def test_soak_with_repeated_faults_keeps_the_timeline_clean(rtsp: RtspServer, tmp_path: Path) -> None:
    settings = live_settings(tmp_path)
    camera = camera_name()
    sub = subscriber(camera)
    try:
        first = start_watch(settings, rtsp.url, camera, 75, alert=[ALWAYS], digest_seconds=20)
        for i in range(4):
            time.sleep(10)
            if i % 2:
                rtsp.stall()
                time.sleep(4)
                rtsp.resume()
            else:
                rtsp.kill()
                time.sleep(1)
                rtsp.start()
        c1 = first.join(120)
        second = start_watch(settings, rtsp.url, camera, 20, alert=[ALWAYS], digest_seconds=20)
        c2 = second.join(60)
        segments, gaps, rows = stored(settings, first.watcher.job_id)
        assert len(segments) == len(rows) == c1.segments + c2.segments
        assert len({s.utc_start_ms for s in segments}) == len(segments)
        assert_timeline(segments, gaps)
        assert len(gaps) >= 5  # 4 faults and the restart, each recorded
        alerts = wait_until(lambda: len(sub.of("alert")) >= c1.alerts + c2.alerts and sub.of("alert"), 20, "alerts")
        keys = [a["dedup_key"] for a in alerts]
        assert len(keys) == len(set(keys)) == c1.alerts + c2.alerts
        digests = [d["dedup_key"] for d in sub.of("digest")]
        assert len(digests) == len(set(digests)) >= 4
    finally:
        sub.stop()
