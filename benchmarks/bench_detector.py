"""Detection rate of the face detector at door distances, and false detections on empty scenes.

    .venv/bin/python -m benchmarks.bench_detector [--faces 40] [--backgrounds 100]

Synthetic GAN faces (bare, mask over the nose, mask below the nose) are pasted into 640×480
door scenes at several face heights; a face counts as found when a detection overlaps its box
with IoU ≥ 0.3. Goal: ≥ 95 % found at door distances, < 1 false detection per 100 frames.
Each row is one detector configuration; ``min_face_px`` is lowered so small faces are measured.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from gate.detector import BlazeFaceDetector
from gate.settings import DetectorSettings
from tests.door_scenes import FACE_SIDE, FRAME_H, FRAME_W, door_background, paste, synthetic_faces

FACE_HEIGHTS = (96, 64, 48, 32, 24)  # 1/5 … 1/20 of the frame height
KINDS = ("bare", "over_nose", "below_nose")
CONFIGS = {
    "default (full 0.4, confirm 0.5)": DetectorSettings(min_face_px=8),
    "full 0.2, confirm 0.5": DetectorSettings(min_face_px=8, score_threshold=0.2),
    "full 0.1, confirm 0.5": DetectorSettings(min_face_px=8, score_threshold=0.1),
    "full 0.4, no confirmation": DetectorSettings(min_face_px=8, confirm=False),
}


def scenes(faces, height: int, kind: str):
    """One frame per face at ``height``, at a position fixed by the face and size."""
    for i, face in enumerate(faces):
        image = face.bare if kind == "bare" else face.placements[kind]
        rng = np.random.default_rng(1000 * height + i)
        side = round(FACE_SIDE * height / face.box.h)
        x, y = (int(v) for v in rng.integers(0, (FRAME_W - side, FRAME_H - side)))
        frame = door_background(10_000 + 100 * height + i)
        yield frame, paste(frame, image, face.box, height, x, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=40, help="GAN faces per cell of the table")
    parser.add_argument("--backgrounds", type=int, default=100, help="empty scenes for the false-detection count")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    faces = synthetic_faces(args.faces, seed=7)
    print(f"{len(faces)} faces, {args.backgrounds} empty scenes, frame {FRAME_W}x{FRAME_H}\n")
    columns = [f"{kind[:5]}@{h}" for h in FACE_HEIGHTS for kind in KINDS]
    print(f"{'configuration':34s}" + "".join(f"{c:>11s}" for c in columns) + f"{'FP/100':>8s}{'ms':>6s}")
    for name, settings in CONFIGS.items():
        detector = BlazeFaceDetector(settings)
        cells, frames, started = [], 0, time.perf_counter()
        for height in FACE_HEIGHTS:
            for kind in KINDS:
                hits = 0
                for frame, truth in scenes(faces, height, kind):
                    hits += any(d.box.iou(truth) >= 0.3 for d in detector.detect(frame))
                    frames += 1
                cells.append(100.0 * hits / len(faces))
        false = sum(len(detector.detect(door_background(i))) for i in range(args.backgrounds))
        frames += args.backgrounds
        ms = 1000 * (time.perf_counter() - started) / frames
        print(f"{name:34s}" + "".join(f"{c:10.0f}%" for c in cells) + f"{100 * false / args.backgrounds:8.1f}{ms:6.0f}")


if __name__ == "__main__":
    main()
