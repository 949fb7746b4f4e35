"""What the preview draws on a copy of the frame: faces with track id, label and scores, the faces
the detector ignored (and why), the region of interest and the minimum face size."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from gate.detector import OUTSIDE_ROI, TOO_SMALL
from gate.policy import TrackedFace
from gate.settings import DetectorSettings
from gate.types import WITH_MASK, WITHOUT_MASK, Box, Detection

#: RGB colours: a face's box by its label in this frame; ignored faces, the region and the size marker.
LABEL_COLOURS = {WITH_MASK: (0, 200, 0), WITHOUT_MASK: (230, 0, 0)}
OTHER_LABEL_COLOUR = (255, 150, 0)  # incorrect_mask, or a class a custom model adds
IGNORED_COLOUR = (170, 170, 170)
ROI_COLOUR = (255, 230, 0)
IGNORED_TEXT = {TOO_SMALL: "too small", OUTSIDE_ROI: "outside roi"}
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def annotated(image: np.ndarray, faces: Sequence[TrackedFace], ignored: Sequence[tuple[Detection, str]], detector: DetectorSettings) -> np.ndarray:
    """A copy of the RGB frame with everything drawn; the frame itself is left untouched."""
    canvas = image.copy()
    height, width = canvas.shape[:2]
    _draw_roi(canvas, detector.roi, width, height)
    _draw_min_size(canvas, detector.min_face_px, height)
    for detection, why in ignored:
        _draw_box(canvas, detection.box, IGNORED_COLOUR, [IGNORED_TEXT.get(why, why)], thickness=1)
    for face in faces:
        classification = face.observation.classification
        colour = LABEL_COLOURS.get(classification.label, OTHER_LABEL_COLOUR)
        reading = "reading..." if face.reading is None else f"read {face.reading}"
        decided = {True: ", granted", False: ", denied", None: ""}[face.opened]
        _draw_box(canvas, face.observation.detection.box, colour, [
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
    _label(canvas, "detector.roi", (top_left[0] + 4, top_left[1] + 16), ROI_COLOUR)


def _draw_min_size(canvas: np.ndarray, min_face_px: int, height: int) -> None:
    """A square as wide as the narrowest face the gate passes on, in the bottom-left corner."""
    x, y = 8, height - 8 - min_face_px
    cv2.rectangle(canvas, (x, y), (x + min_face_px, y + min_face_px), ROI_COLOUR, 1, cv2.LINE_AA)
    _label(canvas, f"min_face_px {min_face_px}", (x + min_face_px + 6, height - 10), ROI_COLOUR)


def _draw_box(canvas: np.ndarray, box: Box, colour: tuple[int, int, int], lines: list[str], thickness: int = 2) -> None:
    x, y, w, h = box.as_list()
    cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, thickness, cv2.LINE_AA)
    above = max(14, y - 6 - 16 * (len(lines) - 1))
    for number, line in enumerate(lines):
        _label(canvas, line, (x, above + 16 * number), colour)


def _label(canvas: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """Text on a dark band, readable on any background."""
    (width, height), baseline = cv2.getTextSize(text, _FONT, 0.45, 1)
    x, y = origin
    cv2.rectangle(canvas, (x - 2, y - height - 3), (x + width + 2, y + baseline), (0, 0, 0), cv2.FILLED)
    cv2.putText(canvas, text, (x, y), _FONT, 0.45, colour, 1, cv2.LINE_AA)
