"""Review copies: area averaging only below half size; a milder reduction is bilinear and looks the same."""

from __future__ import annotations

from unittest import mock

import cv2
import numpy as np
import pytest

from worker.adapters.stores import blobs
from worker.adapters.stores.blobs import review_jpeg


def _jpeg(w: int, h: int) -> bytes:
    image = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), w / 200)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return bytes(buf)


@pytest.mark.parametrize(("w", "h", "interp"), [(832, 448, cv2.INTER_LINEAR), (2600, 1462, cv2.INTER_AREA)])
def test_the_interpolation_follows_the_reduction_and_the_copy_matches_an_area_resize(
    w: int, h: int, interp: int
) -> None:
    data = _jpeg(w, h)
    resize = mock.Mock(wraps=cv2.resize)
    with mock.patch.object(blobs.cv2, "resize", resize):
        copy = review_jpeg(data, 640)
    assert resize.call_args.kwargs["interpolation"] == interp
    got = cv2.imdecode(np.frombuffer(copy or b"", np.uint8), cv2.IMREAD_COLOR)
    full = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    area = cv2.resize(full, (got.shape[1], got.shape[0]), interpolation=cv2.INTER_AREA)
    assert max(got.shape[:2]) == 640 and float(np.mean(cv2.absdiff(got, area))) < 3.0  # the same picture
