"""MaskClassifier: same answers as Keras through every quantisation, contract-driven input and output."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from convert.convert import convert_model
from gate.classifier import MaskClassifier
from gate.contract import InputSpec, ModelContract, OutputSpec, file_sha256, write_contract
from gate.errors import ImageError, ModelError
from gate.settings import ClassifierSettings
from gate.types import Box
from tests.fixtures_models import SIZE, TinyRun, tiny_model

pytestmark = pytest.mark.slow


def _probabilities(classifier: MaskClassifier, images: np.ndarray) -> np.ndarray:
    return np.array([[c.scores[n] for n in classifier.classes] for c in map(classifier.classify, images)])


def _contracted(model, path: Path, classes: tuple[str, ...], activation: str, pixel_range=(0.0, 255.0)) -> Path:
    """Float32-convert a Keras model by hand and write a contract for it."""
    path.write_bytes(convert_model(model, "float32"))
    write_contract(path, ModelContract(
        model_sha256=file_sha256(path),
        input=InputSpec(height=SIZE, width=SIZE, pixel_range=pixel_range),
        output=OutputSpec(activation=activation, classes=classes),
        quantization="float32",
        preset="test",
    ))
    return path


def test_float32_model_gives_the_keras_probabilities(tiny_run: TinyRun, tiny_models: dict[str, Path]) -> None:
    classifier = MaskClassifier(tiny_models["float32"])
    expected = tiny_run.model.predict(tiny_run.test_images.astype(np.float32), verbose=0)
    np.testing.assert_allclose(_probabilities(classifier, tiny_run.test_images), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["int8", "uint8"])
def test_integer_models_agree_with_keras(tiny_run: TinyRun, tiny_models: dict[str, Path], name: str) -> None:
    """Quantise in, dequantise out: the pixel table and output scale are right for both signs."""
    classifier = MaskClassifier(tiny_models[name])
    expected = tiny_run.model.predict(tiny_run.test_images.astype(np.float32), verbose=0)
    actual = _probabilities(classifier, tiny_run.test_images)
    assert np.mean(actual.argmax(1) == expected.argmax(1)) >= 0.95
    assert np.abs(actual - expected).max() < 0.1


def test_box_is_cropped_with_the_contract_margin(tiny_run: TinyRun, tiny_models: dict[str, Path]) -> None:
    """A face pasted into a larger frame is labelled from its crop, as from the bare face."""
    classifier = MaskClassifier(tiny_models["float32"])
    index = int(np.flatnonzero(tiny_run.test_labels == 2)[0])
    face = cv2.resize(tiny_run.test_images[index], (80, 80), interpolation=cv2.INTER_NEAREST)
    frame = np.full((240, 320, 3), 128, np.uint8)
    frame[100:180, 150:230] = face
    result = classifier.classify(frame, Box(150, 100, 80, 80))
    assert result.label == "incorrect_mask"


def test_sigmoid_output_becomes_two_class_scores(tiny_run: TinyRun, tmp_path: Path) -> None:
    model = tiny_model(num_outputs=1, activation="sigmoid")
    path = _contracted(model, tmp_path / "sig.tflite", ("with_mask", "without_mask"), "sigmoid")
    classifier = MaskClassifier(path, min_confidence=0.0)   # the top class, whatever the floor
    image = tiny_run.test_images[0]
    p = float(model.predict(image[None].astype(np.float32), verbose=0)[0, 0])
    result = classifier.classify(image)
    assert result.scores["without_mask"] == pytest.approx(p, abs=1e-5)
    assert result.scores["with_mask"] == pytest.approx(1 - p, abs=1e-5)
    assert result.label == ("without_mask" if p > 0.5 else "with_mask")


def test_pixel_range_from_the_contract_is_applied(tiny_run: TinyRun, tmp_path: Path) -> None:
    """A model without a Rescaling layer, contracted for [0, 1] input, sees pixels / 255."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    path = _contracted(model, tmp_path / "unit.tflite", ("with_mask", "without_mask", "incorrect_mask"),
                       "softmax", pixel_range=(0.0, 1.0))
    images = tiny_run.test_images[:5]
    expected = model.predict(images.astype(np.float32) / 255.0, verbose=0)
    np.testing.assert_allclose(_probabilities(MaskClassifier(path), images), expected, atol=1e-5)


