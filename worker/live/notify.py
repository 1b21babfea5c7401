"""Delivering alerts and digests at least once: an outbox in the store, flushed to MQTT and signed webhooks.

Every message is put in ``live_outbox`` under a unique dedup key (``<job>:<segment>:alert``,
``<job>:digest:<period start>``) before anything is sent, so a redelivered segment or a restarted
watcher never alerts twice; a message is marked sent only after the broker's PUBACK (QoS 1) or a 2xx
from the webhook, so a broker that is down gets it when it is back. The payload carries ``dedup_key``
for receivers that deduplicate. A retained ``framescribe/<camera>/state`` topic holds each camera's
last state.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from worker.core.signing import DELIVERY_HEADER, EVENT_HEADER, sign
from worker.live.store import LiveStore

log = logging.getLogger(__name__)
TOPIC_PREFIX = "framescribe"


def topic(camera: str, kind: str) -> str:
    return f"{TOPIC_PREFIX}/{camera}/{kind}"


class Mqtt:
    """A paho client that connects lazily, reconnects on its own and publishes with QoS 1."""

    def __init__(self, url: str, client_id: str | None = None, timeout_s: float = 5.0) -> None:
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 1883
        self.timeout_s = timeout_s
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"framescribe-{uuid.uuid4().hex[:8]}"
        )
        if parts.username:
            self.client.username_pw_set(parts.username, parts.password)
        self.client.reconnect_delay_set(1, 10)
        self._connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p=None: self._connected.set() if not rc.is_failure else None
        self.client.on_disconnect = lambda c, u, f, rc, p=None: self._connected.clear()
        self._started = False

    def _ensure(self) -> bool:
        if not self._started:
            try:
                self.client.connect_async(self.host, self.port, keepalive=30)
            except OSError as exc:
                log.warning("mqtt: cannot connect to %s:%s: %s", self.host, self.port, exc)
                return False
            self.client.loop_start()
            self._started = True
        return self._connected.wait(self.timeout_s)

    def publish(self, topic_: str, payload: dict[str, Any], *, retain: bool = False) -> str | None:
        """None once the broker acknowledged the message; else why not (the caller retries later)."""
        if not self._ensure():
            return f"MQTT broker {self.host}:{self.port} is not reachable"
        info = self.client.publish(topic_, json.dumps(payload, ensure_ascii=False), qos=1, retain=retain)
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as exc:
            return f"MQTT publish failed: {exc}"
        return None if info.is_published() else "MQTT broker did not acknowledge in time"

    def close(self) -> None:
        if self._started:
            self.client.loop_stop()
            self.client.disconnect()
            self._started = False


class Notifier:
    """Flushes the outbox: every pending message to MQTT and/or its webhook, oldest first.

    ``start()`` runs the flushing on its own thread (``kick()`` wakes it), so a broker or webhook that is
    down never blocks reading the camera."""

    def __init__(
        self, live: LiveStore, mqtt_client: Mqtt | None, webhook_secret: str | None, timeout_s: float = 10.0
    ) -> None:
        self.live = live
        self.mqtt = mqtt_client
        self.secret = webhook_secret
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Event()
        self._states: dict[str, dict[str, Any]] = {}
        self._thread: threading.Thread | None = None
        self.camera: str | None = None

    def start(self, camera: str) -> Notifier:
        self.camera = camera
        self._thread = threading.Thread(target=self._loop, name=f"notify-{camera}", daemon=True)
        self._thread.start()
        return self

    def kick(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._done.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self._publish_states()
            try:
                self.flush(self.camera)
            except Exception:  # the store hiccupped: the outbox is still there next round
                log.exception("camera %s: flushing the outbox failed", self.camera)

    def close(self) -> None:
        """Stop the thread after one last round (bounded by the client timeouts)."""
        self._done.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(3 * self.timeout_s)
        self._publish_states()
        self.flush(self.camera)
        if self.mqtt is not None:
            self.mqtt.close()

    def flush(self, camera: str | None = None, limit: int = 100) -> int:
        """Send what is pending; returns how many messages are still pending after this round."""
        with self._lock:
            rows = self.live.pending(camera, limit)
            left = 0
            for row in rows:
                error = None
                mqtt_ok = webhook_ok = False
                if row.mqtt and row.mqtt_sent_at is None:
                    if self.mqtt is None:
                        error = "no MQTT broker configured"
                    else:
                        error = self.mqtt.publish(topic(row.camera, row.kind), row.payload)
                        mqtt_ok = error is None
                if row.webhook_url and row.webhook_sent_at is None:
                    problem = self._post(row.webhook_url, row.kind, row.dedup_key, row.payload)
                    webhook_ok = problem is None
                    error = error or problem
                self.live.mark(row.id, mqtt=mqtt_ok, webhook=webhook_ok, error=error)
                if error:
                    left += 1
                    if self.mqtt is not None and row.mqtt and not mqtt_ok:
                        break  # the broker is down: keep the order, try again later
            return left

    def state(self, camera: str, payload: dict[str, Any]) -> None:
        """Queue the retained last-state of a camera (the newest replaces an unsent one)."""
        with self._lock:
            self._states[camera] = payload
        self.kick()

    def _publish_states(self) -> None:
        with self._lock:
            states, self._states = self._states, {}
        for camera, payload in states.items():
            if self.mqtt is None:
                continue
            problem = self.mqtt.publish(topic(camera, "state"), payload, retain=True)
            if problem:
                log.info("camera %s: state not published: %s", camera, problem)

    def _post(self, url: str, kind: str, key: str, payload: dict[str, Any]) -> str | None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: f"stream.{kind}",
            DELIVERY_HEADER: key,
        }
        if self.secret:
            headers.update(sign(self.secret, int(time.time()), body))
        try:
            resp = httpx.post(url, content=body, headers=headers, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            return f"webhook failed: {exc.__class__.__name__}"
        return None if resp.status_code < 300 else f"webhook answered HTTP {resp.status_code}"
