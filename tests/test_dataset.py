"""Dataset loading and splitting: unreadable files skipped and named, clear errors, deterministic split."""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from gate.errors import DatasetError
from training.dataset import CLASS_ORDER, SplitSizes, class_names, held_out_own_photos, load_real_folder, load_split

SIZES = SplitSizes(train=4, val=2, test=2)


def draw_face(path: Path, class_index: int, variant: int) -> None:
    """A crude cv2 'face': skin disc, plus a blue mask over mouth (0), nothing (1) or mouth only (2)."""
    image = np.full((40, 40, 3), 30 + variant * 7 % 90, np.uint8)
    cv2.circle(image, (20, 20), 14, (120, 160, 210), -1)
    if class_index == 0:
        cv2.rectangle(image, (9, 20), (31, 33), (200, 120, 40), -1)
    elif class_index == 2:
        cv2.rectangle(image, (9, 26), (31, 33), (200, 120, 40), -1)
    cv2.imwrite(str(path), image)


def make_dataset(root: Path, counts: dict[str, int], order_seed: int | None = None) -> Path:
    jobs = [(cls, i) for cls, count in counts.items() for i in range(count)]
    if order_seed is not None:
        random.Random(order_seed).shuffle(jobs)
    for cls, i in jobs:
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        draw_face(folder / f"{cls}_{i:03d}.{'png' if i % 2 else 'jpg'}", CLASS_ORDER.index(cls), i)
    return root


