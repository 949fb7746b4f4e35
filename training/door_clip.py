"""A synthetic door-camera clip for demos and end-to-end tests of the gate.

A procedurally drawn corridor with a door, and visitors made from builder faces (GAN face
+ rendered mask) with a head-and-shoulders silhouette, who walk up to the camera, wait,
and step aside. The returned segments say what the gate should conclude for each visitor.
Faces are drawn until the gate's detector sees every face of a visitor where it waits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

import gate.assets
from gate.vision.detector import BlazeFaceDetector, FaceDetector
from gate.errors import CameraError
from gate.settings import DetectorSettings
from training.builder import dress_face, example_rng, prepare_gan_face
from training.gan_faces import GanFaceGenerator
from training.landmarks import FACE_OVAL, FaceLandmarker, face_box

log = logging.getLogger(__name__)

#: (labels of the people, incorrect-mask placement) for each visitor, in order.
VISITORS: tuple[tuple[tuple[str, ...], str | None], ...] = (
    (("with_mask",), None),
    (("without_mask",), None),
    (("incorrect_mask",), "below_nose"),
    (("with_mask", "with_mask"), None),
)
# The gap between visitors exceeds the policy's track_max_age_s (1 s): a face that has just left
# still counts as present for that long (fail-secure), as it would at a real door.
_APPROACH_S, _HOLD_S, _LEAVE_S, _GAP_S = 2.2, 1.0, 0.5, 1.5
_FACE_START, _FACE_END = 1 / 12, 1 / 4  # face box height as a fraction of frame height
_FACE_CENTRE_Y = 0.42
_DRAWS_PER_VISITOR = 10  # faces tried for a visitor until the detector sees all of them
_CLOTHES = ((40, 45, 60), (90, 30, 30), (50, 70, 50), (120, 120, 125), (30, 30, 30), (160, 130, 90))


@dataclass
class _Sprite:
    """A person as premultiplied RGBA at source resolution, with the face box inside it."""

    rgb: np.ndarray      # float32, premultiplied by alpha
    alpha: np.ndarray    # float32 in [0, 1]
    face_centre: tuple[float, float]
    face_height: float


def _background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Corridor wall with a door, floor and a ceiling light, as float32 RGB."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    wall = np.array((200, 192, 176), np.float32) * rng.uniform(0.85, 1.05)
    image = np.broadcast_to(wall, (height, width, 3)).copy()
    floor_y = int(height * 0.78)
    image[floor_y:] = np.array((120, 100, 80), np.float32)
    for k in range(-8, 9):  # floor planks converging to the vanishing point
        cv2.line(image, (width // 2 + k * 12, floor_y), (width // 2 + k * 90, height), (95, 78, 62), 2, cv2.LINE_AA)
    door = (int(width * 0.33), int(height * 0.12), int(width * 0.67), floor_y)
    cv2.rectangle(image, (door[0] - 14, door[1] - 14), (door[2] + 14, door[3]), (235, 232, 225), -1)
    cv2.rectangle(image, door[:2], door[2:], (120, 80, 50), -1)
    for top, bottom in ((0.18, 0.42), (0.5, 0.74)):
        cv2.rectangle(image, (door[0] + 18, int(height * top)), (door[2] - 18, int(height * bottom)), (105, 68, 42), 3, cv2.LINE_AA)
    cv2.circle(image, (door[2] - 22, int(height * 0.47)), 6, (200, 180, 90), -1, cv2.LINE_AA)
    grain = cv2.GaussianBlur(rng.normal(0, 6, (height, width)).astype(np.float32), (0, 0), 1.2)
    light = 0.65 + 0.5 * np.exp(-(((x - width * 0.5) / (width * 0.6)) ** 2 + ((y + height * 0.1) / (height * 0.9)) ** 2))
    return np.clip((image + grain[..., None]) * light[..., None], 0, 255)


def _person(face: np.ndarray, points: np.ndarray, skin: np.ndarray, rng: np.random.Generator) -> _Sprite:
    """Face canvas cut out with a soft ellipse, on a neck and shoulders."""
    box = face_box(points)
    oval = points[list(FACE_OVAL)]
    fw, fh = box.w, box.h
    width, height = int(fw * 3.2), int(fh * 3.4)
    ox, oy = width / 2 - (box.x + fw / 2), fh * 0.5 - box.y   # where the face canvas lands in the sprite
    rgb = np.zeros((height, width, 3), np.float32)
    alpha = np.zeros((height, width), np.float32)
    chin_y = points[152, 1] + oy
    shoulders_y = chin_y + fh * 0.55
    clothes = np.array(_CLOTHES[rng.integers(len(_CLOTHES))], np.float32)
    cv2.ellipse(rgb, (width // 2, int(shoulders_y + fh * 0.9)), (int(fw * 1.45), int(fh * 1.0)), 0, 180, 360, clothes.tolist(), -1, cv2.LINE_AA)
    cv2.rectangle(rgb, (int(width / 2 - fw * 1.45), int(shoulders_y + fh * 0.9)), (int(width / 2 + fw * 1.45), height), clothes.tolist(), -1)
    cv2.rectangle(rgb, (int(width / 2 - fw * 0.22), int(chin_y - fh * 0.2)), (int(width / 2 + fw * 0.22), int(shoulders_y + fh * 0.3)), (skin * 0.8).tolist(), -1)
    alpha[rgb.max(axis=2) > 0] = 1.0
    head = np.zeros((height, width), np.float32)
    centre = (oval.mean(axis=0) + (ox, oy)).astype(int)
    half = (oval.max(axis=0) - oval.min(axis=0)) / 2
    cv2.ellipse(head, (int(centre[0]), int(centre[1] - half[1] * 0.2)), (int(half[0] * 1.25), int(half[1] * 1.4)), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    head = cv2.GaussianBlur(head, (0, 0), fw * 0.03)
    placed = cv2.warpAffine(face.astype(np.float32), np.float32([[1, 0, ox], [0, 1, oy]]), (width, height), borderMode=cv2.BORDER_REPLICATE)
    rgb = rgb * alpha[..., None] * (1 - head[..., None]) + placed * head[..., None]
    alpha = alpha * (1 - head) + head
    return _Sprite(rgb, alpha, (width / 2, fh * 0.5 + fh / 2), fh)


def _composite(frame: np.ndarray, sprite: _Sprite, face_centre: tuple[float, float], face_height: float) -> None:
    scale = face_height / sprite.face_height
    h, w = sprite.alpha.shape
    sw, sh = max(1, int(w * scale)), max(1, int(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(sprite.rgb, (sw, sh), interpolation=interpolation)
    alpha = cv2.resize(sprite.alpha, (sw, sh), interpolation=interpolation)
    x0 = int(round(face_centre[0] - sprite.face_centre[0] * scale))
    y0 = int(round(face_centre[1] - sprite.face_centre[1] * scale))
    fh, fw = frame.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(fw, x0 + sw), min(fh, y0 + sh)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    a = alpha[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, None]
    frame[cy0:cy1, cx0:cx1] = frame[cy0:cy1, cx0:cx1] * (1 - a) + rgb[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]


def _place(frame: np.ndarray, sprites: list[_Sprite], face_height: float, shift: float) -> list[tuple[float, float]]:
    """Composite a visitor (one person or a group side by side); returns the face centres."""
    height, width = frame.shape[:2]
    face_height *= 1.0 if len(sprites) == 1 else 0.9
    centres = []
    for person, sprite in enumerate(sprites):
        spread = (person - (len(sprites) - 1) / 2) * face_height * 2.2
        centres.append((width / 2 + spread + shift, height * _FACE_CENTRE_Y))
        _composite(frame, sprite, centres[-1], face_height)
    return centres


def _seen(detector: FaceDetector, background: np.ndarray, sprites: list[_Sprite]) -> bool:
    """Whether the detector finds every face of a visitor where it waits: a demo visitor the
    gate cannot see (some GAN faces defeat BlazeFace once masked) only shows a missed face."""
    frame = background.copy()
    face_height = frame.shape[0] * _FACE_END
    centres = _place(frame, sprites, face_height, 0.0)
    found = detector.detect(np.clip(frame, 0, 255).astype(np.uint8))
    return all(any(abs(d.box.center[0] - x) < face_height / 2 and abs(d.box.center[1] - y) < face_height / 2 for d in found) for x, y in centres)


def _skin(canvas: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Median colour of a forehead patch of the bare face (never covered by a mask)."""
    x, y = points[151].astype(int)
    return np.median(canvas[y - 4 : y + 4, x - 4 : x + 4].reshape(-1, 3), axis=0).astype(np.float32)


