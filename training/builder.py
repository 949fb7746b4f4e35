"""Builds the synthetic masked-face dataset: ``out_dir/<class>/<source>-<index>.png``.

Faces come from the numpy DCGAN (source A) and/or the operator's own face-centred photos
(source B, ``own_faces_dirs``; whole scenes with small faces are out of scope — crop them
first). Each face gets 468 landmarks, then is rendered once *per class*: bare, masked
correctly, and masked incorrectly. Using the same identity in every class means the only
thing that differs between classes is the mask, so the model cannot shortcut through
identity, skin or background. The ``split`` column assigns whole identities to
train/val/test (50/25/25 %), so no face leaks from training into evaluation: GAN faces by
their latent index, own photos by the rank of a stable hash of their identity (the file name,
or the group a ``own_faces_groups`` CSV gives it, e.g. realmask's duplicate groups), so every
split gets its share of own photos and a photo's variants all land in its split.

Framing matches the door: the stored image is ``crop_face(image, box, DEFAULT_CROP_MARGIN)``
resized by ``model_input``, with ``box`` derived from the landmarks like a BlazeFace box.
Every random choice comes from a generator seeded by (seed, source, face, class), so the
same config produces bit-identical files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

import gate.assets
from gate.errors import DatasetError, ImageError
from gate.preprocess import DEFAULT_CROP_MARGIN, crop_face, model_input, read_image_rgb
from gate.types import Box
from training import face_variations as fv
from training.gan_faces import GanFaceGenerator
from training.landmarks import FaceLandmarker, face_box
from training.masks import render_mask, sample_mask_spec

log = logging.getLogger(__name__)

CLASSES = ("with_mask", "without_mask", "incorrect_mask")
PLACEMENTS_BY_CLASS = {"with_mask": ("over_nose",), "incorrect_mask": ("below_nose", "on_chin"), "without_mask": ()}
_SPLIT_FRACTIONS = (("train", 0.5), ("val", 0.25), ("test", 0.25))
_SOURCE_IDS = {"gan": 0, "own": 1}
#: Side of the working canvas a GAN face is rendered on (64 px face + blurred border, upscaled).
GAN_CANVAS = 288
_GAN_BORDER = 16
_OWN_MAX_SIDE = 1024
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
_MANIFEST_FIELDS = ("file", "class", "split", "source", "seed", "face_index", "mask_style", "mask_colour",
                    "mask_pattern", "mask_placement", "mask_valve", "variations")


@dataclass(frozen=True)
class BuildConfig:
    out_dir: Path
    per_class: int = 2000
    classes: tuple[str, ...] = CLASSES
    seed: int = 0
    size: int = 128
    own_faces_dirs: tuple[Path, ...] = ()  # folders of face-centred photos (source B)
    own_faces_groups: Path | None = None  # CSV with file,group columns: photos of one group share a split
    # "identity": own photos split 50/25/25 by identity like GAN faces; "train": every own photo
    # trains (when real photos validate elsewhere, e.g. realmask/val, none is wasted on val/test)
    own_faces_split: str = "identity"
    gan_faces: bool = True
    assets_dir: Path = gate.assets.DEFAULT_ASSETS_DIR
    overwrite: bool = False  # replace a previous build in out_dir (only the files a build writes)


@dataclass
class Example:
    """One rendered face before framing: the image, its mask alpha, landmarks and what was done."""

    image: np.ndarray
    mask_alpha: np.ndarray
    points: np.ndarray
    record: dict[str, object] = field(default_factory=dict)
    variations: list[str] = field(default_factory=list)


def prepare_gan_face(face: np.ndarray, canvas: int = GAN_CANVAS) -> np.ndarray:
    """64×64 GAN face → ``canvas``² image: blurred mirrored border (room for chin and mask), upscaled, sharpened."""
    b = _GAN_BORDER
    mirrored = cv2.copyMakeBorder(face, b, b, b, b, cv2.BORDER_REFLECT_101)
    background = cv2.GaussianBlur(mirrored, (0, 0), 4)
    weight = np.zeros(mirrored.shape[:2], np.float32)
    weight[b:-b, b:-b] = 1.0
    weight = cv2.GaussianBlur(weight, (0, 0), 2)[..., None]
    padded = (mirrored * weight + background * (1 - weight)).astype(np.float32)
    big = cv2.resize(padded, (canvas, canvas), interpolation=cv2.INTER_CUBIC)
    sharp = cv2.addWeighted(big, 1.6, cv2.GaussianBlur(big, (0, 0), 2.0), -0.6, 0)
    return np.clip(sharp + 0.5, 0, 255).astype(np.uint8)


def example_rng(seed: int, source: str, face_index: int, class_name: str, variant: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, _SOURCE_IDS[source], face_index, CLASSES.index(class_name), variant])


def dress_face(image: np.ndarray, points: np.ndarray, class_name: str, rng: np.random.Generator,
               appearance: bool = True, placement: str | None = None) -> Example:
    """Render ``class_name`` on a face: appearance variations, then the mask (if any), glasses, hands.

    ``placement`` forces where an incorrect mask sits (``below_nose`` / ``on_chin``).
    """
    if class_name not in PLACEMENTS_BY_CLASS:
        raise DatasetError(f"unknown class {class_name!r}; expected one of {CLASSES}")
    example = Example(image=image, mask_alpha=np.zeros(image.shape[:2], np.float32), points=points)
    placements = PLACEMENTS_BY_CLASS[class_name]
    if placement is not None and placement not in placements:
        raise DatasetError(f"placement {placement!r} does not fit class {class_name!r} (allowed: {placements})")
    if placement is None and placements:
        placement = str(rng.choice(placements))
    mouth_visible = placement in (None, "on_chin")

    def maybe(probability: float, apply: Callable) -> None:
        if appearance and rng.random() < probability:
            example.image, name = apply(example.image, points, rng)
            example.variations.append(name)

    maybe(0.25, fv.skin_tone)
    maybe(0.2, fv.beard)
    maybe(0.12, fv.makeup)
    maybe(0.25 if mouth_visible else 0.1, fv.lipstick)
    if mouth_visible:
        maybe(0.12, fv.open_smile)
    if placement is not None:
        spec = sample_mask_spec(rng, placement)
        example.image, example.mask_alpha = render_mask(example.image, points, spec, rng)
        example.record.update(spec.describe())
    maybe(0.2, fv.glasses)
    if class_name == "without_mask":
        maybe(0.15, fv.hand_over_mouth)
    return example


#: Head roll (degrees) and how far the detector's box wanders (fraction of its side, scale factor).
MAX_ROLL = 30.0
BOX_SHIFT, BOX_SCALE = 0.06, (0.9, 1.15)


def _roll(example: Example, rng: np.random.Generator) -> None:
    """Tilt the head (image and landmarks) about the face centre; borders replicate like a crop's."""
    angle = float(rng.uniform(-MAX_ROLL, MAX_ROLL))
    centre = tuple(float(v) for v in example.points.mean(axis=0))
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
    height, width = example.image.shape[:2]
    example.image = cv2.warpAffine(example.image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
    example.points = example.points @ matrix[:, :2].T + matrix[:, 2]
    example.variations.append(f"roll_{angle:+.0f}")


def _jittered_box(points: np.ndarray, rng: np.random.Generator) -> Box:
    """The detector's box is never exact: shift and scale it a little."""
    box = face_box(points)
    side = max(box.w, box.h)
    scale = rng.uniform(*BOX_SCALE)
    dx, dy = rng.normal(0, BOX_SHIFT * side, 2)
    cx, cy = box.center
    return Box(cx + dx - box.w * scale / 2, cy + dy - box.h * scale / 2, box.w * scale, box.h * scale)


def frame_example(example: Example, size: int, rng: np.random.Generator) -> np.ndarray:
    """Tilt, crop like the gate does (with the detector's jitter), camera-like degradations, resize to ``size``²."""
    if rng.random() < 0.5:
        _roll(example, rng)
    crop = crop_face(example.image, _jittered_box(example.points, rng), DEFAULT_CROP_MARGIN)
    for probability, apply in ((0.4, fv.white_balance), (0.12, fv.infrared), (0.12, fv.low_light),
                               (0.08, fv.backlight), (0.2, fv.low_resolution),
                               (0.2, fv.blur), (0.3, fv.sensor_noise)):
        if rng.random() < probability:
            crop, name = apply(crop, rng)
            example.variations.append(name)
    final = model_input(crop, (size, size))
    if rng.random() < 0.25:
        final, name = fv.jpeg(final, rng)
        example.variations.append(name)
    return final


@dataclass
class _Face:
    source: str          # "gan" or "own"
    label: str           # manifest source: "gan" or "own:<filename>"
    index: int           # position in its source stream (GAN latent index / photo number)
    image: np.ndarray
    points: np.ndarray
    split: str = "train"


class _FaceSource:
    """Yields faces with landmarks in build order, counting the ones without a usable face."""

    def __init__(self, config: BuildConfig, landmarker: FaceLandmarker) -> None:
        self._config = config
        self._landmarker = landmarker
        self.skipped: Counter[str] = Counter()
        self.skipped_files: list[str] = []

    def own_faces(self) -> list[_Face]:
        files = []
        for folder in self._config.own_faces_dirs:
            if not Path(folder).is_dir():
                raise DatasetError(f"own_faces_dirs: {folder} is not a folder")
            files += sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
        faces = []
        for number, path in enumerate(files):
            try:
                image = read_image_rgb(path)
            except ImageError as exc:
                log.warning("skipping %s: %s", path.name, exc)
                self.skipped["own_unreadable"] += 1
                self.skipped_files.append(path.name)
                continue
            longest = max(image.shape[:2])
            if longest > _OWN_MAX_SIDE:
                factor = _OWN_MAX_SIDE / longest
                image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
            points = self._landmarker.detect(image)
            if points is None:
                log.warning("skipping %s: no face found (source B expects face-centred photos)", path.name)
                self.skipped["own_no_face"] += 1
                self.skipped_files.append(path.name)
                continue
            faces.append(_Face("own", f"own:{path.name}", number, image, points))
        groups = _read_groups(self._config.own_faces_groups)
        if self._config.own_faces_split == "train":
            splits = ["train"] * len(faces)
        else:
            splits = identity_splits([groups.get(face.label[4:], face.label[4:]) for face in faces])
        for face, split in zip(faces, splits):
            face.split = split
        return faces

    def gan_faces(self) -> Iterator[_Face]:
        generator = GanFaceGenerator(gate.assets.require(gate.assets.GAN_FACE_WEIGHTS, self._config.assets_dir))
        for index, face in enumerate(generator.stream(self._config.seed)):
            canvas = prepare_gan_face(face)
            points = self._landmarker.detect(canvas)
            if points is None:
                self.skipped["gan_no_face"] += 1
                continue
            yield _Face("gan", "gan", index, canvas, points)


def _read_groups(path: Path | None) -> dict[str, str]:
    """``{photo file name: identity group}`` from a CSV with ``file`` and ``group`` columns (paths allowed)."""
    if path is None:
        return {}
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise DatasetError(f"own_faces_groups {path}: cannot read ({exc.strerror or exc})") from exc
    if rows and not {"file", "group"} <= rows[0].keys():
        raise DatasetError(f"own_faces_groups {path} has no 'file' and 'group' columns")
    return {Path(row["file"]).name: row["group"] for row in rows}


def identity_splits(identities: list[str]) -> list[str]:
    """The split of each photo: identities ranked by a stable hash, then cut 50/25/25 %.

    Ranking (rather than bucketing each hash) gives every split its share even for a handful of
    identities (val and test get at least one each from three on); hashing the identity (rather than
    the build order) makes the split independent of file order and keeps every photo of a group together.
    """
    unique = sorted(set(identities), key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    n = len(unique)
    held_out = [max(1, round(n * fraction)) if n >= 3 else 0 for _, fraction in _SPLIT_FRACTIONS[1:]]
    if n == 2:
        held_out = [1, 0]
    bounds = np.cumsum([n - sum(held_out), *held_out])
    by_identity = {name: _SPLIT_FRACTIONS[int(np.searchsorted(bounds, rank, side="right"))][0]
                   for rank, name in enumerate(unique)}
    return [by_identity[name] for name in identities]


def _split(ordinal: int, total: int) -> str:
    position, start = ordinal / max(total, 1), 0.0
    for name, fraction in _SPLIT_FRACTIONS:
        start += fraction
        if position < start:
            return name
    return _SPLIT_FRACTIONS[-1][0]


def _prepare_out_dir(config: BuildConfig) -> Path:
    out = Path(config.out_dir)
    written = [out / c for c in CLASSES] + [out / n for n in ("manifest.csv", "contact_sheet.png", "summary.json")]
    if out.exists() and any(out.iterdir()):
        if not config.overwrite:
            raise DatasetError(f"{out} is not empty: choose a new folder or set overwrite")
        for path in written:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    for class_name in config.classes:
        (out / class_name).mkdir(parents=True, exist_ok=True)
    return out


def _faces_in_order(config: BuildConfig, source: _FaceSource) -> Iterator[tuple[_Face, int]]:
    """(face, variant) pairs: own photos first, then GAN faces; own photos cycle when alone.

    Own photos carry their identity's split (every variant too); GAN faces are cut 50/25/25 % in
    latent order over the GAN faces this build needs.
    """
    own = source.own_faces()
    if not config.gan_faces:
        if not own:
            raise DatasetError(f"no usable face in {', '.join(map(str, config.own_faces_dirs))} and GAN faces are disabled")
        variant = 0
        while True:
            for face in own:
                yield face, variant
            variant += 1
    yield from ((face, 0) for face in own)
    gan_total = max(1, config.per_class - len(own))
    for ordinal, face in enumerate(source.gan_faces()):
        face.split = _split(ordinal, gan_total)
        yield face, 0


def build_dataset(config: BuildConfig, progress: Callable[[int, int], None] | None = None) -> dict:
    """Render ``per_class`` images for every class; returns a summary (counts, skips, paths)."""
    unknown = [c for c in config.classes if c not in CLASSES]
    if unknown or not config.classes:
        raise DatasetError(f"unknown classes {unknown}; expected some of {CLASSES}")
    if config.per_class < 1 or config.size < 8:
        raise DatasetError(f"per_class must be ≥ 1 and size ≥ 8 (got {config.per_class}, {config.size})")
    if not config.gan_faces and not config.own_faces_dirs:
        raise DatasetError("no face source: enable gan_faces or give own_faces_dirs")
    if config.own_faces_split not in ("identity", "train"):
        raise DatasetError(f"own_faces_split must be 'identity' or 'train' (got {config.own_faces_split!r})")
    out = _prepare_out_dir(config)
    landmarker = FaceLandmarker(gate.assets.require(gate.assets.FACE_LANDMARK, config.assets_dir))
    source = _FaceSource(config, landmarker)
    total = config.per_class * len(config.classes)
    rows: list[dict[str, object]] = []
    sheet: dict[str, list[np.ndarray]] = {c: [] for c in config.classes}
    faces = _faces_in_order(config, source)
    for ordinal in range(config.per_class):
        face, variant = next(faces)
        name = f"{face.source}-{face.index:06d}" + (f"-v{variant}" if variant else "")
        for class_name in config.classes:
            rng = example_rng(config.seed, face.source, face.index, class_name, variant)
            example = dress_face(face.image, face.points, class_name, rng)
            image = frame_example(example, config.size, rng)
            path = out / class_name / f"{name}.png"
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            rows.append({"file": f"{class_name}/{name}.png", "class": class_name,
                         "split": face.split, "source": face.label, "seed": config.seed,
                         "face_index": face.index, **{k: "" for k in _MANIFEST_FIELDS[6:11]}, **example.record,
                         "variations": ";".join(example.variations)})
            if len(sheet[class_name]) < 6:
                sheet[class_name].append(image)
        done = (ordinal + 1) * len(config.classes)
        if progress is not None:
            progress(done, total)
        if (ordinal + 1) % 200 == 0:
            log.info("built %d/%d images", done, total)
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    contact_sheet = out / "contact_sheet.png"
    _write_contact_sheet(sheet, contact_sheet)
    summary = {
        "counts": dict(Counter(str(r["class"]) for r in rows)),
        "splits": dict(Counter(str(r["split"]) for r in rows if r["class"] == config.classes[0])),
        "skipped": dict(source.skipped),
        "skipped_files": source.skipped_files,
        "sources": dict(Counter(str(r["source"]).split(":")[0] for r in rows)),
        "seed": config.seed, "size": config.size, "per_class": config.per_class,
        "own_faces_dirs": [str(d) for d in config.own_faces_dirs], "own_faces_split": config.own_faces_split,
        "own_faces_groups": str(config.own_faces_groups) if config.own_faces_groups else None,
        "out_dir": str(out), "manifest": str(manifest), "contact_sheet": str(contact_sheet),
    }
    (out / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k not in ("out_dir", "manifest", "contact_sheet")}, indent=2, sort_keys=True))
    log.info("dataset ready in %s: %s, skipped %s", out, summary["counts"], summary["skipped"])
    return summary


def _write_contact_sheet(sheet: dict[str, list[np.ndarray]], path: Path, tile: int = 128) -> None:
    """A labelled grid: one column per class, a few examples each."""
    columns = []
    for class_name, images in sheet.items():
        header = np.full((24, tile, 3), 255, np.uint8)
        cv2.putText(header, class_name, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        tiles = [cv2.resize(i, (tile, tile), interpolation=cv2.INTER_NEAREST if i.shape[0] < tile else cv2.INTER_AREA) for i in images]
        tiles += [np.zeros((tile, tile, 3), np.uint8)] * (6 - len(tiles))
        columns.append(np.vstack([header, *tiles]))
    grid = np.hstack([np.pad(c, ((0, 0), (0, 4), (0, 0)), constant_values=255) for c in columns])
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
