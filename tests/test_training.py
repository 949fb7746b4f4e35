"""Training pipeline: a tiny real run end to end, the seed preset's exact shape, augmentation placement."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from gate.errors import DatasetError
from gate.preprocess import DEFAULT_CROP_MARGIN
from tests.test_dataset import make_dataset, make_real_folder
from training.augment import NAME_PREFIX, make_augmenter
from training.cli import PRESET_CHOICES, main
from training.models import PRESETS, count_macs, make_model
from training.dataset import SplitSizes
from training.train import TrainConfig, run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPORT_PNGS = ("curves.png", "confusion_matrix.png", "predictions.png")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real 1-epoch run through the CLI: compact, 3 classes, 32 px, 8/3/3 images per class."""
    root = tmp_path_factory.mktemp("run")
    data = make_dataset(root / "data", {"with_mask": 14, "without_mask": 14, "incorrect_mask": 14})
    arguments = ["train", "--dataset", str(data), "--out", str(root / "run"), "--preset", "compact",
                 "--classes", "3", "--input-size", "32", "--epochs", "1", "--batch-size", "8", "--seed", "1",
                 "--train-per-class", "8", "--val-per-class", "3", "--test-per-class", "3"]
    assert main(arguments) == 0
    return root / "run"


@pytest.mark.slow
def test_tiny_run_writes_model_report_and_run_info(tiny_run):
    assert (tiny_run / "model.keras").is_file()
    for name in REPORT_PNGS:
        data = (tiny_run / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, name
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["n_test"] == 9
    for values in metrics["per_class"].values():
        assert all(0.0 <= values[key] <= 1.0 for key in ("precision", "recall", "f1"))
    assert np.array(metrics["confusion_matrix"]).sum() == 9
    assert "with_mask" in (tiny_run / "classification_report.txt").read_text()
    info = json.loads((tiny_run / "run.json").read_text())
    assert info["classes"] == ["with_mask", "without_mask", "incorrect_mask"]
    assert info["input_size"] == 32 and info["crop_margin"] == DEFAULT_CROP_MARGIN
    assert info["activation"] == "softmax" and info["params"] > 0 and info["macs"] > 0
    assert info["dataset"]["counts"]["test"] == {"with_mask": 3, "without_mask": 3, "incorrect_mask": 3}
    split = json.loads((tiny_run / "split.json").read_text())
    assert len(split["test"]) == 9 and len(split["train"]) == 24
    history = json.loads((tiny_run / "history.json").read_text())
    assert len(history["val_accuracy"]) == 1


@pytest.mark.slow
def test_saved_model_has_no_augmentation_and_takes_raw_pixels(tiny_run):
    model = keras.models.load_model(tiny_run / "model.keras")
    assert not [layer.name for layer in model.layers if layer.name.startswith(NAME_PREFIX)]
    assert isinstance(model.layers[1], keras.layers.Rescaling)
    probabilities = model.predict(np.full((2, 32, 32, 3), 128.0, np.float32), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_report_command_prints_headline_metrics(tiny_run, capsys):
    assert main(["report", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "predictions.png" in out


def test_an_existing_run_is_not_overwritten(tiny_run):
    config = TrainConfig(dataset_dir=tiny_run, out_dir=tiny_run, input_size=32)
    with pytest.raises(FileExistsError, match="already holds a training run"):
        run(config)


def test_seed_preset_is_the_original_network():
    model = make_model("seed", 2)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
                     "Conv2D", "MaxPooling2D", "Flatten", "Dropout", "Dense", "Dense"]
    assert [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)] == [32, 64, 128, 128]
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 1)
    assert model.layers[-1].activation.__name__ == "sigmoid"
    # 224 px input: the flattened 12×12×128 feature map feeds Dense(512).
    assert model.count_params() == 9_679_041
    # The classic 150 px version of the same stack is the familiar 3.45 M.
    assert make_model("seed", 2, input_size=150).count_params() == 3_453_121


def test_seed_preset_refuses_three_classes():
    with pytest.raises(DatasetError, match="seed preset"):
        make_model("seed", 3)


def test_compact_is_small_and_count_macs_matches_hand_count():
    model = make_model("compact", 3, 96)
    assert model.count_params() < 300_000
    assert model.output_shape == (None, 3)
    tiny = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same"),
                             keras.layers.DepthwiseConv2D(3, strides=2, padding="same"),
                             keras.layers.Flatten(), keras.layers.Dense(5)])
    assert count_macs(tiny) == 8 * 8 * 9 * 3 * 4 + 4 * 4 * 9 * 4 + 64 * 5


