"""Door-like test scenes built from synthetic faces (no third-party photos in the repository).

Faces come from the dataset builder's parts: GAN faces, face-mesh landmarks and procedural
masks. Used by tests/test_detector.py and benchmarks/bench_detector.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gate.assets import FACE_LANDMARK, GAN_FACE_WEIGHTS, require
from gate.types import Box

FRAME_W, FRAME_H = 640, 480
FACE_SIDE = 256  # GAN faces (64×64) are upscaled to this before landmarks and masks


@dataclass(frozen=True)
class SyntheticFace:
    """One GAN face: bare, with a mask in each placement, and its BlazeFace-like box."""

    bare: np.ndarray
    placements: dict[str, np.ndarray]
    box: Box


def synthetic_faces(count: int, seed: int) -> list[SyntheticFace]:
    """Up to ``count`` faces (those the landmarker accepts), the same for the same seed."""
    from training.gan_faces import GanFaceGenerator
    from training.landmarks import FaceLandmarker, face_box
    from training.masks import PLACEMENTS, render_mask, sample_mask_spec

    generator = GanFaceGenerator(require(GAN_FACE_WEIGHTS))
    landmarker = FaceLandmarker(require(FACE_LANDMARK))
    rng = np.random.default_rng(seed)
    faces = []
    for small in generator.generate(count, seed=seed):
        face = cv2.resize(small, (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_CUBIC)
        points = landmarker.detect(face)
        if points is None:
            continue
        placements = {p: render_mask(face, points, sample_mask_spec(rng, p), rng)[0] for p in PLACEMENTS}
        faces.append(SyntheticFace(face, placements, face_box(points)))
    return faces


def door_background(seed: int) -> np.ndarray:
    """A plain scene: wall colour, a few blurred blocks (door, posters), sensor noise."""
    rng = np.random.default_rng(seed)
    frame = np.empty((FRAME_H, FRAME_W, 3), np.uint8)
    frame[:] = rng.integers(60, 200, 3)
    for _ in range(8):
        x, y = (int(v) for v in rng.integers(0, (FRAME_W, FRAME_H)))
        w, h = (int(v) for v in rng.integers(20, 200, 2))
        cv2.rectangle(frame, (x, y), (x + w, y + h), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    frame = cv2.GaussianBlur(frame, (0, 0), 2)
    return np.clip(frame + rng.normal(0, 6, frame.shape), 0, 255).astype(np.uint8)


def paste(frame: np.ndarray, face: np.ndarray, box: Box, face_height: int, x: int, y: int) -> Box:
    """Paste ``face`` scaled so its face box is ``face_height`` px tall at (x, y); returns the true box."""
    scale = face_height / box.h
    side = round(face.shape[0] * scale)
    small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    alpha = np.zeros((side, side), np.float32)
    edge = max(1, side // 25)
    alpha[edge:-edge, edge:-edge] = 1.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), edge)[..., None]
    region = frame[y : y + side, x : x + side]
    region[:] = (region * (1 - alpha) + small * alpha).astype(np.uint8)
    return Box(x + box.x * scale, y + box.y * scale, box.w * scale, box.h * scale)
