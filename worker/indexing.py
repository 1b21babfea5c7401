"""Embedding segments: when a segment is stored (a worker step) and for old jobs (``framescribe reindex``).

Idempotent: a segment whose embedded text and embedder are unchanged keeps its vector (``text_hash``).
Embedding never fails a segment: an error is logged and ``reindex`` fills the gap later.
"""

from __future__ import annotations

import functools
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from worker.adapters.stores.sql import SqlResultStore
from worker.adapters.stores.vectors import Filters, SegmentInfo, VectorStore
from worker.config import Settings
from worker.core.search import EMBED_BATCH
from worker.embedding import Embedder, segment_text, text_hash
from worker.errors import FramescribeError

log = logging.getLogger(__name__)
BATCH = 64


def embedder_for(settings: Settings) -> Embedder | None:
    """The configured embedder, or None when there is none (then search is text + filters only)."""
    kind = settings.ask.embedder
    if kind == "none":
        return None
    if kind == "dashscope" or (kind == "auto" and settings.dashscope_api_key):
        from worker.adapters.embedders.dashscope import build_embedder

        return build_embedder(settings)
    try:
        return _local()
    except FramescribeError as exc:
        if kind == "local":
            raise
        log.info("no offline embedder (%s): search is text and filters only", exc.message)
        return None


@functools.cache
def _local() -> Embedder:
    from worker.adapters.embedders.minilm import shared

    return shared()


def embed_infos(vs: VectorStore, embedder: Embedder, infos: list[SegmentInfo], *, force: bool = False) -> int:
    """Embed the segments whose vector is missing or stale; returns how many were (re)embedded."""
    texts = {i.segment_id: segment_text(i.description, i.structured) for i in infos}
    want = {sid: text_hash(t, embedder.name) for sid, t in texts.items()}
    have = {} if force else vs.hashes(list(want), embedder.name)
    todo = [i for i in infos if have.get(i.segment_id) != want[i.segment_id]]
    if not todo:
        return 0
    vectors, tokens = embedder.embed([texts[i.segment_id] for i in todo])
    share = tokens // len(todo)
    vs.put(embedder.name, [(i.segment_id, i.job_id, want[i.segment_id], vectors[n], share) for n, i in enumerate(todo)])
    return len(todo)


def reindex(
    store: SqlResultStore,
    embedder: Embedder,
    *,
    job: str | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Back-fill vectors for every described segment (of ``job``): (segments seen, segments embedded)."""
    vs = VectorStore(store)
    seen = done = 0
    after = 0
    while True:
        page = vs.segments(Filters(job=job), after_id=after, limit=BATCH)
        if not page:
            break
        done += embed_infos(vs, embedder, page, force=force)
        seen += len(page)
        after = page[-1].segment_id
        if progress is not None:
            progress(seen, done)
    return seen, done


def index_segments(
    store: SqlResultStore, settings: Settings, job_id: str, indexes: Sequence[int], *, background: bool = False
) -> None:
    """The worker step after segments are stored: embed them, several texts a request (never raises).

    ``background`` (Celery segment tasks): hand them to this process's indexing thread, so loading the model
    or a slow embedding call never counts against the segment task's time limit; that thread embeds what has
    queued up meanwhile together (up to ``EMBED_BATCH`` segments). A vector lost with the process is filled in
    by ``framescribe reindex``."""
    if not indexes:
        return
    if background:
        _start_thread()
        try:
            _QUEUE.put_nowait((store, settings, job_id, tuple(indexes)))
        except queue.Full:
            log.warning("job %s segments %s: indexing queue full; `framescribe reindex` fills it in", job_id, indexes)
        return
    try:
        embedder = embedder_for(settings)
        if embedder is None:
            return
        vs = VectorStore(store)
        found = vs.by_keys([(job_id, index) for index in indexes])
        infos = [info for _, info in sorted(found.items()) if info.state in ("done", "static")]
        if infos:
            embed_infos(vs, embedder, infos)
    except Exception as exc:  # embedding is an index: a failure must not fail the segment
        log.warning("job %s segments %s: not embedded (%s); `framescribe reindex` fills it in", job_id, indexes, exc)


_QUEUE: queue.Queue[tuple[Any, Any, str, tuple[int, ...]]] = queue.Queue(maxsize=10_000)
_LOCK = threading.Lock()
_THREAD: list[threading.Thread] = []


def _start_thread() -> None:
    with _LOCK:
        if _THREAD and _THREAD[0].is_alive():
            return
        thread = threading.Thread(target=_drain, name="framescribe-index", daemon=True)
        thread.start()
        _THREAD[:] = [thread]


def _drain() -> None:
    while True:
        items = [_QUEUE.get()]  # then whatever else is waiting, up to a batch
        while len(items) < EMBED_BATCH:
            try:
                items.append(_QUEUE.get_nowait())
            except queue.Empty:
                break
        try:
            for _, group in itertools.groupby(items, key=lambda item: (id(item[0]), id(item[1]), item[2])):
                batch = list(group)
                store, settings, job_id, _ = batch[0]
                index_segments(store, settings, job_id, [i for item in batch for i in item[3]])
        finally:
            for _ in items:
                _QUEUE.task_done()


def wait_indexed(timeout_s: float = 60.0) -> bool:
    """Tests and shutdown: wait until the background queue is empty (True) or ``timeout_s`` passes."""
    import time

    deadline = time.monotonic() + timeout_s
    while _QUEUE.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _QUEUE.unfinished_tasks
