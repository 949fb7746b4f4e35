"""Load a folder-per-class face-crop dataset and split it deterministically.

Every image goes through :func:`gate.preprocess.read_image_rgb` and
:func:`gate.preprocess.model_input`, the same path the gate uses at the door, so the
model never learns from pixels it will not see in service. Images are already face crops.

When the folder has the builder's ``manifest.csv``, its ``split`` column decides which
split a file belongs to: the builder renders every face identity once per class and keeps
each identity in a single split, and a per-file random split would leak faces from
training into the test set. Without a manifest, files are split at random. Either way the
choice depends only on the *names* of the readable files and the seed (names are sorted
before shuffling), so the same files and seed give the same split whatever order the file
system lists them in.
"""

from __future__ import annotations

import csv
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gate.errors import DatasetError, ImageError
from gate.preprocess import model_input, read_image_rgb

log = logging.getLogger(__name__)

#: Canonical class order; a 2-class model uses the first two.
CLASS_ORDER = ("with_mask", "without_mask", "incorrect_mask")

#: Extensions OpenCV decodes; other files in a class folder (notes, .DS_Store) are ignored.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff",
     ".ppm", ".pgm", ".pbm", ".pnm", ".jp2", ".sr", ".ras"}
)

SPLIT_NAMES = ("train", "val", "test")
#: Written by training.builder; its ``split`` column keeps each face identity in one split.
MANIFEST_NAME = "manifest.csv"
_SPLIT_WORDS = {"train": "train", "val": "validation", "test": "test"}


def class_names(num_classes: int) -> tuple[str, ...]:
    """The class names of a ``num_classes`` model, in output order."""
    if num_classes not in (2, 3):
        raise DatasetError(f"a maskgate model has 2 or 3 classes, not {num_classes}")
    return CLASS_ORDER[:num_classes]


@dataclass(frozen=True)
class SplitSizes:
    """Images per class in each split (the original used 1000/500/500)."""

    train: int = 1000
    val: int = 500
    test: int = 500

    @property
    def total(self) -> int:
        return self.train + self.val + self.test

    def describe(self) -> str:
        return " + ".join(f"{getattr(self, name)} {_SPLIT_WORDS[name]}" for name in SPLIT_NAMES)


@dataclass(frozen=True)
class Subset:
    """One split: images (uint8 N×H×W×3 RGB), integer labels and the source files (relative)."""

    images: np.ndarray
    labels: np.ndarray
    files: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Split:
    """The train/val/test subsets plus what was skipped while loading."""

    dataset_dir: Path
    classes: tuple[str, ...]
    image_size: int
    seed: int
    train: Subset
    val: Subset
    test: Subset
    skipped: tuple[str, ...]
    split_source: str  # "manifest" (the builder's identity-grouped split) or "seeded" (random per file)

    def subset(self, name: str) -> Subset:
        return getattr(self, name)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split, e.g. ``{"train": {"with_mask": 1000, ...}, ...}``."""
        return {
            name: {
                cls: int(np.sum(self.subset(name).labels == index))
                for index, cls in enumerate(self.classes)
            }
            for name in SPLIT_NAMES
        }

    def file_lists(self) -> dict:
        """What ``split.json`` holds: enough for conversion/benchmarks to reuse the test images."""
        return {
            "dataset_dir": str(self.dataset_dir),
            "classes": list(self.classes),
            "seed": self.seed,
            "split_source": self.split_source,
            "image_size": self.image_size,
            "skipped": list(self.skipped),
            **{
                name: [
                    {"file": file, "label": self.classes[int(label)]}
                    for file, label in zip(self.subset(name).files, self.subset(name).labels)
                ]
                for name in SPLIT_NAMES
            },
        }

    def save_file_lists(self, path: Path) -> Path:
        path.write_text(json.dumps(self.file_lists(), indent=1) + "\n")
        return path


def list_class_files(dataset_dir: Path, classes: tuple[str, ...]) -> dict[str, list[Path]]:
    """Image files per class folder (recursive), sorted by relative path."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DatasetError(f"dataset folder {dataset_dir} does not exist")
    present = sorted(p.name for p in dataset_dir.iterdir() if p.is_dir())
    files = {}
    for cls in classes:
        folder = dataset_dir / cls
        if not folder.is_dir():
            raise DatasetError(
                f"class '{cls}' not found in {dataset_dir} (found: {', '.join(present) or 'nothing'})"
            )
        files[cls] = sorted(
            (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: p.relative_to(folder).as_posix(),
        )
    return files


def _decode(path: Path, size: int) -> np.ndarray | None:
    try:
        return model_input(read_image_rgb(path), (size, size))
    except ImageError as exc:
        log.debug("skipping %s", exc)
        return None


def _subset(rows: list[tuple[np.ndarray, str, int]], image_size: int) -> Subset:
    empty = np.zeros((0, image_size, image_size, 3), np.uint8)
    return Subset(
        images=np.stack([image for image, _, _ in rows]) if rows else empty,
        labels=np.array([label for _, _, label in rows], dtype=np.int32),
        files=tuple(file for _, file, _ in rows),
    )


def read_manifest_splits(dataset_dir: Path) -> dict[str, str] | None:
    """``{relative file: split}`` from the builder's manifest, or None when there is none."""
    manifest = dataset_dir / MANIFEST_NAME
    if not manifest.is_file():
        return None
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"file", "split"} <= rows[0].keys():
        raise DatasetError(f"{manifest} has no 'file' and 'split' columns")
    splits = {row["file"]: row["split"] for row in rows}
    unknown = sorted(set(splits.values()) - set(SPLIT_NAMES))
    if unknown:
        raise DatasetError(f"{manifest}: unknown split name(s) {', '.join(unknown)} (expected train, val, test)")
    return splits


