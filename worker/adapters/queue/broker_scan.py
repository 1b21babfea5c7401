"""What the broker still holds for a queue: kombu's Redis lists (one per priority step) and its
``unacked`` hash (delivered, not yet acknowledged). The recovery loop re-sends work only when no
message for it is waiting, so a plan or segment that merely waits in a long queue is never sent twice.

Layout read here (kombu ``transport/redis.py``): a queue ``q`` is the lists ``q`` (priority 0, consumed
first) and ``q\\x06\\x16{3,6,9}``; a message is JSON with ``headers`` (``task``, ``id``, ``eta``) and a
base64 ``body`` ``[args, kwargs, embed]``; ``unacked`` maps a delivery tag to ``[message, exchange,
routing_key]`` and ``unacked_index`` scores the tag with its delivery time."""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
URGENT = 0  # retried and re-queued work: the list workers consume first
NORMAL = 6  # new work
UNACKED, UNACKED_INDEX = "unacked", "unacked_index"
SCAN_LIMIT = 20_000  # messages read per list; a longer list is assumed to hold everything (nothing re-sent)


def list_keys(queue: str) -> list[str]:
    return [queue if p == 0 else f"{queue}{SEP}{p}" for p in PRIORITY_STEPS]


Key = tuple[str, str, int]  # (task name, job id, segment index or -1)


@dataclass
class Held:
    """Messages found for a queue, by ``(task, job_id, index)``."""

    waiting: dict[Key, list[tuple[str, bytes]]] = field(default_factory=dict)  # key -> [(list, raw message)]
    in_flight: set[Key] = field(default_factory=set)  # delivered recently or a retry waiting for its ETA
    stale_tags: dict[Key, list[str]] = field(default_factory=dict)  # delivered long ago (a dead worker's)
    complete: bool = True  # False: a list was too long to read whole

    def holds(self, key: Key) -> bool:
        return not self.complete or key in self.waiting or key in self.in_flight


def _key(msg: dict[str, Any]) -> Key | None:
    headers = msg.get("headers") or {}
    task = str(headers.get("task") or "")
    try:
        body = msg.get("body") or ""
        if (msg.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    if not args:
        return None
    return (task, str(args[0]), int(args[1]) if len(args) > 1 and isinstance(args[1], int) else -1)


def _eta_ahead(msg: dict[str, Any], now: float) -> bool:
    eta = (msg.get("headers") or {}).get("eta")
    if not eta:
        return False
    try:
        return datetime.fromisoformat(str(eta)).timestamp() > now
    except ValueError:
        return False


def scan(client: Any, queue: str, fresh_s: float) -> Held:
    """Read the queue's lists and the unacked messages routed to it. A delivery younger than ``fresh_s``
    (its task is starting) or a retry whose ETA is ahead counts as in flight; older ones as stale."""
    held = Held()
    for name in list_keys(queue):
        raws = client.lrange(name, 0, SCAN_LIMIT - 1)
        if len(raws) >= SCAN_LIMIT:
            held.complete = False
        for raw in raws:
            try:
                key = _key(json.loads(raw))
            except ValueError:
                continue
            if key is not None:
                held.waiting.setdefault(key, []).append((name, raw))
    now = time.time()
    scores = dict(client.zrange(UNACKED_INDEX, 0, -1, withscores=True))
    for tag, raw in client.hscan_iter(UNACKED, count=500):
        try:
            msg, _exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if routing_key != queue or (key := _key(msg)) is None:
            continue
        delivered = float(scores.get(tag, 0.0))
        if _eta_ahead(msg, now) or delivered > now - fresh_s:
            held.in_flight.add(key)
        else:
            held.stale_tags.setdefault(key, []).append(tag.decode() if isinstance(tag, bytes) else str(tag))
    return held


def drop_stale(client: Any, tags: list[str]) -> None:
    """Forget a dead worker's unacked deliveries of work that was just re-sent (no second copy comes back
    when the visibility timeout passes)."""
    if tags:
        client.pipeline().hdel(UNACKED, *tags).zrem(UNACKED_INDEX, *tags).execute()


def promote(client: Any, entries: list[tuple[str, bytes]]) -> bool:
    """Take a message waiting behind new work out of its lower-priority list, for the caller to re-send it
    urgent. False when it already waits in the urgent list, or a worker took it first (it is running)."""
    if any(SEP not in name for name, _ in entries):
        return False
    return sum(int(client.lrem(name, 1, raw)) for name, raw in entries) > 0
