"""Synthetic dataset builder and demo clip: real GAN weights, real face-mesh model, real files."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

import gate.assets
from gate.errors import DatasetError
from training.builder import BuildConfig, build_dataset, dress_face, example_rng, identity_splits, prepare_gan_face
from training.door_clip import make_door_clip
from training.gan_faces import GanFaceGenerator
from training.landmarks import FACE_OVAL, LEFT_EYE, NOSE_TIP, RIGHT_EYE, FaceLandmarker

PER_CLASS = 8


@pytest.fixture(scope="module")
def landmarker() -> FaceLandmarker:
    return FaceLandmarker(gate.assets.require(gate.assets.FACE_LANDMARK))


@pytest.fixture(scope="module")
def faces(landmarker: FaceLandmarker) -> list[tuple[np.ndarray, np.ndarray]]:
    generator = GanFaceGenerator(gate.assets.require(gate.assets.GAN_FACE_WEIGHTS))
    found = []
    for face in generator.generate(16, seed=5):
        canvas = prepare_gan_face(face)
        points = landmarker.detect(canvas)
        if points is not None:
            found.append((canvas, points))
    assert len(found) >= 8, "the landmarker should accept most GAN faces"
    return found[:8]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("build") / "ds"
    return out, build_dataset(BuildConfig(out, per_class=PER_CLASS, size=64, seed=3))


def test_gan_generator_makes_varied_64px_faces() -> None:
    faces = GanFaceGenerator(gate.assets.require(gate.assets.GAN_FACE_WEIGHTS)).generate(4, seed=1)
    assert faces.shape == (4, 64, 64, 3) and faces.dtype == np.uint8
    assert faces.std() > 20
    assert not np.array_equal(faces[0], faces[1])


def test_build_writes_counts_and_matching_manifest(built: tuple[Path, dict]) -> None:
    out, summary = built
    assert summary["counts"] == {c: PER_CLASS for c in ("with_mask", "without_mask", "incorrect_mask")}
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    files = sorted(str(p.relative_to(out)) for p in out.glob("*/*.png"))
    assert sorted(r["file"] for r in rows) == files
    for row in rows:
        assert row["file"].startswith(row["class"] + "/")
        assert (row["mask_placement"] == "") == (row["class"] == "without_mask")
    assert {r["mask_placement"] for r in rows if r["class"] == "with_mask"} == {"over_nose"}
    image = cv2.imread(str(out / files[0]))
    assert image.shape == (64, 64, 3)
    assert (out / "contact_sheet.png").is_file()


def test_same_identity_is_in_one_split_only(built: tuple[Path, dict]) -> None:
    out, _ = built
    splits: dict[str, set[str]] = {}
    for row in csv.DictReader(open(out / "manifest.csv")):
        splits.setdefault(row["face_index"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits.values())


def test_build_is_deterministic(built: tuple[Path, dict], tmp_path: Path) -> None:
    first, _ = built
    second = tmp_path / "again"
    build_dataset(BuildConfig(second, per_class=PER_CLASS, size=64, seed=3))
    for path in sorted(first.rglob("*.png")) + [first / "manifest.csv"]:
        assert (second / path.relative_to(first)).read_bytes() == path.read_bytes(), path


def test_refuses_to_overwrite_a_folder_unless_told(built: tuple[Path, dict]) -> None:
    out, _ = built
    with pytest.raises(DatasetError, match="not empty"):
        build_dataset(BuildConfig(out, per_class=1, size=64))


def _inside(polygon: np.ndarray, point: np.ndarray) -> bool:
    return cv2.pointPolygonTest(polygon.astype(np.float32), (float(point[0]), float(point[1])), False) >= 0


def test_correct_mask_covers_nose_and_mouth_and_stays_on_lower_face(faces: list) -> None:
    for number, (canvas, points) in enumerate(faces):
        alpha = dress_face(canvas, points, "with_mask", example_rng(0, "gan", number, "with_mask")).mask_alpha
        x, y = points[NOSE_TIP].astype(int)
        assert alpha[y, x] > 0.9, "nose tip covered"
        mouth = ((points[13] + points[14]) / 2).astype(int)
        assert alpha[mouth[1], mouth[0]] > 0.9, "mouth covered"
        eyes_y = max(points[list(RIGHT_EYE)][:, 1].max(), points[list(LEFT_EYE)][:, 1].max())
        ys, xs = np.nonzero(alpha > 0.5)
        scale = np.linalg.norm(points[454] - points[234])
        assert ys.min() > eyes_y - 0.05 * scale, "mask stays below the eyes"
        hull = cv2.convexHull(points[list(FACE_OVAL)].astype(np.float32))[:, 0]
        centre = points[NOSE_TIP]
        grown = centre + (hull - centre) * 1.35  # mask may hang under the chin and carry ear loops
        outside = [not _inside(grown, (px, py)) for px, py in zip(xs[::7], ys[::7])]
        assert np.mean(outside) < 0.02, "mask lies within the (enlarged) face outline"


def test_incorrect_mask_leaves_nose_tip_bare_but_covers_chin(faces: list) -> None:
    for number, (canvas, points) in enumerate(faces):
        for placement in ("below_nose", "on_chin"):
            example = dress_face(canvas, points, "incorrect_mask", example_rng(0, "gan", number, "incorrect_mask"), placement=placement)
            x, y = points[NOSE_TIP].astype(int)
            assert example.mask_alpha[y, x] < 0.1, f"{placement}: nose tip visible"
            chin = ((points[152] * 0.4 + points[17] * 0.6)).astype(int)
            assert example.mask_alpha[chin[1], chin[0]] > 0.5, f"{placement}: chin covered"
            mouth = ((points[13] + points[14]) / 2).astype(int)
            covered = example.mask_alpha[mouth[1], mouth[0]] > 0.5
            assert covered == (placement == "below_nose")


def test_bare_face_has_no_mask(faces: list) -> None:
    canvas, points = faces[0]
    assert dress_face(canvas, points, "without_mask", example_rng(0, "gan", 0, "without_mask")).mask_alpha.max() == 0


def test_own_photos_without_faces_or_corrupt_are_skipped(tmp_path: Path, faces: list, caplog: pytest.LogCaptureFixture) -> None:
    own = tmp_path / "own"
    own.mkdir()
    cv2.imwrite(str(own / "grey.png"), np.full((200, 200, 3), 128, np.uint8))
    (own / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cv2.imwrite(str(own / "face.png"), cv2.cvtColor(faces[0][0], cv2.COLOR_RGB2BGR))
    with caplog.at_level(logging.WARNING):
        summary = build_dataset(BuildConfig(tmp_path / "ds", per_class=2, size=48, own_faces_dirs=(own,), gan_faces=False))
    assert summary["skipped"] == {"own_unreadable": 1, "own_no_face": 1}
    assert sorted(summary["skipped_files"]) == ["broken.jpg", "grey.png"]
    assert "broken.jpg" in caplog.text
    assert summary["counts"] == {"with_mask": 2, "without_mask": 2, "incorrect_mask": 2}
    assert summary["sources"] == {"own": 6}


def _own_photo_folder(folder: Path, faces: list, copies: int = 1) -> Path:
    """Own photos: each GAN face saved ``copies`` times (copies of one face = one identity group)."""
    folder.mkdir()
    for index, (canvas, _) in enumerate(faces):
        for copy in range(copies):
            cv2.imwrite(str(folder / f"p{index}_{copy}.png"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    return folder


def _splits_by_identity(out: Path, groups: dict[str, str] | None = None) -> dict[str, set[str]]:
    by_identity: dict[str, set[str]] = {}
    with open(out / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            source = row["source"]
            identity = (groups or {}).get(source[4:], source) if source.startswith("own:") else f"gan:{row['face_index']}"
            by_identity.setdefault(identity, set()).add(row["split"])
    return by_identity


def test_identity_splits_give_every_split_its_share_and_keep_groups_together() -> None:
    names = [f"face{i}" for i in range(40)] * 2 + ["solo"]
    splits = identity_splits(names)
    assert {name: split for name, split in zip(names, splits)} == dict(zip(names[:40] + ["solo"], splits[:40] + splits[-1:]))
    counts = {split: splits[:40].count(split) for split in ("train", "val", "test")}
    assert counts == {"train": 20, "val": 10, "test": 10}
    assert sorted(identity_splits(["a", "b", "c"])) == ["test", "train", "val"]
    assert identity_splits(names[::-1]) == splits[::-1]  # the order of the files does not matter


def test_own_photos_with_gan_faces_are_split_by_identity(tmp_path: Path, faces: list) -> None:
    own = _own_photo_folder(tmp_path / "own", faces)
    out = tmp_path / "ds"
    build_dataset(BuildConfig(out, per_class=len(faces) + 8, size=32, own_faces_dirs=(own,)))
    by_identity = _splits_by_identity(out)
    assert all(len(splits) == 1 for splits in by_identity.values())
    own_splits = [next(iter(s)) for name, s in by_identity.items() if name.startswith("own:")]
    gan_splits = [next(iter(s)) for name, s in by_identity.items() if name.startswith("gan:")]
    assert len(own_splits) == len(faces) and sorted(set(own_splits)) == ["test", "train", "val"]
    assert sorted(set(gan_splits)) == ["test", "train", "val"]


def test_own_photos_alone_cycle_but_each_identity_group_stays_in_one_split(tmp_path: Path, faces: list) -> None:
    own = _own_photo_folder(tmp_path / "own", faces[:6], copies=2)
    groups_csv = tmp_path / "groups.csv"
    groups = {f"p{i}_{c}.png": f"g{i}" for i in range(6) for c in range(2)}
    groups_csv.write_text("file,group\n" + "".join(f"some/dir/{file},{group}\n" for file, group in groups.items()))
    out = tmp_path / "ds"
    build_dataset(BuildConfig(out, per_class=30, size=32, own_faces_dirs=(own,), own_faces_groups=groups_csv,
                              gan_faces=False))
    by_group = _splits_by_identity(out, groups)
    assert len(by_group) == 6 and all(len(splits) == 1 for splits in by_group.values())
    assert sorted({next(iter(s)) for s in by_group.values()}) == ["test", "train", "val"]


def test_own_photos_with_no_usable_face_fail_clearly(tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    cv2.imwrite(str(own / "grey.png"), np.full((100, 100, 3), 128, np.uint8))
    with pytest.raises(DatasetError, match="no usable face"):
        build_dataset(BuildConfig(tmp_path / "ds", per_class=1, own_faces_dirs=(own,), gan_faces=False))


def test_door_clip_is_readable_video_with_segments(tmp_path: Path) -> None:
    path = tmp_path / "door.mp4"
    info = make_door_clip(path, fps=5, size=(320, 240))
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        assert frame.shape == (240, 320, 3)
        frames += 1
    capture.release()
    assert frames == info["frames"] == round(info["duration_s"] * 5)
    assert [s["labels"] for s in info["segments"]] == [["with_mask"], ["without_mask"], ["incorrect_mask"], ["with_mask", "with_mask"]]
    assert all(s["start"] < s["hold"][0] < s["hold"][1] <= s["end"] <= info["duration_s"] for s in info["segments"])
