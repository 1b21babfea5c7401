"""A watcher's closed, non-static segments: described, then matched against the alert rules (run in the
``Watcher``'s describer pool; the watcher owns the state used here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.errors import FramescribeError
from worker.live.common import iso
from worker.service import plan as planning
from worker.service.segment import Sampled, describe_and_store

if TYPE_CHECKING:
    from worker.live.watcher import Watcher


def describe(w: Watcher, sampled: Sampled, start_utc: int, end_utc: int) -> None:
    store = w.ports.store
    index = sampled.plan.index
    if not store.claim_segment(w.job_id, index):
        return
    if len(sampled.frames) < w.settings.sampling.min_frames:
        store.fail_segment(
            w.job_id,
            index,
            f"only {len(sampled.frames)} frame(s): the stream dropped inside this segment; not described",
        )
        w.counters.failed += 1
        return
    problem = w.budget.reserve()
    if problem:
        store.fail_segment(w.job_id, index, problem)
        w.counters.failed += 1
        return
    try:
        job = store.get_job(w.job_id)
        desc = describe_and_store(w.ports, job, w.ports.describer_for(planning.options_of(job)), sampled, w.previous)
    except FramescribeError as exc:
        store.fail_segment(w.job_id, index, exc.message)
        w.counters.failed += 1
        return
    w.previous = desc.text
    w.counters.described += 1
    for rule in w.rules:
        if rule.matches(desc.text, desc.structured):
            alert(w, index, rule.source, desc.text, desc.structured, sampled, start_utc, end_utc)
            break
    w.notifier.kick()


def alert(
    w: Watcher,
    index: int,
    rule: str,
    text: str,
    structured: dict[str, Any],
    sampled: Sampled,
    start_utc: int,
    end_utc: int,
) -> None:
    key = f"{w.job_id}:{index}:alert"
    middle = sampled.frames[len(sampled.frames) // 2] if sampled.frames else None
    payload = {
        "type": "alert",
        "dedup_key": key,
        "camera": w.name,
        "rule": rule,
        "job_id": w.job_id,
        "segment_index": index,
        "start_utc": iso(start_utc),
        "end_utc": iso(end_utc),
        "start_ms": sampled.plan.start_ms,
        "end_ms": sampled.plan.end_ms,
        "description": text,
        "structured": structured,
        "thumbnail": middle.path if middle else None,  # on the worker's disk
        # served by the API from any machine (the review copy in the store when not on its disk)
        "thumbnail_url": f"/v1/jobs/{w.job_id}/frames/{index}/{middle.n}.jpg" if middle else None,
    }
    if w.live.enqueue(key, w.name, "alert", payload, w.opts.mqtt, w.opts.webhook_url):
        w.counters.alerts += 1
