"""The one preprocessing path shared by training, conversion (calibration) and the gate.

Training (``training/``) and conversion (``convert/``) import these functions; the gate
uses them on every detected face. Keeping them in one place is what guarantees that the
model sees at the door exactly what it saw while learning.

Pixel scaling is *not* done here: every maskgate model rescales inside its own graph, and
the model's contract (:mod:`gate.contract`) states the pixel range its input expects.
Images travel as RGB ``uint8`` arrays of shape H×W×3.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from gate.errors import ImageError
from gate.paths import read_regular_file
from gate.types import Box

#: Extra context around the detector's box on each side, as a fraction of the box's longer side.
DEFAULT_CROP_MARGIN = 0.2

_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"
#: Largest image decoded by default: 40 megapixels take ~240 MB while decoding (BGR + RGB copies),
#: which a 1 GB Raspberry Pi can spare next to the running gate. A 400-megapixel file would need 2.4 GB.
DEFAULT_MAX_PIXELS = 40_000_000
FORMATS = "JPEG, PNG, BMP, WebP, GIF, TIFF or PNM"
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF markers (C4, C8, CC are not frames)


def megapixels(pixels: float) -> str:
    """A pixel count in megapixels for a message: whole ones when large, 3 digits when small
    (16 384 pixels are "0.0164", not "0")."""
    value = pixels / 1e6
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            position += 2
        elif marker in _JPEG_FRAMES:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        elif marker == 0xDA:  # scan data before any frame header
            return None
        else:
            position += 2 + struct.unpack(">H", data[position + 2 : position + 4])[0]
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", data[4:8])
    if offset + 2 > len(data):
        return None
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    found: dict[int, int] = {}
    for entry in range(count):
        start = offset + 2 + 12 * entry
        if start + 12 > len(data):
            return None
        tag, kind = struct.unpack(order + "HH", data[start : start + 4])
        if tag in (256, 257) and kind in (3, 4):
            value = data[start + 8 : start + 10] if kind == 3 else data[start + 8 : start + 12]
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value)[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    tokens: list[bytes] = []
    for line in data[2:4096].splitlines():
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            break
    return (int(tokens[0]), int(tokens[1])) if len(tokens) >= 2 and tokens[0].isdigit() and tokens[1].isdigit() else None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header alone, for the formats in :data:`FORMATS`; None otherwise."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:2] == b"BM":
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8 ":
                width, height = struct.unpack("<HH", data[26:30])
                return width & 0x3FFF, height & 0x3FFF
            if chunk == b"VP8L":
                (bits,) = struct.unpack("<I", data[21:25])
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8X":
                return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
            return None
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
        if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2:
            return _pnm_size(data)
    except struct.error:  # a header cut short
        return None
    return None


def decode_image_rgb(data: bytes, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image to RGB uint8, or raise ImageError (one line, naming ``name``).

    The size is read from the header first and an image over ``max_pixels`` is refused before
    any pixel is decoded (a small file can claim 60000×60000); formats whose header we cannot
    read are refused for the same reason. Truncated JPEG and PNG files are refused rather than
    half-decoded: OpenCV would otherwise return an image whose lower part is grey, which a
    classifier happily labels.
    """
    if not data:
        raise ImageError(f"{name}: file is empty")
    size = image_size(data)
    if size is None:
        raise ImageError(f"{name}: not a {FORMATS} image (or its header is damaged)")
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: header says {width}×{height} pixels")
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width}×{height} is {megapixels(width * height)} megapixels, over the {megapixels(max_pixels)}-megapixel limit")
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\x00").endswith(_JPEG_END):
        raise ImageError(f"{name}: JPEG is truncated (no end-of-image marker)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and _PNG_END not in data[-32:]:
        raise ImageError(f"{name}: PNG is truncated (no IEND chunk)")
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageError(f"{name}: OpenCV cannot decode it ({str(exc).strip().splitlines()[-1]})") from None
    if image is None or image.size == 0 or image.ndim != 3:
        raise ImageError(f"{name}: not an image OpenCV can decode")
    if image.shape[0] * image.shape[1] > max_pixels:  # a header that lied
        raise ImageError(f"{name}: decodes to {image.shape[1]}×{image.shape[0]}, over the limit of {megapixels(max_pixels)} megapixels")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8 H×W×3, or raise ImageError naming the file.

    Files larger than any image within ``max_pixels`` could be (4 bytes a pixel) are not read.
    """
    path = Path(path)
    limit = 4 * max_pixels + (1 << 20)
    try:
        if path.stat().st_size > limit:
            raise ImageError(f"{path}: {path.stat().st_size / 1e6:.3g} MB is more than an image of {megapixels(max_pixels)} megapixels can take")
        data = read_regular_file(path, limit)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image_rgb(data, str(path), max_pixels)


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


#: Mean |channel − grey| (grey levels) under which a crop counts as greyscale: IR night mode
#: (exactly grey frames, or grey with a little chroma noise from the camera's YUV → RGB conversion).
GREYSCALE_SPREAD = 3.0


def is_greyscale(pixels: np.ndarray) -> bool:
    """Whether an RGB uint8 crop is (nearly) grey, as a camera in IR night mode sees."""
    values = pixels.reshape(-1, 3).astype(np.int16)
    return float(np.abs(values - values.mean(axis=1, keepdims=True)).mean()) < GREYSCALE_SPREAD


def face_input(
    image: np.ndarray,
    size: tuple[int, int],
    box: Box | None = None,
    margin: float = DEFAULT_CROP_MARGIN,
) -> np.ndarray:
    """What the classifier is fed: the face crop (or the whole image when ``box`` is None) at ``size``."""
    crop = image if box is None else crop_face(image, box, margin)
    return model_input(crop, size)
