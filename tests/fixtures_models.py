"""A tiny, really trained model and a run folder around it, shared by the conversion-side tests.

Three classes of 32×32 images, each a coloured square (red, green, blue) on noise: learnable in
a few seconds, so quantised predictions can be compared with Keras on data where the model is
actually confident. Built once per session; import the fixtures into a test module to use them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

SIZE = 32
CLASSES = ("with_mask", "without_mask", "incorrect_mask")
_COLOURS = ((220, 40, 40), (40, 220, 40), (40, 40, 220))


def squares(count_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 images (N×32×32×3) with a class-coloured square at a random place, and labels."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, colour in enumerate(_COLOURS):
        for _ in range(count_per_class):
            image = rng.integers(60, 160, (SIZE, SIZE, 3), dtype=np.uint8)
            side = int(rng.integers(12, 22))
            x, y = rng.integers(0, SIZE - side, 2)
            jitter = rng.integers(-25, 25, 3)
            image[y : y + side, x : x + side] = np.clip(np.array(colour) + jitter, 0, 255)
            images.append(image)
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int32)


def tiny_model(num_outputs: int = 3, activation: str = "softmax"):
    """Rescaling + Conv + GAP + Dense: the shape of every maskgate model, in miniature."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_outputs, activation=activation)(x)
    return keras.Model(inputs, outputs)


@dataclass(frozen=True)
class TinyRun:
    run_dir: Path
    model: object  # keras.Model
    train_images: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def _write_dataset(root: Path, images: np.ndarray, labels: np.ndarray, prefix: str) -> list[dict]:
    entries = []
    for index, (image, label) in enumerate(zip(images, labels)):
        name = CLASSES[label]
        relative = f"{name}/{prefix}{index:03d}.png"
        (root / name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / relative), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        entries.append({"file": relative, "label": name})
    return entries


def build_run(base: Path, model, preset: str, epochs: int, learning_rate: float) -> TinyRun:
    """Train ``model`` on the squares and lay out a run folder like ``maskgate-train`` writes."""
    import keras

    keras.utils.set_random_seed(0)
    train_images, train_labels = squares(40, seed=1)
    test_images, test_labels = squares(20, seed=2)
    val_images, val_labels = squares(10, seed=3)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
    model.fit(train_images.astype(np.float32), train_labels, epochs=epochs, batch_size=16, verbose=0)
    run_dir, dataset = base / "run", base / "dataset"
    run_dir.mkdir(parents=True)
    split = {
        "dataset_dir": str(dataset),
        "classes": list(CLASSES),
        "seed": 0,
        "image_size": SIZE,
        "skipped": [],
        "train": _write_dataset(dataset, train_images, train_labels, "train"),
        "val": _write_dataset(dataset, val_images, val_labels, "val"),
        "test": _write_dataset(dataset, test_images, test_labels, "test"),
    }
    (run_dir / "split.json").write_text(json.dumps(split))
    (run_dir / "run.json").write_text(json.dumps({
        "classes": list(CLASSES), "preset": preset, "activation": "softmax", "input_size": SIZE,
        "pixel_range": [0.0, 255.0], "crop_margin": 0.2,
        "dataset": {"description": "coloured squares on noise (test fixture)"},
    }))
    (run_dir / "metrics.json").write_text(json.dumps({"test_accuracy": None}))
    model.save(run_dir / "model.keras")
    return TinyRun(run_dir, model, train_images, test_images, test_labels)


_cache: dict[str, TinyRun] = {}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """The miniature Conv model, trained to ~100 % on the squares."""
    if "run" not in _cache:
        _cache["run"] = build_run(tmp_path_factory.mktemp("tiny"), tiny_model(), "tiny", 15, 0.02)
    return _cache["run"]


@pytest.fixture(scope="session")
def compact_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """The real ``compact-s`` architecture (BatchNorm, depthwise, ReLU6) at 32 px, briefly trained."""
    if "compact" not in _cache:
        from training.models import make_model

        model = make_model("compact-s", len(CLASSES), SIZE)
        _cache["compact"] = build_run(tmp_path_factory.mktemp("compact"), model, "compact-s", 12, 0.005)
    return _cache["compact"]


@pytest.fixture(scope="session")
def tiny_models(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Contracted TFLite models of the tiny run: ``float32``, ``float16``, ``dynamic``, ``int8``, ``uint8``."""
    if "models" not in _cache:
        from convert.convert import Preset, convert_run

        out = tmp_path_factory.mktemp("models")
        models = {}
        for preset in Preset:
            models[preset.value] = convert_run(tiny_run.run_dir, preset, out / f"tiny-{preset.value}.tflite").model_path
        models["uint8"] = convert_run(
            tiny_run.run_dir, Preset.INT8, out / "tiny-int8-uint8io.tflite", io_dtype="uint8"
        ).model_path
        _cache["models"] = models
    return _cache["models"]
