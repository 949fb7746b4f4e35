"""Image operations of the detector: checks, resizing, letterboxing, square crops, the small grey frame."""

from __future__ import annotations

import cv2
import numpy as np

from gate.errors import ImageError


def check_image(image: np.ndarray) -> None:
    """ImageError unless ``image`` is RGB uint8 H×W×3 (the detector's contract with the camera)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise ImageError(f"detector needs an RGB uint8 H×W×3 image, got {image.dtype} of shape {image.shape}")


def shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` resized to ``width``×``height``: halved by area averaging while it is at least twice
    as large, then bilinear. Close to an area resize (no aliasing) at a fraction of its cost: OpenCV's
    INTER_AREA is fast only for integer factors (6× slower than this for 640×480 → 192×144)."""
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Fit ``image`` into a black ``size``×``size`` square without stretching.

    Returns the square and the mapping back: frame pixel = (square pixel − pad) / scale.
    """
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = shrink(image, new_w, new_h)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    square = np.zeros((size, size, 3), np.uint8)
    square[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return square, scale, float(pad_x), float(pad_y)


def square_crop(image: np.ndarray, cx: float, cy: float, side: float) -> tuple[np.ndarray, float, float]:
    """A ``side``-pixel square centred on (cx, cy), black outside the frame; returns it and its origin."""
    side_px = max(1, round(side))
    x0, y0 = round(cx - side_px / 2), round(cy - side_px / 2)
    height, width = image.shape[:2]
    crop = np.zeros((side_px, side_px, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(width, x0 + side_px), min(height, y0 + side_px)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return crop, float(x0), float(y0)


def small_grey(image: np.ndarray, scale: int) -> np.ndarray:
    """The frame at 1/``scale``, grey: where motion is measured (cheap, and sensor noise averages out).
    Grey first, then shrunk: the same image within a grey level (both steps are averages), a third less time."""
    height, width = image.shape[:2]
    return shrink(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), max(1, width // scale), max(1, height // scale))
