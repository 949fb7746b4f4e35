"""Skin tone of a face crop, and the split of faces into skin-tone thirds.

Why: a door whose averages are good can still refuse dark-skinned visitors more often, or let
them in bare more often. Issue 14 asks for false accept and false reject per skin-tone third,
with a gap of at most ``GOAL_GAP_POINTS`` between thirds.

The tone is the individual typology angle (ITA, Chardon et al. 1991) in CIELAB:
``ITA = atan((L* - 50) / b*) * 180 / pi``, high for light skin, low or negative for dark skin.
It is measured on the *visible upper face*: a band from the forehead to the upper cheeks
(``BAND_X``, ``BAND_Y`` of the face box), above where a mask sits, keeping only the pixels a
YCrCb skin test accepts (hair, eyes, glasses, background drop out), from the median L* and
median b* of those pixels. It is the skin's *apparent* colour: lighting and a camera's white
balance move it (in dim street photos a light face reads dark), so it is a proxy for skin tone,
not a dermatological measurement; a picture with (almost) no colour, such as infrared greyscale,
has no tone.
"""

from __future__ import annotations

import math
from typing import Iterable

import cv2
import numpy as np

from gate.types import Box

#: Horizontal and vertical extent of the upper-face band, as fractions of the face box:
#: forehead to upper cheeks, above the nose bridge where a mask worn over the nose begins.
BAND_X = (0.2, 0.8)
BAND_Y = (0.08, 0.4)
#: YCrCb skin test (Chai & Ngan 1999): chroma only, so it holds across skin tones.
SKIN_CR = (133, 173)
SKIN_CB = (77, 127)
#: Below this luma a pixel is hair, pupil or shadow whatever its chroma.
MIN_LUMA = 20
#: Fewer skin pixels than this in the band (or than this share of it) and the tone is unknown.
MIN_SKIN_PIXELS = 12
MIN_SKIN_SHARE = 0.15
#: Below this median b* the band is nearly grey (greyscale or colour-filtered photo): ITA, which divides
#: by b*, would swing to ±90° on noise, so the tone is unknown. Skin in daylight has b* of 8-25.
MIN_YELLOWNESS = 4.0
#: The real crop folders (realmask, realcrowd) are squares 1.3 × the face box, centred (their READMEs).
FOLDER_CROP_SCALE = 1.3
#: Names of the thirds, lightest first (highest ITA first).
THIRDS = ("lighter", "middle", "darker")
#: The issue's goal: false accept and false reject within this many points across the thirds.
GOAL_GAP_POINTS = 2.0


def ita(lightness: float, yellowness: float) -> float | None:
    """ITA in degrees from CIELAB L* (0-100) and b*; None when b* ≤ 0 (no skin is blue or grey)."""
    if yellowness <= 0:
        return None
    return math.degrees(math.atan((lightness - 50.0) / yellowness))


def skin_pixels(rgb: np.ndarray) -> np.ndarray:
    """Boolean mask of the skin-like pixels of an RGB uint8 picture (YCrCb test)."""
    y, cr, cb = cv2.split(cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb))
    return ((cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1]) & (cb >= SKIN_CB[0]) & (cb <= SKIN_CB[1]) & (y >= MIN_LUMA))


def upper_face_band(box: Box) -> Box:
    """The forehead-to-upper-cheek band of a face box."""
    return Box(box.x + BAND_X[0] * box.w, box.y + BAND_Y[0] * box.h,
               (BAND_X[1] - BAND_X[0]) * box.w, (BAND_Y[1] - BAND_Y[0]) * box.h)


def face_ita(image_rgb: np.ndarray, box: Box) -> float | None:
    """ITA of the visible upper-face skin of the face at ``box``; None when too little skin shows."""
    band = upper_face_band(box)
    height, width = image_rgb.shape[:2]
    x0, y0 = max(0, int(round(band.x))), max(0, int(round(band.y)))
    x1, y1 = min(width, int(round(band.x + band.w))), min(height, int(round(band.y + band.h)))
    region = np.ascontiguousarray(image_rgb[y0:y1, x0:x1])
    if region.size == 0:
        return None
    skin = skin_pixels(region)
    count = int(skin.sum())
    if count < MIN_SKIN_PIXELS or count < MIN_SKIN_SHARE * skin.size:
        return None
    lab = cv2.cvtColor(region.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)[skin]
    yellowness = float(np.median(lab[:, 2]))
    return None if yellowness < MIN_YELLOWNESS else ita(float(np.median(lab[:, 0])), yellowness)


def crop_ita(crop_rgb: np.ndarray, scale: float = FOLDER_CROP_SCALE) -> float | None:
    """ITA of a ready face crop whose face box is the centred ``1/scale`` of it (realmask, realcrowd)."""
    height, width = crop_rgb.shape[:2]
    w, h = width / scale, height / scale
    return face_ita(crop_rgb, Box((width - w) / 2, (height - h) / 2, w, h))


def tertile_edges(values: Iterable[float]) -> tuple[float, float]:
    """The ITA values that cut ``values`` into three equal parts (33rd and 67th percentiles)."""
    array = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if array.size < 3:
        raise ValueError(f"thirds need at least 3 measured tones, got {array.size}")
    low, high = np.percentile(array, [100 / 3, 200 / 3])
    return float(low), float(high)


def third_of(value: float, edges: tuple[float, float]) -> str:
    """``lighter`` above the upper edge, ``darker`` at or below the lower one, else ``middle``."""
    if value > edges[1]:
        return THIRDS[0]
    return THIRDS[2] if value <= edges[0] else THIRDS[1]


def gap_points(rates: Iterable[float | None]) -> float | None:
    """Largest minus smallest rate, in percentage points; None when fewer than two thirds have one."""
    known = [r for r in rates if r is not None]
    if len(known) < 2:
        return None
    return round(100.0 * (max(known) - min(known)), 1)
