"""One ``PyAVReader.frames`` call: the decoding state that turns demuxed packets into the frames its
targets need (interval buffering, keyframe decisions, recovery past damaged stretches)."""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.core.models import VideoInfo
from worker.core.readplan import ReadPlan, Strategy
from worker.errors import DecodeError

if TYPE_CHECKING:
    from worker.adapters.video.pyav import PyAVReader

log = logging.getLogger("worker.adapters.video.pyav")
GOP_BUFFER_BYTES = 64 * 1024**2  # a longer keyframe interval is decoded as it streams in
MAX_RECOVERIES = 8  # seeks past damaged stretches per frames() call before giving up


class Run:
    """One ``frames`` call: turns demuxed packets into the frames its targets need.

    Targets are read by index (a lazy sequence of any length works); only the decisions between the first
    unserved and the first undecided target are held."""

    def __init__(self, reader: PyAVReader, targets: Sequence[int], plan: ReadPlan, info: VideoInfo) -> None:
        self.r = reader
        self.targets = targets
        self.n = len(targets)
        self.last_target = targets[-1]
        self.plan = plan
        self.info = info
        self.tol = plan.tolerance_ms if plan.strategy is Strategy.KEYFRAMES else 0
        self.key_mode = plan.strategy is Strategy.KEYFRAMES  # a tolerance, or keyframes that are exact frames
        self.half = reader._frame_ms / 2  # a keyframe in [t - 1, t - 1 + half) is the target's exact frame
        self.lazy = plan.strategy is not Strategy.SEQUENTIAL
        self.head = 0  # first target not served
        self.decided = 0 if self.key_mode else self.n  # first target not decided
        self.keys: deque[float | None] = deque()  # key mode: the keyframe chosen for head..decided-1 (None: exact)
        self.missing = False  # the head target lies past the last frame
        self.window = 2.5 * reader._frame_ms  # a droppable frame this close after a target may be its frame
        self.last_yield = -math.inf
        self.recoveries = 0
        self.sought = -1  # the target the last seek was made for

    def _key_of(self, i: int) -> float | None:
        return self.keys[i - self.head] if self.key_mode else None

    def _advance(self) -> None:
        self.head += 1
        if self.key_mode and self.keys:
            self.keys.popleft()

    # -- feeding the decoder ------------------------------------------------------------------
    def _needed(self, ms: float | None) -> bool:
        if ms is None or ms >= self.last_target - 1:
            return True  # the tail: a later call may want these frames
        i = bisect.bisect_right(self.targets, ms + 1)
        return i > 0 and self.targets[i - 1] - 1 <= ms < self.targets[i - 1] - 1 + self.window

    def _feed(self, pkt: Any) -> None:
        r = self.r
        if r._droppable(pkt):
            ms = r._pkt_ms(pkt)
            if not self._needed(ms):
                r.passed += 1
                if ms is not None:
                    r._consumed_ms = max(r._consumed_ms, ms)
                return
        r._decode(pkt)

    def _feed_key(self) -> None:
        r = self.r
        if not r._gop_key_fed and r._gop_key is not None:
            r._decode(r._gop_key)
            r._gop_key_fed = True

    def _feed_gop(self) -> None:
        """Decode the interval from its keyframe, then every later packet of it as it arrives."""
        r = self.r
        self._feed_key()
        gop, r._gop, r._gop_bytes = r._gop, [], 0
        for pkt in gop:
            self._feed(pkt)
        r._active = True

    def _open_gop(self, pkt: Any, ms: float | None) -> None:
        r = self.r
        if r._gop or (r._gop_key is not None and not r._gop_key_fed):
            r._consumed_ms = max(r._consumed_ms, r._gop_max_ms)  # an interval nobody needed: never decoded
            r.passed += 1
        r._gop, r._gop_bytes = [], 0
        r._gop_key, r._gop_key_ms, r._gop_key_fed = pkt, ms, False
        r._gop_max_ms = -math.inf if ms is None else ms
        r._active = False
        if not self.lazy:
            self._feed_gop()

    # -- keyframe decisions -------------------------------------------------------------------
    def _decide(self, key_ms: float | None) -> bool:
        """Decide targets now that the keyframe after the current interval is known (None: the stream
        ended). Returns True when that next keyframe itself was chosen."""
        r = self.r
        p = r._gop_key_ms
        chose_next = False
        while self.decided < self.n:
            t = self.targets[self.decided]
            if key_ms is not None and key_ms < t - 1:
                break  # this keyframe comes before the target: wait for the one after it
            options: list[tuple[float, int, float]] = []
            if p is not None and (abs(t - p) <= self.tol or self._exact(t, p)):
                options.append((abs(t - p), 1, p))
            if key_ms is not None and (key_ms - t <= self.tol or self._exact(t, key_ms) or r._gop_max_ms < t - 1):
                options.append((key_ms - t, 0, key_ms))  # within tolerance, or the exact frame itself
            choice: float | None = None
            if options:
                choice = min(options)[2]
                if choice == key_ms:
                    chose_next = True
                else:
                    self._feed_key()
            elif r._gop_max_ms >= t - 1:
                if not r._active:
                    self._feed_gop()  # no keyframe close enough: the exact frame, from this interval
            else:
                if self.decided == self.head:
                    self.missing = True  # past the last frame
                break
            self.keys.append(choice)
            self.decided += 1
        return chose_next

    def _exact(self, t: int, key_ms: float) -> bool:
        return t - 1 <= key_ms < t - 1 + self.half

    def _decide_greedy(self, upto_ms: float) -> None:
        """An interval too long to buffer: targets it has reached take its keyframe or their exact frame."""
        r = self.r
        p = r._gop_key_ms
        while self.decided < self.n and self.targets[self.decided] - 1 <= upto_ms:
            t = self.targets[self.decided]
            self.keys.append(p if p is not None and (abs(t - p) <= self.tol or self._exact(t, p)) else None)
            self.decided += 1

    # -- the loop -----------------------------------------------------------------------------
    def _hand_out(self) -> Iterator[tuple[int, np.ndarray]]:
        r = self.r
        while r._ready and self.head < self.n:
            t = self.targets[self.head]
            frame = r._ready[0]
            q = r._frame_ms_of(frame)
            decided = self.head < self.decided
            if not decided and q >= t - self.tol - 1:
                return  # may serve this target once it is decided
            key = self._key_of(self.head) if decided else None
            early = q < key - 0.5 if key is not None else q + 1 < t
            r._ready.popleft()
            r._consumed_ms = max(r._consumed_ms, q)
            if not decided or early:
                r.passed += 1
                continue
            if q > self.last_yield:
                self.last_yield = q
                yield round(q), r._to_bgr(frame)
            else:
                r.passed += 1
            self._advance()
            while self.head < self.decided:
                k = self._key_of(self.head)
                if not (self.targets[self.head] <= q + 1 if k is None else k <= q + 0.5):
                    break
                self._advance()
            self._maybe_pause()

    def _maybe_pause(self) -> None:
        """Stop decoding this interval when the next target lies beyond it (its packets stay buffered, so
        decoding resumes where it stopped if that guess was wrong)."""
        r = self.r
        if not (self.lazy and r._active and r._gop_key_ms is not None and self.head < self.decided):
            return
        if self._key_of(self.head) is None and self.targets[self.head] - 1 > r.interval_end_ms(r._gop_key_ms):
            r._active = False

    def _source_fed(self) -> bool:
        """Whatever serves the head target has gone into the decoder."""
        if self.head >= self.decided:
            return False
        key = self._key_of(self.head)
        return self.r._fed_max_ms >= (key if key is not None else self.targets[self.head]) - 1

    def _seek_if_far(self, first: bool) -> None:
        """Seek when the next target lies behind what is gone (first call only) or far beyond what is read."""
        r = self.r
        if self.head < self.decided and self._key_of(self.head) is not None:
            return
        if self.sought == self.head:
            return  # one jump per target: past the real end a seek lands back on the last keyframe
        start = self.targets[self.head] - self.tol
        pos = r._demux_ms if r._demux_ms > -math.inf else 0.0
        behind = first and (start - 1 <= r._consumed_ms or (r._drained and not r._ready))
        if behind or start - pos > self.plan.seek_gap_ms:
            r.passed += 0 if first else 1
            self.sought = self.head
            r._seek(start)

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        r = self.r
        deadline = time.monotonic() + r.limits.decode_timeout_s
        self._seek_if_far(first=True)
        while self.head < self.n:
            yield from self._hand_out()
            if self.head >= self.n:
                break
            if time.monotonic() > deadline:
                at = max(0, round(r._demux_ms))
                raise DecodeError(f"decoding stalled: no result after {r.limits.decode_timeout_s:g}s", at_ms=at)
            if r._drained and not r._ready and r._broken and self._recover():
                continue
            if self.missing or (r._drained and not r._ready):
                break
            if not r._ready and not r._active and self.decided >= self.n and self._source_fed():
                if r._gop_key_fed:  # mid-interval: a drain would lose the references its later frames need
                    self._feed_gop()  # resume it: the held frames come out as its next packets go in
                else:
                    r._empty_decoder(at_eof=False)  # the interval is over: take what it left out now
                continue
            if self.lazy and not r._ready and not self._source_fed():
                self._seek_if_far(first=False)
            pkt = r._next_packet()
            if pkt is None:
                self._at_end()
            else:
                self._on_packet(pkt)
        r._active = False  # the rest of the interval stays buffered: decoded only if a later call needs it
        self._check_complete()

    def _recover(self) -> bool:
        """Damage stopped the demuxer: seek past it to the next target rather than give up the rest."""
        r = self.r
        end_ms = self.info.duration_ms - 2 * r._frame_ms
        if self.recoveries >= MAX_RECOVERIES or self.targets[self.head] >= end_ms:
            return False
        self.recoveries += 1
        r.passed += 1
        gone = max(r._demux_ms, r._consumed_ms, 0.0)
        while self.head < self.n and self.targets[self.head] < gone + 2 * r._frame_ms - self.tol:
            self.head += 1  # the damaged stretch: these targets cannot be served
        if self.head >= self.n:
            return False
        log.warning(
            "%s: decoding broke after %.2fs; skipping to %.2fs", r.path, gone / 1000, self.targets[self.head] / 1000
        )
        self.decided = max(self.decided, self.head) if self.key_mode else self.n
        self.keys.clear()
        self.missing = False
        r._seek(self.targets[self.head] - self.tol)
        r._consumed_ms = max(r._consumed_ms, gone)
        return True

    def _on_packet(self, pkt: Any) -> None:
        r = self.r
        ms = r._pkt_ms(pkt)
        if pkt.is_keyframe:
            chose = self._decide(ms) if self.key_mode else False
            self._open_gop(pkt, ms)
            if chose:
                self._feed_key()
            return
        if ms is not None and ms > r._gop_max_ms:
            r._gop_max_ms = ms
        if r._active:
            self._feed(pkt)
            return
        r._gop.append(pkt)
        r._gop_bytes += pkt.size
        reached = not self.key_mode and self.head < self.n and (ms is None or ms >= self.targets[self.head] - 1)
        if reached or r._gop_bytes > GOP_BUFFER_BYTES:
            if self.key_mode:
                self._decide_greedy(r._gop_max_ms)
            self._feed_gop()

    def _at_end(self) -> None:
        r = self.r
        if self.key_mode:
            self._decide(None)
        elif not r._active and self.head < self.n and r._gop_max_ms >= self.targets[self.head] - 1:
            self._feed_gop()
        r._empty_decoder(at_eof=True)

    def _check_complete(self) -> None:
        r = self.r
        if self.head >= self.n:
            return
        t = self.targets[self.head]
        if t < self.info.duration_ms - 2 * r._frame_ms:
            at = max(0, round(max(r._consumed_ms, r._demux_ms, 0.0)))
            raise DecodeError(
                f"the video stops decoding at {at / 1000:.2f}s although it should last "
                f"{self.info.duration_ms / 1000:.2f}s (truncated or corrupt)",
                at_ms=at,
            )
