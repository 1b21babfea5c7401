"""One camera, watched: connect, cut rolling wall-clock segments, describe them as they close, alert, digest.

Runs until ``stop()``, its deadline (then up to the next segment boundary), the stream is paused or
deleted, or ``keep_going`` says no (a lost lease). Drops and stalls reconnect with exponential backoff;
the time without frames is recorded as a gap (never covered by a segment) and the status shows
``reconnecting`` with the reason. A restart
resumes the same job after its last stored segment, so nothing is stored or alerted twice.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from typing import cast

import cv2

from worker import spend
from worker.adapters.frames.local import segment_dir
from worker.adapters.stores.sql import SqlResultStore
from worker.core.models import SegmentPlan, VideoInfo
from worker.errors import FramescribeError, StoreError
from worker.live import digest as digests
from worker.live.budget import CallBudget
from worker.live.common import Counters, Kept, iso, utc_ms, write_frame
from worker.live.cutter import Cutter, LiveFrame, WallClock, Window, motion_score
from worker.live.describing import describe
from worker.live.notify import Mqtt, Notifier
from worker.live.options import WatchOptions
from worker.live.reader import StreamDropped, frames
from worker.live.rules import parse_rule
from worker.live.schema import LiveSegmentRow
from worker.live.source import LiveSource
from worker.live.store import LiveStore
from worker.service import plan as planning
from worker.service.context import Ports
from worker.service.segment import Sampled

log = logging.getLogger(__name__)
MAX_BACKLOG = 16  # closed segments waiting for the describer before new ones are refused


class Watcher:
    def __init__(
        self,
        ports: Ports,
        name: str,
        source: LiveSource,
        opts: WatchOptions,
        *,
        stream_id: str | None = None,
        owner: str | None = None,
        keep_going: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.ports = ports
        self.settings = ports.settings
        self.live_cfg = ports.settings.live
        self.name = name
        self.source = source
        self.opts = opts
        self.keep_going = keep_going
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}"
        self.live = LiveStore(cast(SqlResultStore, ports.store))  # the live tables live beside the job tables
        self.stream = (
            self.live.get(stream_id) if stream_id else self.live.upsert_stream(name, source.url, opts.model_dump())
        )
        self.rules = [parse_rule(r) for r in opts.alert]
        self.counters = Counters()
        self._stop = threading.Event()
        self._stop_reason = "stopped"
        self._backlog: list[Future[None]] = []
        mqtt = Mqtt(self.live_cfg.mqtt_url) if (opts.mqtt and self.live_cfg.mqtt_url) else None
        secret = self.settings.scheduler.webhook_secret
        self.notifier = Notifier(self.live, mqtt, secret.get_secret_value() if secret else None).start(name)
        self.budget = CallBudget(
            self.settings.broker_url, self.live_cfg.max_calls_per_hour, self.live_cfg.max_calls_per_day
        )
        self.sample_ms = max(1, round(1000 / opts.sample_fps))
        self.job_id, self.origin_ms = self._job()
        # frames are encoded as a job's are, at its frame budget: the size its estimate and requests assume
        self.frame_budget = spend.frame_budget(planning.options_of(ports.store.get_job(self.job_id)), self.settings)
        self.next_index, self.resume_end = self.live.resume_point(self.job_id)
        self.info: VideoInfo | None = None
        self.previous: str | None = None

    # -- set-up ----------------------------------------------------------------------------------
    def _job(self) -> tuple[str, int]:
        """The stream's long-lived job (created once, reopened after a stop)."""
        store = self.ports.store
        if self.stream.job_id:
            try:
                job = store.get_job(self.stream.job_id)
                self.live.reopen_job(job.id)
                return job.id, int(job.created_at.timestamp() * 1000)
            except FramescribeError:
                pass
        job, _ = store.create_job(self.source.redacted, f"camera:{self.name}", self.opts.job_options(), state="running")
        self.live.set_job(self.stream.id, job.id)
        return job.id, int(job.created_at.timestamp() * 1000)

    def stop(self, reason: str = "stopped") -> None:
        self._stop_reason = reason
        self._stop.set()

    def _should_stop(self, deadline: float | None) -> bool:
        if self._stop.is_set():
            return True
        if deadline is not None and time.monotonic() >= deadline:
            self.stop("duration reached")
            return True
        why = self.keep_going()
        if why:
            self.stop(why)
            return True
        return False

    def _status(self, status: str, reason: str | None = None) -> None:
        self.live.set_status(self.stream.id, status, reason, owner=self.owner)
        self.notifier.state(
            self.name,
            {
                "camera": self.name,
                "status": status,
                "reason": reason,
                "at": iso(utc_ms()),
                "job_id": self.job_id,
                "segments": self.counters.segments,
            },
        )

    # -- the loop --------------------------------------------------------------------------------
    def run(self, for_seconds: float | None = None) -> Counters:
        deadline = None if for_seconds is None else time.monotonic() + for_seconds
        cfg = self.live_cfg
        clock = WallClock()
        cutter = Cutter(
            round(self.opts.segment_seconds * 1000),
            self.sample_ms,
            motion=self.opts.segmenter == "motion",
            threshold=cfg.motion_threshold,
            pre_event_ms=round(cfg.pre_event_s * 1000),
            min_frames=self.settings.sampling.min_frames,
        )
        cutter.skip_before(self.resume_end)
        gap_from: int | None = self.resume_end or None
        gap_reason = "watcher restarted"
        dropped_at: float | None = None
        backoff = cfg.backoff_initial_s
        last_check = 0.0
        draining, drain_until = False, 0.0  # past the deadline: finish the open window at its boundary
        with ThreadPoolExecutor(1, thread_name_prefix=f"live-{self.name}") as pool:
            self.pool = pool
            while not self._should_stop(deadline):
                self._status(
                    "connecting" if dropped_at is None else "reconnecting", None if dropped_at is None else gap_reason
                )
                last_utc: int | None = None
                prev_small = None
                try:
                    for d in frames(
                        self.source,
                        open_timeout_s=cfg.open_timeout_s,
                        read_timeout_s=cfg.read_timeout_s,
                        utc_now=utc_ms,
                    ):
                        utc = clock.utc_ms(d.pts_ms, d.received_utc_ms)
                        if utc <= self.resume_end:
                            continue
                        if last_utc is None:
                            if dropped_at is not None:
                                self.counters.reconnect_s.append(time.monotonic() - dropped_at)
                                dropped_at = None
                            if gap_from is not None and utc - gap_from > 2 * self.sample_ms:
                                self._gap(gap_from, utc, gap_reason)
                            gap_from = None
                            backoff = cfg.backoff_initial_s
                            self._status("live")
                            self.info = VideoInfo(
                                0, float(self.opts.sample_fps), 0, d.frame.width, d.frame.height, "live"
                            )
                        last_utc = utc
                        if cutter.wants(utc):
                            image = d.image()
                            small = cv2.GaussianBlur(
                                cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (64, 48)), (3, 3), 0
                            )
                            moved = motion_score(prev_small, small)
                            prev_small = small
                            kept = Kept(
                                *self.ports.frames.encode(image, self.frame_budget), self.ports.frames.thumb(image)
                            )
                            for window in cutter.push(LiveFrame(utc, d.pts_ms, kept, moved)):
                                self._closed(window)
                                if draining:  # the duration ended: stop at this wall-clock boundary
                                    self.stop("duration reached")
                        now = time.monotonic()
                        if deadline is not None and now >= deadline and not draining:
                            draining, drain_until = True, now + self.opts.segment_seconds + 2
                        if draining and now >= drain_until:
                            self.stop("duration reached")
                        if now - last_check >= 1.0:
                            last_check = now
                            if self.live.desired(self.stream.id) != "active":
                                self.stop(f"stream {self.live.desired(self.stream.id)}")
                            self.notifier.kick()
                        if self._should_stop(None):
                            break
                    else:  # pragma: no cover - frames() always raises at its end
                        raise StreamDropped("the stream ended")
                except StreamDropped as exc:
                    gap_reason = exc.reason
                    dropped_at = dropped_at or time.monotonic()
                    self.counters.reconnects += 1
                finally:
                    rest = cutter.discard() if draining and self._stop.is_set() else cutter.flush()
                    if rest is not None:
                        self._closed(rest)
                        last_utc = max(last_utc or 0, rest.end_utc_ms - 1)  # the gap starts where it ends
                if last_utc is not None:
                    gap_from = last_utc + 1
                elif gap_from is None:
                    gap_from = utc_ms()
                if self._should_stop(deadline):
                    break
                log.info("camera %s: %s; reconnecting in %.1fs", self.name, gap_reason, backoff)
                self._status("reconnecting", gap_reason)
                self.notifier.kick()
                self._stop.wait(backoff if deadline is None else max(0.0, min(backoff, deadline - time.monotonic())))
                backoff = min(cfg.backoff_max_s, backoff * 2)
            if dropped_at is not None and gap_from is not None:  # stopped while the camera was away
                self._gap(gap_from, utc_ms(), f"{gap_reason} (stopped while reconnecting)")
            for fut in self._backlog:
                fut.result()
            if self.opts.digest_seconds:
                pool.submit(digests.due, self, utc_ms(), final=True).result()
        self._status("stopped", self._stop_reason)
        self.notifier.close()
        return self.counters

    def _gap(self, start: int, end: int, reason: str) -> None:
        if self.live.add_gap(self.job_id, start, end, reason):
            self.counters.gaps += 1

    # -- a closed window -------------------------------------------------------------------------
    def _closed(self, w: Window) -> None:
        index = self.next_index
        shown = w.all_frames
        start_utc = w.described_start_ms if not w.static else w.start_utc_ms
        rel = [max(0, f.utc_ms - self.origin_ms) for f in shown]
        fps = Fraction(self.opts.sample_fps).limit_denominator(1000)
        plan = SegmentPlan(
            index,
            max(0, start_utc - self.origin_ms),
            w.end_utc_ms - self.origin_ms,
            fps,
            tuple(rel),
            "static" if w.static else "describe",
        )
        live_row = LiveSegmentRow(
            job_id=self.job_id,
            segment_index=index,
            utc_start_ms=start_utc,
            utc_end_ms=w.end_utc_ms,
            pts_start_ms=shown[0].pts_ms,
            pts_end_ms=shown[-1].pts_ms,
            connection=self.counters.reconnects,
            static=w.static,
            pre_event_ms=w.start_utc_ms - start_utc,
            complete=w.complete,
        )
        if not self.live.add_segment(live_row):
            return  # stored already (a resumed watcher met the same start): never twice
        self.next_index += 1
        self.resume_end = w.end_utc_ms
        info = self.info or VideoInfo(0, float(fps), 0, 0, 0, "live")
        self.info = VideoInfo(
            w.end_utc_ms - self.origin_ms, info.fps, info.frame_count + len(shown), info.width, info.height, "live"
        )
        self.ports.store.plan_job(self.job_id, self.info, [plan])
        self.counters.segments += 1
        if w.static:
            planning.store_static(self.ports.store, self.job_id, [plan])
            self.counters.static += 1
        else:
            self._backlog = [f for f in self._backlog if not f.done()]
            if len(self._backlog) >= MAX_BACKLOG:
                self.ports.store.fail_segment(
                    self.job_id, index, "the describer fell behind the camera; segment skipped"
                )
                self.counters.failed += 1
            else:
                folder = segment_dir(self.settings.data_dir, self.job_id, index)
                try:
                    refs = [write_frame(folder, n, t, f.image) for n, (t, f) in enumerate(zip(rel, shown, strict=True))]
                except StoreError as exc:  # a full disk fails this segment, not the camera
                    self.ports.store.fail_segment(self.job_id, index, exc.message)
                    self.counters.failed += 1
                else:
                    thumbs = [f.image.thumb for f in shown]
                    sampled = Sampled(plan, refs, thumbs, [self.ports.analyser.phash(t) for t in thumbs])
                    self._backlog.append(self.pool.submit(describe, self, sampled, start_utc, w.end_utc_ms))
        if self.opts.digest_seconds:
            self._backlog.append(self.pool.submit(digests.due, self, w.end_utc_ms))