def _choose(files: list[str], cls: str, index: int, sizes: SplitSizes, seed: int,
            manifest: dict[str, str] | None) -> dict[str, list[int]]:
    """Indices into ``files`` for each split (seeded; within the manifest's split when there is one)."""
    rng = np.random.default_rng([seed, index])
    if manifest is None:
        order = rng.permutation(len(files)).tolist()
        bounds = np.cumsum([0] + [getattr(sizes, name) for name in SPLIT_NAMES])
        return {name: order[bounds[i] : bounds[i + 1]] for i, name in enumerate(SPLIT_NAMES)}
    chosen = {}
    for name in SPLIT_NAMES:
        candidates = [i for i, file in enumerate(files) if manifest.get(file) == name]
        need = getattr(sizes, name)
        if len(candidates) < need:
            raise DatasetError(
                f"class '{cls}' has {len(candidates)} readable images in the manifest's "
                f"{_SPLIT_WORDS[name]} split, the run needs {need} — ask for fewer per class "
                f"or build the dataset with more"
            )
        chosen[name] = [candidates[i] for i in rng.permutation(len(candidates))[:need]]
    return chosen


#: Splits of a realmask-style folder of real photos (``<root>/<split>/<class>/*.jpg``).
REAL_SPLITS = ("train", "val")
#: Class folder names other real sets use for our classes (realcrowd: ``incorrect``).
REAL_FOLDER_ALIASES = {"incorrect_mask": ("incorrect_mask", "incorrect")}