def test_cli_preset_choices_match_models():
    assert set(PRESET_CHOICES) == set(PRESETS)


@pytest.mark.slow
def test_real_photos_join_training_and_a_run_resumes_from_its_last_epoch(tmp_path):
    data = make_dataset(tmp_path / "data", {"with_mask": 5, "without_mask": 5, "incorrect_mask": 5})
    real = make_real_folder(tmp_path / "real", {"train": {"with_mask": 4, "without_mask": 4},
                                                "val": {"with_mask": 2, "without_mask": 3}})
    out = tmp_path / "run"
    arguments = ["train", "--dataset", str(data), "--out", str(out), "--classes", "3", "--input-size", "32",
                 "--batch-size", "8", "--train-per-class", "3", "--val-per-class", "1", "--test-per-class", "1",
                 "--real", str(real), "--augment", "real", "--patience", "0"]
    assert main(arguments + ["--epochs", "1"]) == 0
    steps = keras.models.load_model(out / "last.keras").optimizer.iterations.numpy()
    assert json.loads((out / "progress.json").read_text())["epochs_done"] == 1
    assert main(arguments + ["--epochs", "2", "--resume"]) == 0
    assert json.loads((out / "progress.json").read_text())["epochs_done"] == 2
    assert keras.models.load_model(out / "last.keras").optimizer.iterations.numpy() == 2 * steps  # optimizer state kept
    history = json.loads((out / "history.json").read_text())
    assert len(history["val_loss"]) == 2 and len(history["epoch_seconds"]) == 2
    info = json.loads((out / "run.json").read_text())
    assert info["real_val"]["n"] == 5 and info["real_val"]["n_masked"] == 2
    assert info["dataset"]["counts"]["train"] == {"with_mask": 7, "without_mask": 7, "incorrect_mask": 3}
    assert info["dataset"]["counts"]["test"] == {"with_mask": 1, "without_mask": 1, "incorrect_mask": 1}
    split = json.loads((out / "split.json").read_text())
    assert sum(str(real.resolve()) in entry["file"] for entry in split["val"]) == 5


def test_resume_needs_a_checkpoint(tmp_path):
    data = make_dataset(tmp_path / "data", {"with_mask": 3, "without_mask": 3})
    with pytest.raises(DatasetError, match="nothing|no last.keras"):
        run(TrainConfig(dataset_dir=data, out_dir=tmp_path / "run", classes=2, input_size=32, resume=True,
                        split=SplitSizes(1, 1, 1)))


@pytest.mark.parametrize("geometry", ["original", "door", "real"])
def test_augmentation_changes_images_only_in_training(geometry):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    augmenter = make_augmenter(seed=0, geometry=geometry)
    trained = np.asarray(augmenter(batch, training=True))
    assert trained.shape == batch.shape
    assert np.abs(trained - batch).mean() > 5.0
    assert 0.0 <= trained.min() and trained.max() <= 255.0
    np.testing.assert_array_equal(np.asarray(augmenter(batch, training=False)), batch)


def test_too_little_data_is_a_clear_cli_error(tmp_path, caplog):
    data = make_dataset(tmp_path / "data", {"with_mask": 6, "without_mask": 6})
    code = main(["train", "--dataset", str(data), "--out", str(tmp_path / "run"), "--classes", "2",
                 "--input-size", "32"])
    assert code == 2
    assert "class 'with_mask' has 6 readable images, the split needs 2000" in caplog.text


def test_unknown_augmentation_strength_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation 'wild'"):
        make_augmenter(geometry="wild")
