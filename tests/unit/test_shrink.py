"""Every picture we write is made smaller one way (``frames/shrink.py``): bilinear down to half size, below
it bilinear to twice the size then an exact 2:1 area step; either way the same picture as OpenCV's area
averaging (which costs several times more at a non-integer ratio)."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest

from worker.adapters.frames import shrink as shrinking
from worker.adapters.frames.local import JpegWriter, LocalFrames
from worker.adapters.stores.blobs import decode_jpeg, review_jpeg


def _picture(w: int, h: int) -> np.ndarray:
    noise = np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), w / 200)


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _like_area(got: np.ndarray, full: np.ndarray) -> float:
    area = cv2.resize(full, (got.shape[1], got.shape[0]), interpolation=cv2.INTER_AREA)
    return float(np.mean(cv2.absdiff(got, area)))


@pytest.mark.parametrize(
    ("src", "size", "steps"),
    [
        ((1280, 720), (832, 448), [cv2.INTER_LINEAR]),  # a frame for the model (default pixel budget)
        ((832, 448), (640, 345), [cv2.INTER_LINEAR]),  # a review copy
        ((1280, 720), (480, 270), [cv2.INTER_LINEAR, cv2.INTER_AREA]),  # a thumb: below half size
        ((2600, 1462), (640, 360), [cv2.INTER_LINEAR, cv2.INTER_AREA]),
    ],
)
def test_shrink_steps_size_and_picture(src: tuple[int, int], size: tuple[int, int], steps: list[int]) -> None:
    full = _picture(*src)
    resize = mock.Mock(wraps=cv2.resize)
    with mock.patch.object(shrinking.cv2, "resize", resize):
        got = shrinking.shrink(full, size)
    assert [c.kwargs["interpolation"] for c in resize.call_args_list] == steps
    assert (got.shape[1], got.shape[0]) == size
    assert _like_area(got, full) < 3.0  # the same picture as an area resize


def test_frames_thumbs_and_review_copies_are_made_smaller_by_shrink(tmp_path: Path) -> None:
    full = _picture(1280, 720)
    ok, buf = cv2.imencode(".jpg", full, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    calls = mock.Mock(wraps=shrinking.shrink)
    with (
        mock.patch("worker.adapters.frames.local.shrink", calls),
        mock.patch("worker.adapters.frames.review.shrink", calls),
    ):
        data, w, h = JpegWriter(832 * 448).encode(full)
        thumb = LocalFrames(tmp_path, 832 * 448).thumb(full)
        copy = review_jpeg(bytes(buf), 640)
    assert [c.args[1] for c in calls.call_args_list] == [(w, h), (480, 270), (640, 360)]
    assert _like_area(_decode(data), full) < 3.0 and _like_area(thumb, full) < 3.0
    assert copy is not None and max(_decode(copy).shape[:2]) == 640


def test_the_sampler_makes_review_copies_from_the_decoded_picture(tmp_path: Path) -> None:
    """``LocalFrames.review``: the store's copy from the picture in memory (no decoding of the frame file),
    the same picture as the copy made from the file, never larger than the frame the model was sent."""
    full = _picture(1280, 720)
    frames = LocalFrames(tmp_path, 832 * 448, review_side=640)
    ref = frames.write(tmp_path, 0, 0, full)
    assert max(ref.width, ref.height) > 640
    made = frames.review(full, ref)
    from_file = review_jpeg(Path(ref.path).read_bytes(), 640)
    assert made is not None and from_file is not None
    assert _decode(made).shape[:2] == (360, 640)  # the source's aspect ratio, at the review side
    assert _like_area(_decode(made), full) < 3.0
    assert float(np.mean(cv2.absdiff(cv2.resize(_decode(from_file), (640, 360)), _decode(made)))) < 4.0
    small = LocalFrames(tmp_path, 64 * 64, review_side=640)  # a tiny pixel budget: the copy is no larger
    tiny = small.write(tmp_path, 1, 0, full)
    copy = small.review(full, tiny)
    assert copy is not None and max(_decode(copy).shape[:2]) == max(tiny.width, tiny.height)
    assert LocalFrames(tmp_path, 832 * 448).review(full, ref) is None  # review copies off: none made


def test_review_copies_decode_frames_to_opencvs_pixels_and_fall_back_to_opencv() -> None:
    """The review copies' decoder (libjpeg-turbo through simplejpeg, half the CPU) gives exactly the pixels
    ``cv2.imdecode`` gives, so the copies are the same bytes; what it cannot read (a PNG here) goes to OpenCV."""
    full = _picture(832, 448)
    ok, jpeg = cv2.imencode(".jpg", full, [cv2.IMWRITE_JPEG_QUALITY, 90])
    ok2, png = cv2.imencode(".png", full)
    assert ok and ok2
    fast = decode_jpeg(jpeg.tobytes())
    assert fast is not None and np.array_equal(fast, cv2.imdecode(jpeg, cv2.IMREAD_COLOR))
    from_png = decode_jpeg(png.tobytes())
    assert from_png is not None and np.array_equal(from_png, full)
    copy = review_jpeg(png.tobytes(), 640)
    assert copy is not None and _decode(copy).shape[:2] == (345, 640)
    assert decode_jpeg(b"not a picture") is None and review_jpeg(b"", 640) is None
