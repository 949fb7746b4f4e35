"""MediaPipe face-mesh landmarks (468 points) through LiteRT, for fitting masks to faces.

The face-mesh model expects a face crop with some margin, RGB scaled to [0, 1] (checked
empirically: [0, 1] gives higher presence scores than [-1, 1] on GAN faces). We run it
twice: once on the whole (face-centred) image, then on a square re-crop around the first
landmarks, which puts the face at the scale the model was trained on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from gate.litert import load_interpreter
from gate.types import Box

log = logging.getLogger(__name__)

INPUT_SIZE = 192
NUM_LANDMARKS = 468
#: Margin around the landmark bounding box for the second pass (fraction of its longer side).
_REFINE_MARGIN = 0.25
_MIN_PRESENCE = 0.5

# Standard face-mesh indices used across the builder.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
NOSE_TIP = 1
NOSE_BRIDGE = 6
UPPER_LIP_INNER = 13
LOWER_LIP_INNER = 14
CHIN = 152
FOREHEAD = 10
RIGHT_EYE = (33, 133, 159, 145)   # the subject's right eye: image left on a frontal face
LEFT_EYE = (362, 263, 386, 374)
RIGHT_EAR_SIDE, LEFT_EAR_SIDE = 234, 454
MOUTH_CORNERS = (61, 291)
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)


def _sigmoid(value: float) -> float:
    return float(1.0 / (1.0 + np.exp(-value)))


class FaceLandmarker:
    """Finds the 468 face-mesh points on a face-centred RGB image, or says there is no face."""

    def __init__(self, model_path: Path, num_threads: int = 1) -> None:
        self._interpreter = load_interpreter(model_path, num_threads=num_threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        by_size = {int(np.prod(o["shape"])): o["index"] for o in outputs}
        if NUM_LANDMARKS * 3 not in by_size or 1 not in by_size:
            raise ValueError(f"{model_path}: not a face-mesh model (outputs {[o['shape'].tolist() for o in outputs]})")
        self._landmarks_out = by_size[NUM_LANDMARKS * 3]
        self._presence_out = by_size[1]

    def _run(self, square_rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """Landmarks (468, 2) in the square's pixels and the face-presence probability."""
        side = square_rgb.shape[0]
        interpolation = cv2.INTER_AREA if side > INPUT_SIZE else cv2.INTER_LINEAR
        tensor = cv2.resize(square_rgb, (INPUT_SIZE, INPUT_SIZE), interpolation=interpolation)
        self._interpreter.set_tensor(self._input, (tensor.astype(np.float32) / 255.0)[None])
        self._interpreter.invoke()
        points = self._interpreter.get_tensor(self._landmarks_out).reshape(NUM_LANDMARKS, 3)[:, :2]
        presence = _sigmoid(float(self._interpreter.get_tensor(self._presence_out).reshape(-1)[0]))
        return points * (side / INPUT_SIZE), presence

    @staticmethod
    def _square(image: np.ndarray, box: Box) -> tuple[np.ndarray, float, float]:
        """A square crop (edge-replicated where it leaves the image) and its top-left corner."""
        x0, y0, side = int(round(box.x)), int(round(box.y)), max(8, int(round(box.w)))
        h, w = image.shape[:2]
        padded = cv2.copyMakeBorder(
            image, max(0, -y0), max(0, y0 + side - h), max(0, -x0), max(0, x0 + side - w), cv2.BORDER_REPLICATE
        )
        sx, sy = x0 + max(0, -x0), y0 + max(0, -y0)
        return padded[sy : sy + side, sx : sx + side], float(x0), float(y0)

    def detect(self, image_rgb: np.ndarray) -> np.ndarray | None:
        """(468, 2) landmark pixels in ``image_rgb``, or None when no plausible face is found."""
        h, w = image_rgb.shape[:2]
        side = max(h, w) * 1.1
        box = Box((w - side) / 2, (h - side) / 2, side, side)
        points = None
        for _ in range(2):
            square, x0, y0 = self._square(image_rgb, box)
            found, presence = self._run(square)
            if presence < _MIN_PRESENCE:
                return None
            points = found + (x0, y0)
            lo, hi = points.min(axis=0), points.max(axis=0)
            side = float(max(hi - lo)) * (1 + 2 * _REFINE_MARGIN)
            cx, cy = (lo + hi) / 2
            box = Box(cx - side / 2, cy - side / 2, side, side)
        return points if _plausible(points, image_rgb.shape[:2]) else None


def _plausible(points: np.ndarray, shape: tuple[int, int]) -> bool:
    """Reject degenerate meshes: tiny, mostly outside the image, or upside down."""
    h, w = shape
    lo, hi = points.min(axis=0), points.max(axis=0)
    if min(hi - lo) < 0.15 * min(h, w):
        return False
    inside = np.mean((points[:, 0] >= 0) & (points[:, 0] < w) & (points[:, 1] >= 0) & (points[:, 1] < h))
    if inside < 0.8:
        return False
    eyes_y = (points[list(RIGHT_EYE)].mean(axis=0)[1] + points[list(LEFT_EYE)].mean(axis=0)[1]) / 2
    return bool(points[FOREHEAD, 1] < eyes_y < points[NOSE_TIP, 1] < points[CHIN, 1])


def face_box(points: np.ndarray) -> Box:
    """A box like a BlazeFace detection: cheek to cheek, from above the brows to the chin.

    Calibrated on 50 GAN faces against ``gate.vision.detector.BlazeFaceDetector``: its box spans the
    face oval plus ~4.5 % of its width on each side, and from 0.38·(chin − eyes) above the
    eyes down to the chin. The margin the gate adds (``crop_margin``) is applied later by
    ``gate.preprocess.crop_face``.
    """
    oval = points[list(FACE_OVAL)]
    x0, x1 = float(oval[:, 0].min()), float(oval[:, 0].max())
    pad = 0.045 * (x1 - x0)
    chin_y = float(points[CHIN, 1])
    eyes_y = float((points[list(RIGHT_EYE)].mean(axis=0)[1] + points[list(LEFT_EYE)].mean(axis=0)[1]) / 2)
    top = eyes_y - 0.38 * (chin_y - eyes_y)
    bottom = chin_y - 0.02 * (chin_y - eyes_y)
    return Box(x0 - pad, top, x1 - x0 + 2 * pad, bottom - top)