def test_unreadable_files_are_skipped_counted_and_named(tmp_path, caplog):
    root = make_dataset(tmp_path / "data", {"with_mask": 8, "without_mask": 8})
    (root / "with_mask" / "random.jpg").write_bytes(np.random.default_rng(1).bytes(500))
    (root / "with_mask" / "empty.png").write_bytes(b"")
    full = (root / "without_mask" / "without_mask_001.png").read_bytes()
    (root / "without_mask" / "truncated.png").write_bytes(full[: len(full) // 2])
    with caplog.at_level(logging.WARNING, logger="training.dataset"):
        split = load_split(root, class_names(2), 24, SIZES, seed=0)
    assert sorted(split.skipped) == ["with_mask/empty.png", "with_mask/random.jpg", "without_mask/truncated.png"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "3 unreadable" in warnings[0]
    for name in ("random.jpg", "empty.png", "truncated.png"):
        assert name in warnings[0]
    assert split.file_lists()["skipped"] == list(split.skipped)


def test_arrays_have_model_input_shape_and_labels(tmp_path):
    root = make_dataset(tmp_path / "data", {"with_mask": 8, "without_mask": 8})
    split = load_split(root, class_names(2), 24, SIZES, seed=0)
    assert split.train.images.shape == (8, 24, 24, 3) and split.train.images.dtype == np.uint8
    assert split.counts() == {"train": {"with_mask": 4, "without_mask": 4},
                              "val": {"with_mask": 2, "without_mask": 2},
                              "test": {"with_mask": 2, "without_mask": 2}}
    for subset in (split.train, split.val, split.test):
        for file, label in zip(subset.files, subset.labels):
            assert file.startswith(split.classes[label] + "/")
    all_files = split.train.files + split.val.files + split.test.files
    assert len(set(all_files)) == len(all_files)


def test_missing_class_names_it_and_what_was_found(tmp_path):
    root = make_dataset(tmp_path / "data", {"with_mask": 8, "without_mask": 8})
    with pytest.raises(DatasetError) as error:
        load_split(root, class_names(3), 24, SIZES)
    assert str(error.value) == (
        f"class 'incorrect_mask' not found in {root} (found: with_mask, without_mask)"
    )


def test_too_few_images_states_the_numbers(tmp_path):
    root = make_dataset(tmp_path / "data", {"with_mask": 6, "without_mask": 8})
    (root / "with_mask" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError) as error:
        load_split(root, class_names(2), 24, SIZES)
    assert str(error.value) == (
        "class 'with_mask' has 6 readable images, the split needs 8 (4 train + 2 validation + 2 test)"
    )


def test_split_depends_on_names_and_seed_not_listing_order(tmp_path):
    counts = {"with_mask": 10, "without_mask": 10}
    first = load_split(make_dataset(tmp_path / "a", counts, order_seed=1), class_names(2), 24, SIZES, seed=3)
    second = load_split(make_dataset(tmp_path / "b", counts, order_seed=2), class_names(2), 24, SIZES, seed=3)
    other_seed = load_split(tmp_path / "a", class_names(2), 24, SIZES, seed=4)
    for name in ("train", "val", "test"):
        assert first.subset(name).files == second.subset(name).files
        np.testing.assert_array_equal(first.subset(name).images, second.subset(name).images)
    assert first.test.files != other_seed.test.files


def test_three_classes_use_canonical_order_and_two_ignore_the_third(tmp_path):
    root = make_dataset(tmp_path / "data", {"incorrect_mask": 8, "without_mask": 8, "with_mask": 8})
    three = load_split(root, class_names(3), 24, SIZES)
    assert three.classes == ("with_mask", "without_mask", "incorrect_mask")
    assert sorted(set(three.train.labels.tolist())) == [0, 1, 2]
    assert all(f.startswith("incorrect_mask/") for f, lbl in zip(three.test.files, three.test.labels) if lbl == 2)
    two = load_split(root, class_names(2), 24, SIZES)
    assert not any(f.startswith("incorrect_mask/") for f in two.train.files + two.val.files + two.test.files)
    with pytest.raises(DatasetError):
        class_names(4)


def test_nested_folders_and_split_json(tmp_path):
    root = make_dataset(tmp_path / "data", {"with_mask": 8, "without_mask": 8})
    nested = root / "with_mask" / "batch2"
    nested.mkdir()
    shutil.move(str(root / "with_mask" / "with_mask_000.jpg"), nested / "w.jpg")
    (root / "with_mask" / "notes.txt").write_text("not an image, ignored")
    split = load_split(root, class_names(2), 24, SplitSizes(5, 2, 1))
    listed = split.train.files + split.val.files + split.test.files
    assert "with_mask/batch2/w.jpg" in listed
    saved = split.save_file_lists(tmp_path / "split.json")
    data = json.loads(saved.read_text())
    assert data["classes"] == ["with_mask", "without_mask"]
    assert [row["file"] for row in data["test"]] == list(split.test.files)


def write_manifest(root: Path, split_of_face: dict[int, str]) -> None:
    """A builder-style manifest: face i of every class belongs to split_of_face[i]."""
    lines = ["file,class,split"]
    for cls in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for path in sorted((root / cls).iterdir()):
            face = int(path.stem.rsplit("_", 1)[1])
            lines.append(f"{cls}/{path.name},{cls},{split_of_face[face]}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")


def test_manifest_split_keeps_each_face_in_its_split(tmp_path):
    root = make_dataset(tmp_path / "data", {"with_mask": 12, "without_mask": 12})
    split_of_face = {i: ("train" if i < 6 else "val" if i < 9 else "test") for i in range(12)}
    write_manifest(root, split_of_face)
    split = load_split(root, class_names(2), 24, SplitSizes(5, 3, 2), seed=0)
    assert split.split_source == "manifest"
    for name in ("train", "val", "test"):
        faces = {int(Path(f).stem.rsplit("_", 1)[1]) for f in split.subset(name).files}
        assert all(split_of_face[face] == name for face in faces), name


def test_manifest_split_too_small_names_the_split(tmp_path):
    root = make_dataset(tmp_path / "data", {"with_mask": 12, "without_mask": 12})
    write_manifest(root, {i: ("train" if i < 10 else "test") for i in range(12)})
    with pytest.raises(DatasetError, match="has 0 readable images in the manifest's validation split, the run needs 2"):
        load_split(root, class_names(2), 24, SplitSizes(4, 2, 2))


def make_real_folder(root: Path, counts: dict[str, dict[str, int]]) -> Path:
    """A realmask-style folder: ``root/<split>/<class>/*.jpg`` (real photos come in two classes)."""
    for split, per_class in counts.items():
        for cls, count in per_class.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                draw_face(folder / f"{split}_{cls}_{i}.jpg", CLASS_ORDER.index(cls), i)
    return root


def test_real_folder_loads_both_splits_with_missing_classes_and_exclusions(tmp_path):
    root = make_real_folder(tmp_path / "real", {"train": {"with_mask": 3, "without_mask": 4},
                                                "val": {"with_mask": 2, "without_mask": 1}})
    (root / "train" / "with_mask" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "train" / "with_mask" / "notes.txt").write_text("ignored")
    parts = load_real_folder(root, class_names(3), 24, exclude=frozenset({"train_without_mask_0.jpg"}))
    assert len(parts["train"]) == 6 and len(parts["val"]) == 3
    assert parts["train"].images.shape == (6, 24, 24, 3)
    assert sorted(parts["train"].labels.tolist()) == [0, 0, 0, 1, 1, 1]  # no incorrect_mask folder: no error
    assert all(Path(file).is_absolute() and Path(file).is_file() for file in parts["train"].files)
    assert not any("train_without_mask_0.jpg" in file for file in parts["train"].files)
    with pytest.raises(DatasetError, match="neither train"):
        load_real_folder(tmp_path, class_names(2), 24)


def test_own_photos_the_build_held_out_are_named(tmp_path):
    (tmp_path / "manifest.csv").write_text(
        "file,class,split,source\n"
        "with_mask/own-0.png,with_mask,train,own:a.jpg\nwith_mask/own-1.png,with_mask,val,own:b.jpg\n"
        "with_mask/own-2.png,with_mask,test,own:c.jpg\nwith_mask/gan-3.png,with_mask,test,gan\n")
    assert held_out_own_photos(tmp_path) == {"b.jpg", "c.jpg"}
    assert held_out_own_photos(tmp_path / "nowhere") == frozenset()
