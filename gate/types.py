"""Small value types passed along the pipeline: frame → detections → classifications."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np



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

    def iou(self, other: Box) -> float:
        """Intersection over union, 0 when disjoint."""
        ix = max(0.0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0.0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def as_list(self) -> list[int]:
        return [round(self.x), round(self.y), round(self.w), round(self.h)]


@dataclass(frozen=True)
class Frame:
    """One camera image (RGB, uint8, H×W×3) with its capture time on the monotonic clock."""

    image: np.ndarray
    timestamp: float
    index: int


@dataclass(frozen=True)
class Detection:
    """A face found by a detector; ``keypoints`` are (x, y) pixels when the detector gives them."""

    box: Box
    score: float
    keypoints: tuple[tuple[float, float], ...] = field(default=())


@dataclass(frozen=True)
class Classification:
    """The mask classifier's verdict for one face: the top label and every class's probability."""

    label: str
    scores: dict[str, float]

    @property
    def confidence(self) -> float:
        return self.scores[self.label]