def _dressed(canvas: np.ndarray, points: np.ndarray, label: str, placement: str | None, seed: int, index: int) -> np.ndarray:
    """The face with its mask; skin-toned masks are avoided so a demo viewer sees the mask."""
    for variant in range(20):
        example = dress_face(canvas, points, label, example_rng(seed, "gan", index, label, variant),
                             appearance=False, placement=placement)
        if example.record.get("mask_style") != "skin":
            break
    return example.image


def _faces(seed: int, assets_dir: Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Upscaled GAN faces with landmarks, endlessly (faces the landmarker rejects are passed over)."""
    generator = GanFaceGenerator(gate.assets.require(gate.assets.GAN_FACE_WEIGHTS, assets_dir))
    landmarker = FaceLandmarker(gate.assets.require(gate.assets.FACE_LANDMARK, assets_dir))
    for face in generator.stream(seed + 1000):
        canvas = prepare_gan_face(face, canvas=384)
        points = landmarker.detect(canvas)
        if points is not None and abs(points[1, 0] - canvas.shape[1] / 2) < canvas.shape[1] * 0.08:
            yield canvas, points  # fairly frontal faces only: they face the door camera


def make_door_clip(path: Path, seed: int = 7, assets_dir: Path = gate.assets.DEFAULT_ASSETS_DIR,
                   fps: int = 30, size: tuple[int, int] = (640, 480), gap_s: float = _GAP_S) -> dict:
    """Write the demo MP4; returns its metadata and ground-truth segments (seconds, labels).

    ``gap_s``: the empty door before each visitor (longer gaps make a quieter door, for soak and
    fleet benchmarks); at least the policy's track_max_age_s so each visitor is a new one."""
    rng = np.random.default_rng(seed)
    width, height = size
    background = _background(size, rng)
    faces = _faces(seed, Path(assets_dir))
    detector = BlazeFaceDetector(DetectorSettings(), assets_dir=Path(assets_dir))
    plan, segments, start = [], [], gap_s
    for number, (labels, placement) in enumerate(VISITORS):
        for _ in range(_DRAWS_PER_VISITOR):
            sprites = []
            for person, label in enumerate(labels):
                canvas, points = next(faces)
                sprites.append(_person(_dressed(canvas, points, label, placement, seed, number * 10 + person), points, _skin(canvas, points), rng))
            if _seen(detector, background, sprites):
                break
        else:
            log.warning("visitor %d (%s): the detector misses a face in each of %d draws; keeping the last", number, ", ".join(labels), _DRAWS_PER_VISITOR)
        end = start + _APPROACH_S + _HOLD_S + _LEAVE_S
        plan.append((start, sprites, -1 if rng.random() < 0.5 else 1))
        segments.append({"start": round(start, 3), "end": round(end, 3), "labels": list(labels),
                         "hold": [round(start + _APPROACH_S, 3), round(start + _APPROACH_S + _HOLD_S, 3)]})
        start = end + gap_s
    duration = start
    frame_count = int(round(duration * fps))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise CameraError(f"{path}: OpenCV cannot write an mp4v video here")
    try:
        for index in range(frame_count):
            t = index / fps
            frame = background.copy()
            for visit_start, sprites, exit_side in plan:
                local = t - visit_start
                if not 0 <= local < _APPROACH_S + _HOLD_S + _LEAVE_S:
                    continue
                progress = min(local / _APPROACH_S, 1.0)
                eased = progress * progress * (3 - 2 * progress)
                face_h = height * (_FACE_START + (_FACE_END - _FACE_START) * eased)
                shift = max(0.0, local - _APPROACH_S - _HOLD_S) / _LEAVE_S * width * 0.8 * exit_side
                _place(frame, sprites, face_h, shift)
            frame += rng.standard_normal(frame.shape, dtype=np.float32) * 3.0
            writer.write(cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    log.info("wrote %s: %d frames, %.1f s, %d visitors", path, frame_count, duration, len(segments))
    return {"path": str(path), "fps": fps, "size": [width, height], "frames": frame_count,
            "duration_s": round(duration, 3), "segments": segments}
