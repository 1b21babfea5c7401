"""The embedded describer: facts measured with OpenCV alone. It is not a language model, and says so."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from worker.core.models import Description
from worker.core.ports import DescribeRequest
from worker.core.timecode import clock

ANALYSIS_WIDTH = 480  # HOG finds people of ~100 px and up at this width
PALETTE: dict[str, tuple[int, int, int]] = {  # BGR
    "black": (20, 20, 20),
    "grey": (128, 128, 128),
    "white": (235, 235, 235),
    "red": (40, 40, 200),
    "orange": (30, 130, 240),
    "yellow": (40, 210, 230),
    "green": (60, 160, 60),
    "blue": (200, 90, 40),
    "sky blue": (230, 190, 120),
    "brown": (40, 70, 120),
    "purple": (140, 50, 120),
    "pink": (180, 140, 240),
    "dark blue": (90, 30, 20),
}


def _small(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= ANALYSIS_WIDTH:
        return image
    return cv2.resize(image, (ANALYSIS_WIDTH, max(1, round(h * ANALYSIS_WIDTH / w))), interpolation=cv2.INTER_AREA)


def _colour_name(bgr: np.ndarray) -> str:
    best, dist = "grey", float("inf")
    for name, ref in PALETTE.items():
        d = float(np.sum((bgr.astype(np.float64) - np.array(ref, dtype=np.float64)) ** 2))
        if d < dist:
            best, dist = name, d
    return best


class LocalDescriber:
    """Motion (frame differencing), people (HOG), cuts (HSV histograms), light, dominant colours."""

    name = "local"

    def __init__(self, *, people: bool = True, cut_threshold: float = 0.5) -> None:
        self.people = people
        self.cut_threshold = cut_threshold
        self._hog: Any = None
        if people and hasattr(cv2, "HOGDescriptor"):
            self._hog = cv2.HOGDescriptor()
            self._hog.setSVMDetector(cv2.HOGDescriptor.getDefaultPeopleDetector())

    def describe(self, request: DescribeRequest) -> Description:
        frames = [(f.t_ms, img) for f, img in zip(request.frames, self._images(request), strict=True)]
        facts = self.analyse(frames)
        return Description(text=self.sentence(facts), structured=facts, describer=self.name, model=None)

    def _images(self, request: DescribeRequest) -> Sequence[np.ndarray]:
        if request.thumbs and len(request.thumbs) == len(request.frames):
            return list(request.thumbs)
        images = []
        for ref in request.frames:
            img = cv2.imread(ref.path, cv2.IMREAD_COLOR)
            if img is None:
                raise OSError(f"frame {ref.path} cannot be read back")
            images.append(_small(img))
        return images

    def analyse(self, frames: Sequence[tuple[int, np.ndarray]]) -> dict[str, Any]:
        grays = [cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), (5, 5), 0) for _, img in frames]
        times = [t for t, _ in frames]
        # Motion: share of pixels that changed between consecutive samples.
        motion = [0.0]
        for a, b in itertools.pairwise(grays):
            if a.shape != b.shape:
                motion.append(1.0)
                continue
            motion.append(float(np.mean(cv2.absdiff(a, b) > 25)))
        # Cuts: HSV histogram distance between consecutive samples.
        hists = []
        for _, img in frames:
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            h = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
            hists.append(cv2.normalize(h, h).flatten())
        cuts = [
            times[i]
            for i in range(1, len(hists))
            if cv2.compareHist(hists[i - 1], hists[i], cv2.HISTCMP_BHATTACHARYYA) > self.cut_threshold
        ]
        cut_set = set(cuts)
        moving = [m for t, m in zip(times, motion, strict=True) if t not in cut_set]
        peak_i = int(np.argmax([m if t not in cut_set else 0 for t, m in zip(times, motion, strict=True)]))
        level_value = float(np.mean(moving[1:])) if len(moving) > 1 else 0.0
        people_counts = [self._people(img) for _, img in frames[:: max(1, len(frames) // 12)]]
        brightness = float(np.mean([np.mean(g) for g in grays]))
        return {
            "motion": {
                "level": _motion_level(level_value),
                "score": round(level_value, 4),
                "peak_ms": times[peak_i] if motion[peak_i] > 0.002 else None,
            },
            "people": {
                "max": max(people_counts, default=0),
                "mean": round(float(np.mean(people_counts)), 2) if people_counts else 0.0,
                "detector": "hog" if self._hog is not None else "unavailable",
            },
            "cuts_ms": cuts,
            "light": _light(brightness),
            "brightness": round(brightness, 1),
            "colours": self._colours(frames),
            "frames": len(frames),
        }

    def _people(self, image: np.ndarray) -> int:
        h, w = image.shape[:2]
        if self._hog is None or h < 128 or w < 64:  # smaller than HOG's window: nobody to find (and cv2 crashes)
            return 0
        rects, weights = self._hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=1.05)
        if not len(rects):
            return 0
        boxes = [[int(v) for v in r] for r in rects]
        scores = [float(w) for w in np.ravel(weights)]
        # Overlapping detections of one person are merged (non-maximum suppression).
        keep = cv2.dnn.NMSBoxes(boxes, scores, score_threshold=0.5, nms_threshold=0.3)
        return len(np.ravel(keep)) if len(keep) else 0

    def _colours(self, frames: Sequence[tuple[int, np.ndarray]]) -> list[str]:
        picks = [
            cv2.resize(img, (32, 18), interpolation=cv2.INTER_AREA) for _, img in frames[:: max(1, len(frames) // 6)]
        ]
        pixels = np.concatenate([p.reshape(-1, 3) for p in picks]).astype(np.float32)
        k = min(3, len(pixels))
        cv2.setRNGSeed(1234)
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
        _, labels, centres = cv2.kmeans(pixels, k, None, criteria, 3, cv2.KMEANS_PP_CENTERS)  # type: ignore[call-overload]
        counts = np.bincount(labels.ravel(), minlength=k)
        names: list[str] = []
        for i in np.argsort(-counts):
            name = _colour_name(centres[i])
            if name not in names:
                names.append(name)
        return names

    @staticmethod
    def sentence(facts: dict[str, Any]) -> str:
        motion = facts["motion"]
        parts = [f"{facts['light'].capitalize()} scene"]
        if motion["level"] == "none":
            parts.append("nothing moves")
        else:
            peak = f", peaking at {clock(motion['peak_ms'])}" if motion["peak_ms"] is not None else ""
            parts.append(f"{motion['level']} motion{peak}")
        people = facts["people"]
        if people["detector"] == "hog":
            n = people["max"]
            parts.append("no people detected" if n == 0 else f"up to {n} {'person' if n == 1 else 'people'} visible")
        cuts = facts["cuts_ms"]
        if cuts:
            parts.append(f"{len(cuts)} cut{'s' if len(cuts) > 1 else ''} at " + ", ".join(clock(t) for t in cuts[:4]))
        parts.append("mostly " + _join(facts["colours"]))
        return "; ".join(parts) + ". (Local OpenCV analysis, not a language model.)"


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _motion_level(score: float) -> str:
    if score < 0.002:
        return "none"
    if score < 0.02:
        return "low"
    if score < 0.08:
        return "moderate"
    return "strong"


def _light(brightness: float) -> str:
    if brightness < 40:
        return "dark"
    if brightness < 90:
        return "dim"
    return "bright"
