"""The shared preprocessing: decoding refuses broken files; crops keep faces centred."""

import cv2
import numpy as np
import pytest

from gate.errors import ImageError
from gate.preprocess import crop_face, decode_image_rgb, face_input, read_image_rgb, square_around
from gate.types import Box


def _encoded(ext: str) -> bytes:
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :, 2] = 255  # red in BGR
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp"])
def test_decodes_common_formats_to_rgb(ext):
    image = decode_image_rgb(_encoded(ext))
    assert image.shape == (40, 60, 3) and image.dtype == np.uint8
    assert image[..., 0].mean() > 200 and image[..., 2].mean() < 50  # red lands in channel 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "file is empty"),
        (b"hello, I am not an image", "not a JPEG, PNG, BMP, WebP, GIF, TIFF or PNM image"),
        (_encoded(".jpg")[:-200], "JPEG is truncated"),
        (_encoded(".png")[:-30], "PNG is truncated"),
    ],
)
def test_broken_files_are_refused_with_a_reason(data, message):
    with pytest.raises(ImageError, match=message):
        decode_image_rgb(data, "x")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ImageError, match="nope.jpg: cannot read"):
        read_image_rgb(tmp_path / "nope.jpg")


def test_crop_is_square_centred_and_padded_at_the_border():
    image = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)
    box = Box(0, 10, 20, 40)
    square = square_around(box, margin=0.25)
    assert square.w == square.h == pytest.approx(60)
    assert square.center == pytest.approx(box.center)
    crop = crop_face(image, box, margin=0.25)
    assert crop.shape == (60, 60, 3)
    assert np.array_equal(crop[:, 0], crop[:, 19])  # left part replicated from column 0


def test_face_input_resizes_to_the_model_size():
    image = np.full((300, 200, 3), 128, np.uint8)
    assert face_input(image, (96, 96)).shape == (96, 96, 3)
    assert face_input(image, (32, 48), Box(50, 50, 60, 80)).shape == (32, 48, 3)
    with pytest.raises(ImageError, match="outside"):
        face_input(image, (32, 32), Box(1000, 1000, 10, 10))
