"""The one preprocessing path shared by training, conversion (calibration) and the gate.

Training (``training/``) and conversion (``convert/``) import these functions; the gate
uses them on every detected face. Keeping them in one place is what guarantees that the
model sees at the door exactly what it saw while learning.

Pixel scaling is *not* done here: every maskgate model rescales inside its own graph, and
the model's contract (:mod:`gate.contract`) states the pixel range its input expects.
Images travel as RGB ``uint8`` arrays of shape H×W×3.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from gate.errors import ImageError
from gate.types import Box

#: Extra context around the detector's box on each side, as a fraction of the box's longer side.
DEFAULT_CROP_MARGIN = 0.2

_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"


def decode_image_rgb(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode an encoded image (any format OpenCV reads) to RGB uint8, or raise ImageError.

    Truncated JPEG and PNG files are refused rather than half-decoded: OpenCV would
    otherwise return an image whose lower part is grey, which a classifier happily labels.
    """
    if not data:
        raise ImageError(f"{name}: file is empty")
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\x00").endswith(_JPEG_END):
        raise ImageError(f"{name}: JPEG is truncated (no end-of-image marker)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and _PNG_END not in data[-32:]:
        raise ImageError(f"{name}: PNG is truncated (no IEND chunk)")
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageError(f"{name}: not an image OpenCV can decode")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 H×W×3, or raise ImageError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return decode_image_rgb(data, str(path))


def square_around(box: Box, margin: float = DEFAULT_CROP_MARGIN) -> Box:
    """The square the classifier sees: centred on ``box``, side = longer side × (1 + 2·margin)."""
    side = max(box.w, box.h) * (1.0 + 2.0 * margin)
    cx, cy = box.center
    return Box(cx - side / 2, cy - side / 2, side, side)


def crop_face(image: np.ndarray, box: Box, margin: float = DEFAULT_CROP_MARGIN) -> np.ndarray:
    """Square crop around a face; parts outside the frame are filled by replicating its edge."""
    square = square_around(box, margin)
    x0, y0 = int(round(square.x)), int(round(square.y))
    side = max(1, int(round(square.w)))
    height, width = image.shape[:2]
    pad_left, pad_top = max(0, -x0), max(0, -y0)
    pad_right, pad_bottom = max(0, x0 + side - width), max(0, y0 + side - height)
    inside = image[max(0, y0) : min(height, y0 + side), max(0, x0) : min(width, x0 + side)]
    if inside.size == 0:
        raise ImageError(f"face box {box.as_list()} lies outside the {width}×{height} frame")
    if pad_left or pad_top or pad_right or pad_bottom:
        inside = cv2.copyMakeBorder(
            inside, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE
        )
    return inside


def model_input(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 image to the model's ``(height, width)``: area filter when shrinking."""
    target_h, target_w = size
    h, w = image.shape[:2]
    if (h, w) == (target_h, target_w):
        return np.ascontiguousarray(image, dtype=np.uint8)
    shrinking = target_h * target_w < h * w
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(image, (target_w, target_h), interpolation=interpolation)
    return np.ascontiguousarray(resized, dtype=np.uint8)


def face_input(
    image: np.ndarray,
    size: tuple[int, int],
    box: Box | None = None,
    margin: float = DEFAULT_CROP_MARGIN,
) -> np.ndarray:
    """What the classifier is fed: the face crop (or the whole image when ``box`` is None) at ``size``."""
    crop = image if box is None else crop_face(image, box, margin)
    return model_input(crop, size)
