"""Skin tone (ITA) of face crops and the skin-tone thirds, on synthetic patches of known CIELAB colour."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from gate.types import Box
from training import fairness

FACE = Box(20, 20, 100, 120)


def _rgb(lightness: float, a: float, b: float) -> np.ndarray:
    """The sRGB uint8 colour of a CIELAB colour."""
    lab = np.array([[[lightness, a, b]]], np.float32)
    return np.round(np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1) * 255).astype(np.uint8)[0, 0]


def _face(skin: tuple[float, float, float], below: tuple[float, float, float] = (60, 0, -40)) -> np.ndarray:
    """A 160-px picture: grey background, the upper-face band in ``skin``, a (blue) mask below it."""
    picture = np.full((160, 160, 3), 128, np.uint8)
    band = fairness.upper_face_band(FACE)
    top, bottom = int(band.y) - 2, int(band.y + band.h) + 2
    picture[top:bottom, int(FACE.x) : int(FACE.x + FACE.w)] = _rgb(*skin)
    picture[bottom : int(FACE.y + FACE.h), int(FACE.x) : int(FACE.x + FACE.w)] = _rgb(*below)
    return picture


def test_ita_formula():
    assert fairness.ita(50, 10) == pytest.approx(0.0)
    assert fairness.ita(60, 10) == pytest.approx(45.0)
    assert fairness.ita(40, 10) == pytest.approx(-45.0)
    assert fairness.ita(75, 18) == pytest.approx(math.degrees(math.atan(25 / 18)))
    assert fairness.ita(60, 0) is None and fairness.ita(60, -3) is None


@pytest.mark.parametrize("skin", [(78, 8, 16), (68, 11, 19), (55, 14, 22), (45, 15, 22), (35, 14, 18), (25, 10, 12)])
def test_face_ita_measures_the_band_of_known_skin(skin):
    expected = fairness.ita(skin[0], skin[2])
    assert fairness.face_ita(_face(skin), FACE) == pytest.approx(expected, abs=1.5)


def test_only_skin_pixels_of_the_upper_face_count():
    skin = (55, 14, 22)
    expected = fairness.ita(skin[0], skin[2])
    # a skin-coloured mask *below* the band does not move the tone
    assert fairness.face_ita(_face(skin, below=(80, 8, 14)), FACE) == pytest.approx(expected, abs=1.5)
    # hair over part of the band (dark blue-grey, not skin) is left out
    picture = _face(skin)
    band = fairness.upper_face_band(FACE)
    picture[int(band.y) : int(band.y + band.h * 0.4), int(band.x) : int(band.x + band.w)] = _rgb(20, 0, -8)
    assert fairness.face_ita(picture, FACE) == pytest.approx(expected, abs=1.5)
    # a light face and a dark face are ordered as they should be
    assert fairness.face_ita(_face((75, 9, 17)), FACE) > 30 > fairness.face_ita(_face((35, 14, 18)), FACE)


def test_no_tone_without_colour_or_skin():
    grey = cv2.cvtColor(cv2.cvtColor(_face((55, 14, 22)), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    assert fairness.face_ita(grey, FACE) is None                        # infrared greyscale
    assert fairness.face_ita(_face((60, 0, -40)), FACE) is None         # blue: no skin at all
    assert fairness.face_ita(_face((55, 14, 22)), Box(500, 500, 40, 40)) is None   # box outside the picture


def test_crop_ita_finds_the_face_in_a_centred_crop():
    picture = _face((68, 11, 19))
    side = FACE.w * fairness.FOLDER_CROP_SCALE
    x0, y0 = int(FACE.x + FACE.w / 2 - side / 2), int(FACE.y + FACE.h / 2 - side / 2)
    crop = picture[max(0, y0) : y0 + int(side), max(0, x0) : x0 + int(side)]
    assert fairness.crop_ita(crop) == pytest.approx(fairness.ita(68, 19), abs=2.0)


def test_thirds_are_cut_at_the_tertiles():
    values = [50.0, -40.0, 10.0, 45.0, -35.0, 12.0, 40.0, -30.0, 15.0]
    edges = fairness.tertile_edges([*values, None])
    thirds = [fairness.third_of(v, edges) for v in values]
    assert [thirds.count(t) for t in fairness.THIRDS] == [3, 3, 3]
    assert {fairness.third_of(v, edges) for v in (40.0, 45.0, 50.0)} == {"lighter"}
    assert {fairness.third_of(v, edges) for v in (-40.0, -35.0, -30.0)} == {"darker"}
    with pytest.raises(ValueError, match="at least 3"):
        fairness.tertile_edges([1.0, None, 2.0])


def test_gap_is_the_spread_in_points():
    assert fairness.gap_points([0.01, 0.05, 0.02]) == 4.0
    assert fairness.gap_points([0.1, None, 0.1]) == 0.0
    assert fairness.gap_points([None, 0.3, None]) is None