def test_properties_and_threshold_override(tiny_models: dict[str, Path]) -> None:
    path = tiny_models["int8"]
    classifier = MaskClassifier(path)
    assert classifier.input_size == (SIZE, SIZE)
    assert classifier.model_sha256 == file_sha256(path)
    assert classifier.min_confidence == classifier.contract.thresholds.min_confidence
    tuned = MaskClassifier.from_settings(ClassifierSettings(model=path, threads=2, min_confidence=0.85))
    assert tuned.min_confidence == 0.85


def _not_tflite(kind: str, tmp_path: Path, tiny_models: dict[str, Path]) -> Path:
    path = tmp_path / f"{kind}.tflite"
    if kind == "text":
        path.write_text("this is a text file, not a model\n")
    elif kind == "png":
        ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
        path.write_bytes(png.tobytes())
    elif kind == "truncated":
        path.write_bytes(tiny_models["int8"].read_bytes()[:600])
    elif kind == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("kind", ["text", "png", "truncated", "empty", "missing"])
def test_a_file_that_is_not_a_tflite_model_is_refused(kind: str, tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    path = _not_tflite(kind, tmp_path, tiny_models)
    with pytest.raises(ModelError, match=str(path.name)) as caught:
        MaskClassifier(path)
    assert "contract" not in str(caught.value)


@pytest.mark.parametrize("image", [np.zeros((32, 32), np.uint8), np.zeros((32, 32, 4), np.uint8),
                                   np.zeros((32, 32, 3), np.float32)])
def test_an_image_that_is_not_rgb_uint8_is_refused(tiny_models: dict[str, Path], image: np.ndarray) -> None:
    with pytest.raises(ImageError, match="RGB uint8"):
        MaskClassifier(tiny_models["int8"]).classify(image)


def test_with_mask_label_needs_the_grant_floor(tiny_run: TinyRun, tiny_models: dict[str, Path]) -> None:
    """Below the contract's floor a with_mask top class is read as the likelier other class."""
    images = tiny_run.test_images
    plain = [c for c in map(MaskClassifier(tiny_models["float32"], min_confidence=0.0).classify, images)]
    strict = [c for c in map(MaskClassifier(tiny_models["float32"], min_confidence=1.0).classify, images)]
    assert any(c.label == "with_mask" for c in plain)
    assert all(c.label == max(c.scores, key=c.scores.get) for c in plain)
    demoted = 0
    for loose, safe in zip(plain, strict):
        assert safe.scores == loose.scores
        others = {k: v for k, v in loose.scores.items() if k != "with_mask"}
        below_floor = loose.label == "with_mask" and loose.scores["with_mask"] < 1.0
        demoted += below_floor
        assert safe.label == (max(others, key=others.get) if below_floor else loose.label)
    assert demoted


def test_greyscale_crops_are_held_to_the_night_floor(tiny_run: TinyRun, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """An IR camera's grey frames need the contract's night floor; colour frames keep the day floor."""
    import shutil

    from gate.contract import Thresholds, read_contract

    model = tmp_path / "night.tflite"
    shutil.copy(tiny_models["float32"], model)
    contract = read_contract(tiny_models["float32"])
    write_contract(model, contract.model_copy(update={"thresholds": Thresholds(min_confidence=0.0, min_confidence_night=1.0)}))
    classifier = MaskClassifier(model)
    assert classifier.min_confidence_night == 1.0
    colour = [classifier.classify(image) for image in tiny_run.test_images]
    grey = [classifier.classify(np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2))
            for image in tiny_run.test_images]
    assert all(c.grant_floor == 0.0 for c in colour) and all(g.grant_floor == 1.0 for g in grey)
    assert any(c.label == "with_mask" for c in colour)
    assert not any(g.label == "with_mask" and g.scores["with_mask"] < 1.0 for g in grey)
    # A settings override that raises the day floor raises the night floor with it, never lowers it.
    assert MaskClassifier(model, min_confidence=0.5).min_confidence_night == 1.0
    assert MaskClassifier(tiny_models["float32"], min_confidence=0.7).min_confidence_night == 0.7


def test_greyscale_is_grey_with_camera_chroma_noise_and_never_a_colour_face() -> None:
    from gate.preprocess import is_greyscale

    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (96, 96, 1), dtype=np.uint8), 3, axis=2)
    noisy = np.clip(grey.astype(np.int16) + rng.integers(-2, 3, grey.shape), 0, 255).astype(np.uint8)
    face = np.zeros((96, 96, 3), np.uint8)
    face[:] = (200, 160, 130)  # skin
    assert is_greyscale(grey) and is_greyscale(noisy)
    assert not is_greyscale(face)
