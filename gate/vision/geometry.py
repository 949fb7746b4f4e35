"""Box arithmetic shared by the whole pipeline: the one IoU, point-in-box, the tile layout, and the
square region around a box on a scaled-down image. Boxes here are corners (x0, y0, x1, y1) in the
last axis of an array; numpy only, so :mod:`gate.types` can use it without pulling in OpenCV."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Side of the tiles of the tile search, as a fraction of the frame's shorter side
#: (256 px on 640×480: 3×2 tiles, so a face 1/10 of the frame is 3/16 of a tile, big enough for the
#: short-range model).
TILE_FRACTION = 8 / 15


def iou(a: Any, b: Any) -> np.ndarray:
    """Intersection over union of corner boxes, broadcast like numpy: one box with many (``iou(box,
    boxes)``), every box with every box (``iou(boxes[:, None], boxes[None])``); 0 where both are empty.
    np.maximum, not np.clip: this runs for every known face on every frame, where np.clip's overhead
    dominated."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ix = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0)
    iy = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = ix * iy
    area_a = np.maximum(a[..., 2] - a[..., 0], 0.0) * np.maximum(a[..., 3] - a[..., 1], 0.0)
    area_b = np.maximum(b[..., 2] - b[..., 0], 0.0) * np.maximum(b[..., 3] - b[..., 1], 0.0)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def inside(boxes: np.ndarray, x: Any, y: Any) -> np.ndarray:
    """Whether each point lies in the box, or in each box (corners first; broadcasts)."""
    return (boxes[..., 0] <= x) & (x <= boxes[..., 2]) & (boxes[..., 1] <= y) & (y <= boxes[..., 3])


def tiles(width: int, height: int) -> list[tuple[int, int, int]]:
    """Overlapping square tiles (x0, y0, side) covering a ``width``×``height`` frame, evenly spread."""
    side = max(1, round(min(width, height) * TILE_FRACTION))

    def starts(length: int) -> list[int]:
        count = -(-length // side)
        return [round(i * (length - side) / (count - 1)) for i in range(count)] if count > 1 else [0]

    return [(x, y, side) for y in starts(height) for x in starts(width)]


def scaled_square(corners: tuple[float, float, float, float], scale: float, shrink: int,
                  shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The square of ``scale`` × the box's longer side around its centre, on an image ``shrink`` times
    smaller than the frame (of ``shape``), clipped to it: (x0, y0, x1, y1) in that image's pixels."""
    x0, y0, x1, y1 = corners
    half = scale * max(x1 - x0, y1 - y0) / 2 / shrink
    cx, cy = (x0 + x1) / 2 / shrink, (y0 + y1) / 2 / shrink
    height, width = shape[:2]
    clamp = lambda v, high: min(max(v, 0), high)  # noqa: E731 - plain floats: np.clip costs more than the rest
    return (int(clamp(cx - half, width)), int(clamp(cy - half, height)),
            int(clamp(math.ceil(cx + half), width)), int(clamp(math.ceil(cy + half), height)))
