"""The ImageNet backbone in training: weights loaded from a path, the two-stage fine-tune, sqrt sampling.

Never the shared weights file: a tiny backbone is saved in the test and loaded back by path.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import keras
import numpy as np
import pytest

from gate.errors import DatasetError
from tests.test_dataset import make_dataset
from training.dataset import CLASS_ORDER, SplitSizes, load_real_folder
from training.models import BACKBONE_NAME, make_model, set_backbone_trainable
from training.train import TrainConfig, run, sampling_weights, training_dataset

SIZE = 32  # MobileNetV2's smallest input: keeps the backbone cheap to build and train here


def _saved_backbone(path: Path, seed: int = 3) -> list[np.ndarray]:
    """A randomly initialised MobileNetV2 (alpha 0.35) base saved as a weights file, like Keras' *_no_top.h5."""
    keras.utils.set_random_seed(seed)
    base = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False, weights=None)
    base.save_weights(path)
    return base.get_weights()


def test_backbone_weights_load_from_a_path(tmp_path):
    saved = _saved_backbone(tmp_path / "base.weights.h5")
    keras.utils.set_random_seed(99)  # a different random start: only the file can make them equal
    model = make_model("mobilenetv2-0.35", 3, SIZE, str(tmp_path / "base.weights.h5"))
    loaded = model.get_layer(BACKBONE_NAME).get_weights()
    assert len(loaded) == len(saved)
    assert all(np.array_equal(a, b) for a, b in zip(loaded, saved))
    fresh = make_model("mobilenetv2-0.35", 3, SIZE, None).get_layer(BACKBONE_NAME).get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(fresh, saved))


def test_missing_backbone_weights_name_the_path(tmp_path):
    with pytest.raises(DatasetError, match="nothere.h5"):
        make_model("mobilenetv2-0.35", 3, SIZE, str(tmp_path / "nothere.h5"))
    with pytest.raises(ValueError, match="backbone preset"):
        make_model("compact", 3, 96, str(tmp_path / "nothere.h5"))


def test_fine_tuning_unfreezes_only_the_top_and_never_batchnorm():
    model = make_model("mobilenetv2-0.35", 3, SIZE)
    base = model.get_layer(BACKBONE_NAME)
    set_backbone_trainable(model, None)
    assert not any(layer.trainable_weights for layer in base.layers)
    assert model.get_layer("classes").trainable
    set_backbone_trainable(model, "block_15_expand")
    names = [layer.name for layer in base.layers]
    start = names.index("block_15_expand")
    trainable = [layer for layer in base.layers if layer.trainable_weights]
    assert trainable and all(names.index(layer.name) >= start for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) and layer.trainable for layer in base.layers)
    with pytest.raises(ValueError, match="no layer"):
        set_backbone_trainable(model, "block_99_expand")


def test_sqrt_sampling_gives_classes_equal_shares_and_real_images_their_root():
    labels = np.array([0] * 400 + [1] * 100 + [2] * 400 + [2] * 25)
    is_real = np.array([False] * 200 + [True] * 200 + [True] * 100 + [False] * 400 + [True] * 25)
    shares = sampling_weights(labels, is_real)
    assert sum(shares.values()) == pytest.approx(1.0)
    for cls in (0, 1, 2):
        assert sum(v for (c, _), v in shares.items() if c == cls) == pytest.approx(1 / 3)
    assert shares[(0, True)] == pytest.approx(shares[(0, False)])  # 200 vs 200
    assert shares[(1, True)] == pytest.approx(1 / 3)                # only real ones
    assert shares[(2, True)] / shares[(2, False)] == pytest.approx(np.sqrt(25) / np.sqrt(400))


def test_sqrt_sampled_batches_follow_the_shares():
    labels = np.array([0] * 300 + [1] * 60 + [2] * 16 + [2] * 144, dtype=np.int32)
    is_real = np.array([False] * 300 + [True] * 60 + [True] * 16 + [False] * 144)
    images = np.zeros((len(labels), 4, 4, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(len(labels)) % 256  # which row was drawn
    images[:, 0, 0, 1] = np.arange(len(labels)) // 256
    config = TrainConfig(dataset_dir=Path("."), out_dir=Path("."), preset="compact", batch_size=64, augment="none",
                         sampling="sqrt").resolved()
    drawn = Counter()
    for batch, targets in training_dataset(images, labels, config, is_real=is_real, labels=labels).take(60):
        rows = batch.numpy()[:, 0, 0, 0].astype(int) + 256 * batch.numpy()[:, 0, 0, 1].astype(int)
        drawn.update((int(labels[r]), bool(is_real[r])) for r in rows)
        assert np.array_equal(targets.numpy(), labels[rows])
    total = sum(drawn.values())
    for cls in (0, 1, 2):
        assert sum(n for (c, _), n in drawn.items() if c == cls) / total == pytest.approx(1 / 3, abs=0.03)
    real_share = drawn[(2, True)] / (drawn[(2, True)] + drawn[(2, False)])
    assert real_share == pytest.approx(4 / (4 + 12), abs=0.05)  # sqrt(16) : sqrt(144)


def test_realcrowd_incorrect_folder_is_the_incorrect_mask_class(tmp_path):
    make_dataset(tmp_path / "crowd" / "train", {"with_mask": 2, "without_mask": 2, "incorrect_mask": 2})
    (tmp_path / "crowd" / "train" / "incorrect_mask").rename(tmp_path / "crowd" / "train" / "incorrect")
    subsets = load_real_folder(tmp_path / "crowd", CLASS_ORDER, 24)
    assert Counter(subsets["train"].labels.tolist()) == {0: 2, 1: 2, 2: 2}


@pytest.mark.slow
def test_two_stage_backbone_run_selects_on_real_photos(tmp_path):
    _saved_backbone(tmp_path / "base.weights.h5")
    data = make_dataset(tmp_path / "data", {name: 8 for name in CLASS_ORDER})
    real = tmp_path / "real"
    make_dataset(real / "train", {"with_mask": 3, "without_mask": 3})
    make_dataset(real / "val", {"with_mask": 3, "without_mask": 3})
    config = TrainConfig(
        dataset_dir=data, out_dir=tmp_path / "run", preset="mobilenetv2-0.35", classes=3, input_size=SIZE,
        epochs=2, batch_size=8, steps_per_epoch=2, split=SplitSizes(4, 2, 2), patience=0, augment="none",
        real_dirs=(real,), backbone_weights=str(tmp_path / "base.weights.h5"), head_epochs=1,
        fine_tune_from="block_16_expand", sampling="sqrt", select_on="real",
    )
    run_dir = run(config)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["epochs_run"] == 2
    assert info["backbone"]["sha256"] and info["backbone"]["weights"].endswith("base.weights.h5")
    assert info["dataset"]["counts"]["val"] == {"with_mask": 3, "without_mask": 3, "incorrect_mask": 0}
    assert keras.models.load_model(run_dir / "model.keras").get_layer(BACKBONE_NAME)


def test_backbone_options_need_a_backbone_preset(tmp_path):
    with pytest.raises(ValueError, match="backbone preset"):
        TrainConfig(dataset_dir=tmp_path, out_dir=tmp_path, preset="compact", head_epochs=1, epochs=3).resolved()
    with pytest.raises(ValueError, match="needs real photos"):
        TrainConfig(dataset_dir=tmp_path, out_dir=tmp_path, select_on="real").resolved()
