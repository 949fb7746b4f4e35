"""What the preview draws on a copy of the frame: faces with track id, label and scores, the faces
the detector ignored (and why), the region of interest and the minimum face size. Boxes and labels
are drawn as ``test-image --annotate`` draws them (:mod:`gate.annotate`)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from gate.annotate import LABEL_COLOURS, OTHER_LABEL_COLOUR, draw_box, draw_label
from gate.policy import TrackedFace
from gate.settings import DetectorSettings
from gate.types import Detection
from gate.vision.detector import OUTSIDE_ROI, TOO_SMALL

#: RGB colours of what only the preview draws: ignored faces, the region and the size marker.
IGNORED_COLOUR = (170, 170, 170)
ROI_COLOUR = (255, 230, 0)
IGNORED_TEXT = {TOO_SMALL: "too small", OUTSIDE_ROI: "outside roi"}


def annotated(image: np.ndarray, faces: Sequence[TrackedFace], ignored: Sequence[tuple[Detection, str]], detector: DetectorSettings) -> np.ndarray:
    """A copy of the RGB frame with everything drawn; the frame itself is left untouched."""
    canvas = image.copy()
    height, width = canvas.shape[:2]
    _draw_roi(canvas, detector.roi, width, height)
    _draw_min_size(canvas, detector.min_face_px, height)
    for detection, why in ignored:
        draw_box(canvas, detection.box, IGNORED_COLOUR, [IGNORED_TEXT.get(why, why)], thickness=1)
    for face in faces:
        classification = face.observation.classification
        colour = LABEL_COLOURS.get(classification.label, OTHER_LABEL_COLOUR)
        reading = "reading..." if face.reading is None else f"read {face.reading}"
        decided = {True: ", granted", False: ", denied", None: ""}[face.opened]
        draw_box(canvas, face.observation.detection.box, colour, [
            f"#{face.track_id} {classification.label} {classification.confidence:.2f}",
            f"face {face.observation.detection.score:.2f}, {reading}{decided}",
        ])
    return canvas


def _draw_roi(canvas: np.ndarray, roi: tuple[float, float, float, float], width: int, height: int) -> None:
    if tuple(roi) == (0.0, 0.0, 1.0, 1.0):
        return
    x0, y0, x1, y1 = roi
    top_left, bottom_right = (round(x0 * (width - 1)), round(y0 * (height - 1))), (round(x1 * (width - 1)), round(y1 * (height - 1)))
    cv2.rectangle(canvas, top_left, bottom_right, ROI_COLOUR, 1, cv2.LINE_AA)
    draw_label(canvas, "detector.roi", (top_left[0] + 4, top_left[1] + 16), ROI_COLOUR)


def _draw_min_size(canvas: np.ndarray, min_face_px: int, height: int) -> None:
    """A square as wide as the narrowest face the gate passes on, in the bottom-left corner."""
    x, y = 8, height - 8 - min_face_px
    cv2.rectangle(canvas, (x, y), (x + min_face_px, y + min_face_px), ROI_COLOUR, 1, cv2.LINE_AA)
    draw_label(canvas, f"min_face_px {min_face_px}", (x + min_face_px + 6, height - 10), ROI_COLOUR)
