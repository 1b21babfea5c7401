"""Render examples/street.mp4: a reproducible 20 s synthetic street clip (640x360, 15 fps, H.264 or mp4v).

Timeline: 0-2 s empty day street, nothing moves; 2-10 s two cars drive across at different speeds and two
pedestrians (~130 px tall) walk along the pavement; hard cut at 10 s to a night street, where a car with
headlights crosses from 11 s to 16 s; 16-20 s the night street is still. Run: python scripts/make_example.py
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

Frame = NDArray[np.uint8]
W, H, FPS, SECONDS, CUT_S = 640, 360, 15, 20, 10.0
PAVEMENT_Y, ROAD_TOP, ROAD_BOTTOM = 215, 225, 330  # pedestrians' feet, road edges


def day_background() -> Frame:
    img = np.zeros((H, W, 3), np.uint8)
    for y in range(ROAD_TOP):  # sky: light blue fading to pale near the horizon
        t = y / ROAD_TOP
        img[y] = (int(235 - 20 * t), int(200 + 30 * t), int(150 + 80 * t))
    for x, w, h, shade in (
        (20, 90, 120, 120),
        (130, 70, 160, 100),
        (230, 110, 100, 140),
        (380, 80, 140, 110),
        (490, 130, 110, 130),
    ):
        cv2.rectangle(img, (x, 120 - h + 80), (x + w, 200), (shade, shade, shade + 10), -1)
        for wy in range(200 - h + 10, 190, 22):
            for wx in range(x + 8, x + w - 12, 20):
                cv2.rectangle(img, (wx, wy), (wx + 10, wy + 12), (90, 160, 200), -1)
    cv2.rectangle(img, (0, 200), (W, ROAD_TOP), (190, 195, 200), -1)  # pavement
    cv2.rectangle(img, (0, ROAD_TOP), (W, ROAD_BOTTOM), (85, 85, 90), -1)  # road
    cv2.rectangle(img, (0, ROAD_BOTTOM), (W, H), (175, 180, 185), -1)  # near pavement
    for x in range(0, W, 60):
        cv2.rectangle(img, (x, 275), (x + 30, 280), (230, 230, 230), -1)  # lane marks
    return img


def night_background() -> Frame:
    img = np.zeros((H, W, 3), np.uint8)
    img[:ROAD_TOP] = (40, 18, 10)  # dark blue sky
    for x, w, h in ((0, 140, 110), (150, 100, 150), (270, 150, 90), (440, 90, 130), (540, 100, 100)):
        cv2.rectangle(img, (x, 200 - h), (x + w, 200), (25, 22, 20), -1)
        for k, wy in enumerate(range(200 - h + 12, 190, 24)):
            wx = x + 12 + (k * 37) % max(1, w - 30)
            cv2.rectangle(img, (wx, wy), (wx + 10, wy + 12), (80, 190, 230), -1)  # a few lit windows
    cv2.rectangle(img, (0, 200), (W, ROAD_TOP), (45, 45, 48), -1)
    cv2.rectangle(img, (0, ROAD_TOP), (W, ROAD_BOTTOM), (28, 28, 30), -1)
    cv2.rectangle(img, (0, ROAD_BOTTOM), (W, H), (40, 40, 42), -1)
    for x in (80, 330, 580):  # street lamps with a soft glow
        cv2.line(img, (x, 215), (x, 110), (60, 60, 60), 3)
        glow = np.zeros_like(img)
        cv2.circle(glow, (x, 108), 40, (60, 150, 190), -1)
        img[:] = cv2.add(img, cv2.GaussianBlur(glow, (0, 0), 15))
        cv2.circle(img, (x, 108), 7, (170, 235, 255), -1)
    return img


def draw_car(
    img: Frame,
    x: int,
    y_bottom: int,
    length: int,
    colour: tuple[int, int, int],
    *,
    facing_right: bool,
    headlights: bool = False,
) -> None:
    body_h, roof_h = length // 5, length // 6
    top = y_bottom - body_h - 12
    cv2.rectangle(img, (x, top), (x + length, top + body_h), colour, -1)
    rx0, rx1 = x + length // 4, x + 3 * length // 4
    cv2.rectangle(img, (rx0, top - roof_h), (rx1, top), colour, -1)
    cv2.rectangle(img, (rx0 + 6, top - roof_h + 5), (rx1 - 6, top - 2), (200, 170, 120), -1)  # windows
    cv2.line(img, ((rx0 + rx1) // 2, top - roof_h + 5), ((rx0 + rx1) // 2, top - 2), colour, 3)
    for wx in (x + length // 5, x + 4 * length // 5):
        cv2.circle(img, (wx, y_bottom - 12), 12, (20, 20, 20), -1)
        cv2.circle(img, (wx, y_bottom - 12), 5, (160, 160, 160), -1)
    front = x + length if facing_right else x
    if headlights:
        beam = np.zeros_like(img)
        reach = 200 if facing_right else -200
        pts = np.array([[front, top + 8], [front + reach, top - 25], [front + reach, y_bottom + 15]], np.int32)
        cv2.fillPoly(beam, [pts], (90, 170, 190))
        img[:] = cv2.add(img, cv2.GaussianBlur(beam, (0, 0), 9))
        cv2.circle(img, (front, top + 10), 6, (210, 250, 255), -1)
    back = x if facing_right else x + length
    cv2.circle(img, (back, top + 10), 4, (40, 40, 230), -1)


def draw_pedestrian(
    img: Frame,
    x: int,
    feet_y: int,
    height: int,
    phase: float,
    colours: tuple[tuple[int, int, int], tuple[int, int, int]],
) -> None:
    """An upright figure ``height`` px tall centred on ``x``: head, shoulders, arms and striding legs."""
    top, legs = colours
    head_r = height // 14
    head_y = feet_y - height + head_r
    neck_y = head_y + head_r + 2
    hip_y = feet_y - int(height * 0.47)
    shoulder = height // 8
    cv2.circle(img, (x, head_y), head_r, (60, 80, 120), -1)  # skin-ish, darker than the pavement
    cv2.circle(img, (x, head_y - head_r // 3), head_r, (30, 30, 40), -1, lineType=cv2.LINE_AA)  # hair
    cv2.circle(img, (x, head_y + 2), head_r - 2, (80, 110, 160), -1)
    torso = np.array(
        [
            [x - shoulder, neck_y + 3],
            [x + shoulder, neck_y + 3],
            [x + shoulder - 3, hip_y],
            [x - shoulder + 3, hip_y],
        ],
        np.int32,
    )
    cv2.fillPoly(img, [torso], top)
    cv2.ellipse(img, (x, neck_y + 6), (shoulder, 6), 0, 180, 360, top, -1)
    swing = np.sin(phase)
    thick = max(4, height // 16)
    for side in (-1, 1):  # arms swing against the legs
        hand = (x + side * (shoulder + 2 + int(12 * swing)), hip_y + height // 14)
        cv2.line(img, (x + side * (shoulder - 2), neck_y + 8), hand, top, thick)
    for sign in (1, -1):
        foot_x = x + int(sign * swing * height * 0.16)
        knee = ((x + foot_x) // 2 + sign * 2, (hip_y + feet_y) // 2)
        cv2.line(img, (x + sign * 4, hip_y), knee, legs, thick + 2)
        cv2.line(img, knee, (foot_x, feet_y - 3), legs, thick + 1)
        cv2.line(img, (foot_x - 2, feet_y - 2), (foot_x + 8, feet_y - 2), (20, 20, 20), 4)


def render() -> Iterator[Frame]:
    day, night = day_background(), night_background()
    for i in range(FPS * SECONDS):
        t = i / FPS
        if t < CUT_S:
            img = day.copy()
            if t >= 2.0:
                s = t - 2.0
                draw_pedestrian(img, int(120 + 24 * s), PAVEMENT_Y, 130, s * 4.0, ((40, 40, 160), (50, 35, 30)))
                if t >= 3.0:
                    s2 = t - 3.0
                    draw_pedestrian(
                        img,
                        int(560 - 30 * s2),
                        PAVEMENT_Y + 4,
                        138,
                        s2 * 4.5 + 1.0,
                        ((120, 70, 20), (30, 30, 35)),
                    )
                draw_car(img, int(-200 + 260 * s), 272, 170, (40, 40, 200), facing_right=True)
                draw_car(img, int(W + 40 - 110 * (t - 2.0)), 322, 190, (170, 110, 30), facing_right=False)
        else:
            img = night.copy()
            if 11.0 <= t < 16.0:
                draw_car(
                    img,
                    int(-220 + 205 * (t - 11.0)),
                    300,
                    200,
                    (90, 90, 100),
                    facing_right=True,
                    headlights=True,
                )
        yield img


def write(path: Path, frames: Iterator[Frame]) -> str:
    """H.264 via ffmpeg when present (byte-reproducible), else cv2 mp4v; returns the codec used."""
    if shutil.which("ffmpeg"):
        cmd = [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            "-s",
            f"{W}x{H}",
            "-r",
            str(FPS),
            "-i",
            "-",
            "-c:v",
            "libx264",
            "-preset",
            "slow",
            "-crf",
            "23",
            "-g",
            str(2 * FPS),
            "-pix_fmt",
            "yuv420p",
            "-threads",
            "1",
            "-movflags",
            "+faststart",
            "-map_metadata",
            "-1",
            "-fflags",
            "+bitexact",
            "-flags:v",
            "+bitexact",
            str(path),
        ]
        subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)
        return "h264"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (W, H))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return "mp4v"


def hog_check(path: Path, seconds: tuple[float, ...] = (2.5, 4.0, 5.5, 7.0, 8.5, 12.0)) -> None:
    """Print how many people OpenCV's default HOG detector finds at a few timestamps."""
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32))
    cap = cv2.VideoCapture(str(path))
    for s in seconds:
        cap.set(cv2.CAP_PROP_POS_FRAMES, round(s * FPS))
        ok, frame = cap.read()
        if not ok:
            continue
        boxes, weights = hog.detectMultiScale(frame, winStride=(8, 8), padding=(8, 8), scale=1.05)
        found = [(tuple(int(v) for v in b), round(float(w), 2)) for b, w in zip(boxes, weights, strict=True)]
        print(f"t={s:5.1f}s HOG people: {len(found)} {found}")
    cap.release()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "examples/street.mp4")
    parser.add_argument("--hog", action="store_true", help="run OpenCV's HOG people detector on a few frames")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    codec = write(args.out, render())
    print(f"wrote {args.out} ({codec}, {args.out.stat().st_size / 1e6:.2f} MB, {SECONDS} s, {W}x{H}@{FPS})")
    if args.hog:
        hog_check(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
