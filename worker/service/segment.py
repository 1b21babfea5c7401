"""One segment: sample (decode + write frames) -> describe (or reuse) -> store. A Celery task body.

Idempotent: a stored segment is left alone; a redelivery rewrites the segment's frame folder.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from worker import spend
from worker.core.models import Description, FrameRef, Job, SegmentPlan
from worker.core.ports import Describer, DescribeRequest, ResultStore, VideoReader
from worker.core.presets import preset_for
from worker.core.prompts import DEFAULT_PRESETS, render, segment_variables
from worker.errors import BudgetExceeded, DecodeError, DescriberAuthError, FramescribeError
from worker.options import JobOptions
from worker.service import reuse
from worker.service.caps import Ticket
from worker.service.context import Ports
from worker.service.options import resolve
from worker.service.plan import options_of, plan_of_row, reserve_call


@dataclass
class Sampled:
    plan: SegmentPlan
    frames: list[FrameRef]
    thumbs: list[Any]
    hashes: list[int] = field(default_factory=list)  # pHash of every sampled frame (before dedup)
    reviews: dict[str, bytes] = field(default_factory=dict)  # review copies made while sampling, by frame path


def sample_segment(
    ports: Ports, reader: VideoReader, plan: SegmentPlan, folder: Path, opts: JobOptions | None = None
) -> Sampled:
    """Decode the plan's frames and write them (the folder is emptied first: a redelivery rewrites
    it) at the size the job's estimate assumes. Keeps only small analysis copies in memory. Frames the
    analysis pass handed over (complete, for this plan and budget) are taken instead of decoded."""
    settings, writer = ports.settings, ports.frames
    fb = spend.frame_budget(opts or JobOptions(), settings)
    handed = ports.handover.take(folder, plan, fb, reader) if ports.handover is not None else None
    if handed is None:
        writer.clear(folder)
    frames, thumbs = handed or ([], [])
    reviews: dict[str, bytes] = {}  # the store's copies, from the decoded picture (handed-over frames: from files)
    try:
        if handed is None:
            for n, (t_ms, image) in enumerate(reader.frames(plan.targets_ms)):
                ref = writer.write(folder, n, t_ms, image, fb)
                frames.append(ref)
                thumbs.append(writer.thumb(image))
                if ports.blobs is not None and (review := writer.review(image, ref)) is not None:
                    reviews[ref.path] = review
        if len(frames) < min(settings.sampling.min_frames, plan.frame_count):
            raise DecodeError(
                f"only {len(frames)} frame(s) could be decoded between {plan.start_ms / 1000:.2f}s and "
                f"{plan.end_ms / 1000:.2f}s",
                at_ms=plan.start_ms,
            )
    except FramescribeError:
        writer.clear(folder)  # a failed segment leaves no frames behind (and a full disk gets no fuller)
        raise
    hashes = [ports.analyser.phash(t) for t in thumbs]
    plan, frames, thumbs = reuse.dedup(plan, frames, thumbs, hashes, settings)
    return Sampled(plan, frames, thumbs, hashes, reviews)


def describe_and_store(
    ports: Ports,
    job: Job,
    describer: Describer,
    sampled: Sampled,
    previous: str | None = None,
    ticket: Ticket | None = None,
    copies_kept: bool = False,
) -> Description:
    """``ticket``: the segment's reservation under the job's caps (``service/caps.py``): its guard is asked
    before every request the describer sends; the store write releases it. ``copies_kept``: the caller
    already stored the review copies (the inline runner, while the segment waited for a call slot)."""
    opts = options_of(job)
    resolved = resolve(opts, ports.settings)
    preset_name = resolved.preset
    prompts = ports.prompts.get(preset_name) or ports.prompts.get("describe") or DEFAULT_PRESETS["describe"]
    p = sampled.plan
    variables = segment_variables(job.source_name, p.start_ms, p.end_ms, float(p.fps), previous)
    template = resolved.prompt
    if template and prompts.json_output:
        template = f"{template}\n{preset_for(preset_name).schema_hint}"
    request = DescribeRequest(
        job_id=job.id,
        source_name=job.source_name,
        plan=p,
        frames=sampled.frames,
        fps=float(p.fps),
        prompt=render(template or prompts.segment, variables),
        system_prompt=prompts.system,
        preset=preset_name,
        previous=previous,
        thumbs=sampled.thumbs,
        guard=ticket.guard if ticket else None,
    )
    # The cache key leaves $previous out: whether the previous call had finished is timing, not content.
    key_prompt = render(template or prompts.segment, {**variables, "previous": ""})
    key = reuse.cache_key(request, key_prompt, describer, opts, ports.settings) if ports.cache else None
    hit = reuse.lookup(ports.cache, ports.store, job.id, p.index, key, sampled.hashes, ports.settings)
    if hit is not None:  # an identical call was cached, or a near-identical segment was described
        desc, source = hit
        if not copies_kept:
            keep_review_copies(ports, job.id, sampled)
        with _storing(ticket):
            ports.store.save_segment(job.id, p.index, desc, sampled.frames, reused_from=source)
        if source is None:
            reuse.remember(ports.cache, job.id, p.index, None, desc, sampled.hashes, ports.settings)
        return desc
    started = time.monotonic()
    desc = describer.describe(request)
    if desc.usage.latency_ms == 0:
        latency = round((time.monotonic() - started) * 1000)
        desc = replace(desc, usage=replace(desc.usage, latency_ms=latency, attempts=max(1, desc.usage.attempts)))
    if not copies_kept:
        keep_review_copies(ports, job.id, sampled)
    with _storing(ticket):
        ports.store.save_segment(job.id, p.index, desc, sampled.frames)
    reuse.remember(ports.cache, job.id, p.index, key, desc, sampled.hashes, ports.settings)
    return desc


def keep_review_copies(ports: Ports, job_id: str, sampled: Sampled) -> None:
    """Review-size copies of the frames into the store before the row is done, so the review page,
    search thumbnails and exports work from any machine (a store error fails the segment)."""
    if ports.blobs is not None:
        ports.blobs.put(job_id, sampled.plan.index, sampled.frames, sampled.reviews)


def _storing(ticket: Ticket | None) -> AbstractContextManager[None]:
    return ticket.storing() if ticket is not None else nullcontext()


def fail(
    ports: Ports, job_id: str, index: int, exc: FramescribeError, start_ms: int, ticket: Ticket | None = None
) -> None:
    # decode errors name their time themselves; a describer error carries what its requests cost
    with _storing(ticket):
        ports.store.fail_segment(job_id, index, exc.message, getattr(exc, "spent", None))
    ports.on_event("segment_failed", {"job_id": job_id, "index": index, "error": exc.message})


def run_segment(ports: Ports, job_id: str, index: int, reader: VideoReader | None = None) -> str:
    """Process one segment (a Celery task body). Idempotent: a stored segment is left alone.

    Returns the segment's state; DescriberAuthError propagates (it fails the whole job)."""
    store = ports.store
    if not store.claim_segment(job_id, index):
        return store.segment_state(job_id, index) or "missing"
    job = store.get_job(job_id)
    plan_ = plan_of_row(store, job_id, index)
    own = reader is None
    try:
        rdr = reader or ports.open_source(job)
    except FramescribeError as exc:
        fail(ports, job_id, index, exc, plan_.start_ms)
        return "failed"
    ticket = None
    try:
        ticket = reserve_call(ports, job, plan_.frame_count, index)  # BudgetExceeded: the caps are spent, no call
        sampled = sample_segment(ports, rdr, plan_, ports.frames.folder(job_id, index), options_of(job))
        previous = stored_description(store, job_id, index - 1)
        desc = describe_and_store(ports, job, ports.describer_for(options_of(job)), sampled, previous, ticket)
    except BudgetExceeded as exc:  # a cap is reached: this segment fails with the reason, those not started are
        fail(ports, job_id, index, exc, plan_.start_ms)  # cancelled (as the inline runner does); calls other
        store.cancel_pending(job_id, exc.message)  # workers have in flight keep their results
        return "failed"
    except DescriberAuthError as exc:
        fail(ports, job_id, index, exc, plan_.start_ms)
        raise
    except FramescribeError as exc:  # input, describer (or building it), store
        fail(ports, job_id, index, exc, plan_.start_ms)
        return "failed"
    finally:
        if ticket is not None:
            ticket.release()  # the segment's usage is stored (saved or failed)
        if own:
            rdr.close()
    ports.index(job_id, [index], background=True)  # vectors for meaning-based search
    ports.on_event("segment_done", {"job_id": job_id, "index": index, "text": desc.text})
    return "done"


def stored_description(store: ResultStore, job_id: str, index: int) -> str | None:
    """The description of a done segment (the $previous context of the next one), else None."""
    if index < 0:
        return None
    try:
        row = store.segment(job_id, index)
    except FramescribeError:
        return None
    return row.description if row.state == "done" else None