def load_real_folder(
    root: str | Path, classes: tuple[str, ...], image_size: int, exclude: frozenset[str] = frozenset(),
    workers: int = 2,
) -> dict[str, Subset]:
    """The ``train`` and ``val`` subsets of a realmask-style folder of real face crops.

    Real photos come in fewer classes than the model has (realmask: no ``incorrect_mask``), so
    a class folder that is missing is simply absent, never an error; a split folder that is
    missing is empty. Files are named by absolute path (conversion and benchmarks find them
    from ``split.json`` wherever the run was made). ``exclude`` holds file *names* to leave
    out (photos whose identity sits in another split of the synthetic build).
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetError(f"real-photo folder {root} does not exist")
    present = [name for name in REAL_SPLITS if (root / name).is_dir()]
    if not present:
        raise DatasetError(f"real-photo folder {root} has neither train/ nor val/ (expected <split>/<class>/*.jpg)")
    subsets = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for split_name in REAL_SPLITS:
            rows: list[tuple[np.ndarray, str, int]] = []
            for index, cls in enumerate(classes):
                folders = [root / split_name / name for name in REAL_FOLDER_ALIASES.get(cls, (cls,))]
                paths = sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*")
                               if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.name not in exclude)
                images = pool.map(lambda path: _decode(path, image_size), paths)
                rows += [(image, str(path), index) for image, path in zip(images, paths) if image is not None]
            subsets[split_name] = _subset(rows, image_size)
    log.info("real photos %s at %dpx: %s", root, image_size,
             ", ".join(f"{len(subsets[name])} {name}" for name in REAL_SPLITS))
    return subsets


def concat(*subsets: Subset) -> Subset:
    """One subset made of several (in order)."""
    return Subset(images=np.concatenate([s.images for s in subsets]),
                  labels=np.concatenate([s.labels for s in subsets]).astype(np.int32),
                  files=tuple(f for s in subsets for f in s.files))


def held_out_own_photos(dataset_dir: str | Path) -> frozenset[str]:
    """Names of the own photos the builder put in val or test: they must not be trained on elsewhere."""
    manifest = Path(dataset_dir) / MANIFEST_NAME
    if not manifest.is_file():
        return frozenset()
    with open(manifest, newline="") as handle:
        return frozenset(row["source"][4:] for row in csv.DictReader(handle)
                         if row.get("source", "").startswith("own:") and row.get("split") != "train")


def load_split(
    dataset_dir: str | Path,
    classes: tuple[str, ...],
    image_size: int,
    sizes: SplitSizes = SplitSizes(),
    seed: int = 0,
    workers: int = 2,
) -> Split:
    """Decode every image of ``classes`` at ``image_size`` and split each class by ``sizes``.

    Unreadable files are skipped and reported (never fatal); a class with fewer readable
    images than ``sizes.total`` is a :class:`DatasetError` naming the numbers.
    """
    dataset_dir = Path(dataset_dir)
    files = list_class_files(dataset_dir, classes)
    manifest = read_manifest_splits(dataset_dir)
    parts: dict[str, list[tuple[np.ndarray, str, int]]] = {name: [] for name in SPLIT_NAMES}
    skipped: list[str] = []
    unlisted = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for index, cls in enumerate(classes):
            names = [path.relative_to(dataset_dir).as_posix() for path in files[cls]]
            if manifest is not None:
                unlisted += sum(name not in manifest for name in names)
                names = [name for name in names if name in manifest]
            images = list(pool.map(lambda name: _decode(dataset_dir / name, image_size), names))
            skipped += [name for image, name in zip(images, names) if image is None]
            readable = [(image, name) for image, name in zip(images, names) if image is not None]
            if len(readable) < sizes.total:
                raise DatasetError(
                    f"class '{cls}' has {len(readable)} readable images, the split needs "
                    f"{sizes.total} ({sizes.describe()})"
                )
            chosen = _choose([name for _, name in readable], cls, index, sizes, seed, manifest)
            for split_name, indices in chosen.items():
                parts[split_name] += [(*readable[i], index) for i in indices]
            log.info("class %s: %d readable images, %d used", cls, len(readable), sizes.total)
    if skipped:
        log.warning("skipped %d unreadable image(s): %s", len(skipped), ", ".join(skipped))
    if unlisted:
        log.warning("ignored %d image(s) that %s does not list", unlisted, dataset_dir / MANIFEST_NAME)
    log.info(
        "loaded %s at %dpx: %d train, %d val, %d test images (%d skipped; split from %s)",
        dataset_dir, image_size, *(len(parts[name]) for name in SPLIT_NAMES), len(skipped),
        "the manifest" if manifest is not None else f"seed {seed}",
    )
    subsets = {name: _subset(parts[name], image_size) for name in SPLIT_NAMES}
    return Split(
        dataset_dir=dataset_dir, classes=tuple(classes), image_size=image_size, seed=seed,
        skipped=tuple(skipped), split_source="seeded" if manifest is None else "manifest", **subsets,
    )
