"""Small value types passed along the pipeline: frame → detections → classifications."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from gate.vision.geometry import iou


#: The class names a model contract may use (output order is the contract's).
WITH_MASK = "with_mask"
WITHOUT_MASK = "without_mask"
INCORRECT_MASK = "incorrect_mask"

@dataclass(frozen=True)
class Box:
    """Axis-aligned box in pixels of the frame it came from: top-left corner, width, height."""

    x: float
    y: float
    w: float
    h: float

    @property
    def area(self) -> float:
        return max(self.w, 0.0) * max(self.h, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)

    @property
    def corners(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the form the detector's box arithmetic (:mod:`gate.vision.geometry`) uses."""
        return (self.x, self.y, self.x + self.w, self.y + self.h)

    @classmethod
    def from_corners(cls, x0: float, y0: float, x1: float, y1: float) -> Box:
        return cls(float(x0), float(y0), float(x1 - x0), float(y1 - y0))

    def iou(self, other: Box) -> float:
        """Intersection over union, 0 when disjoint."""
        return float(iou(self.corners, other.corners))

    def as_list(self) -> list[int]:
        return [round(self.x), round(self.y), round(self.w), round(self.h)]


@dataclass(frozen=True)
class Frame:
    """One camera image (RGB, uint8, H×W×3) with its capture time on the monotonic clock."""

    image: np.ndarray
    timestamp: float
    index: int


#: Which model vouched for a face: the short-range model confirmed it (on a crop around a proposal, or
#: on a tile), the pose detector's head box did (a masked face both face models doubt), the full-range
#: proposal stands alone (``detector.confirm`` off), or nobody (``given``: a crop that is the face).
Source = Literal["short_range", "pose", "full_range", "given"]


@dataclass(frozen=True)
class Detection:
    """One face in one frame, the record every stage passes on: where it is (``box``, ``keypoints``
    as (x, y) pixels when the detector gives them), how sure the model that vouched for it is
    (``score``, ``source``), and who it is across frames (``track_id``, from the one tracker,
    :class:`gate.vision.tracker.Tracker`; None before tracking). ``reidentified``: this face's track
    had been lost and the tracker took the face for it again by place and time, a guess that the
    policy honours by reading the face afresh."""

    box: Box
    score: float
    keypoints: tuple[tuple[float, float], ...] = field(default=())
    source: Source = "given"
    track_id: int | None = None
    reidentified: bool = False

    def moved(self, dx: float, dy: float) -> Detection:
        """The same face shifted by (dx, dy) pixels, keypoints included."""
        box = Box(self.box.x + dx, self.box.y + dy, self.box.w, self.box.h)
        return replace(self, box=box, keypoints=tuple((x + dx, y + dy) for x, y in self.keypoints))


@dataclass(frozen=True)
class Classification:
    """The mask classifier's verdict for one face: the top label and every class's probability."""

    label: str
    scores: dict[str, float]
    grant_floor: float = 0.0  # the P(with_mask) a grant needed on this crop (day or night floor)

    @property
    def confidence(self) -> float:
        return self.scores[self.label]
