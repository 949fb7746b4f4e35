"""The real-face check: score a TFLite model on real, bare faces wearing rendered masks.

Why: synthetic test splits flatter a model (98 % there, 47 % false rejects on real masks).
This check measures on real people instead, the way the gate sees them:

1. photos from public packages (:mod:`training.real_photos`), faces found by the gate's own
   ``BlazeFaceDetector``; each face is cut out with room around it (``_REGION_MARGIN``) and
   scaled so its box is at most ``_MAX_FACE_PX`` wide;
2. on each face our renderer (:mod:`training.masks`) puts one correct mask per style family
   (``STYLES``), plus two nose-exposed placements (``incorrect_mask``); the bare face is kept;
3. every render is also seen under simulated door-camera conditions (``CONDITIONS``), then the
   detector runs again on that picture and its box is what the classifier crops, exactly as at
   the door (the bare face's box is used, and counted, when the detector misses);
4. each picture is classified by ``gate.classifier.MaskClassifier.classify`` with that box.

Identity groups (one person, or one group photo) are split by a stable hash into a ``choice``
half, for choosing models and setting thresholds, and a ``report`` half, held out by identity.
These photos are for measuring only, never for training.

Renders and boxes are cached under ``<photos>/cache/<key>/`` (keyed by ``RENDER_VERSION``, the
styles, the conditions and the renderer's source; one index per photo, named by its SHA-256, so new photos render
alone); the conditions are re-applied from seeded generators on every run, so a run is
deterministic and re-scoring another model costs only the classifier.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

import gate.assets
from gate.classifier import MaskClassifier
from gate.vision.detector import BlazeFaceDetector
from gate.errors import DatasetError, ImageError
from gate.preprocess import crop_face, model_input, read_image_rgb, square_around
from gate.settings import DetectorSettings
from gate.types import Box
from training import face_variations as fv
from training import fairness, landmarks, masks
from training.dataset import IMAGE_SUFFIXES, REAL_FOLDER_ALIASES
from training.landmarks import FaceLandmarker
from training.masks import MaskSpec, render_mask, sample_mask_spec
from training.real_photos import manifest_digest, read_manifest

log = logging.getLogger(__name__)

WITH, WITHOUT, INCORRECT = "with_mask", "without_mask", "incorrect_mask"
HALVES = ("choice", "report")
#: Bump when rendering or conditions change: the cache is keyed by it.
RENDER_VERSION = 2
_SPLIT_SALT = "maskgate-realcheck-1"
_REGION_MARGIN = 0.75     # region side = 2.5 × the face box: room for any crop margin ≤ 0.75
_MAX_FACE_PX = 160        # door cameras see faces of 40-200 px
_LANDMARK_MARGIN = 0.25
_MIN_FACE_PX = 40         # smaller faces in the photos are too coarse to render a mask on
_MAX_SPEC_TRIES = 2000

#: Mask style families, each a condition on the renderer's own random mask (so every family is
#: drawn from what the renderer makes; the acceptance test's weak spots get their own rows).
STYLES: dict[str, Callable[[MaskSpec], bool]] = {
    "surgical_colour": lambda s: s.style == "surgical" and s.colour in ("light_blue", "green", "pink"),
    "surgical_white": lambda s: s.style == "surgical" and s.colour == "white",
    "cloth_dark": lambda s: s.style in ("cloth", "surgical") and s.pattern == "plain" and s.colour in (
        "black", "navy", "charcoal", "burgundy", "olive", "denim", "brown", "red"),
    "cloth_light": lambda s: s.style == "cloth" and s.pattern == "plain" and s.colour in ("grey", "white"),
    "patterned": lambda s: s.style == "cloth" and s.pattern != "plain",
    "kn95_white": lambda s: s.style == "kn95" and s.colour == "white",
    "kn95_grey_black": lambda s: s.style == "kn95" and s.colour in ("grey", "black"),
    "skin_tone": lambda s: s.style == "skin",
}
NOSE_EXPOSED = ("below_nose", "on_chin")
#: Bare faces with what the acceptance test saw read as a mask: reported apart from the headline
#: (which stays comparable with the acceptance test's plain bare faces).
HARD_NEGATIVES: dict[str, Callable] = {"bare+lipstick": fv.lipstick, "bare+beard": fv.beard, "bare+hand": fv.hand_over_mouth}


@dataclass(frozen=True)
class Render:
    """One dressed face: the picture (region around the face), what it shows and where the face is."""

    face: str        # "<photo file>#<face index>"
    group: str
    half: str
    variant: str     # "bare", a STYLES key, or "nose:<placement>"
    truth: str
    box: Box         # the detector's box on the bare region


@dataclass(frozen=True)
class Sample:
    render: Render
    condition: str
    image: np.ndarray
    box: Box
    detected: bool   # False: the detector missed this picture and the bare face's box was used


def half_of(group: str) -> str:
    """Stable choice/report assignment of an identity group (adding photos never moves others)."""
    digest = hashlib.sha256(f"{_SPLIT_SALT}:{group}".encode()).digest()
    return HALVES[digest[0] % 2]


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# --------------------------------------------------------------------------- conditions


def _defocus_or_motion(image: np.ndarray, box: Box, rng: np.random.Generator) -> np.ndarray:
    """Blur scaled to the face (not the picture): defocus or a motion streak of 5-10 % of its width."""
    width = max(box.w, 8.0)
    if rng.random() < 0.5:
        return cv2.GaussianBlur(image, (0, 0), width * rng.uniform(0.02, 0.04))
    length = max(3, int(width * rng.uniform(0.05, 0.1)))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return cv2.filter2D(image, -1, kernel / max(float(kernel.sum()), 1e-6))


def _heavy_jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    quality = int(rng.integers(10, 21))
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _backlight(image: np.ndarray, box: Box, rng: np.random.Generator) -> np.ndarray:
    """A bright window behind the visitor: washed-out surroundings, an under-exposed face."""
    h, w = image.shape[:2]
    cx, cy = box.center
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sigma = max(box.w, box.h) * 0.6
    weight = np.exp(-(((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2)))[..., None]
    unit = image.astype(np.float32) / 255.0
    face = unit ** rng.uniform(1.2, 1.6) * rng.uniform(0.4, 0.6)
    background = unit + (1.0 - unit) * rng.uniform(0.5, 0.8)
    return np.clip((weight * face + (1 - weight) * background) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _small(image: np.ndarray, box: Box, rng: np.random.Generator) -> tuple[np.ndarray, Box]:
    """The face 28-36 px wide, as from a camera far from the door."""
    factor = float(rng.uniform(28, 36)) / max(box.w, 1.0)
    small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return small, Box(box.x * factor, box.y * factor, box.w * factor, box.h * factor)


def _tilt(image: np.ndarray, box: Box, rng: np.random.Generator) -> np.ndarray:
    """Head rolled 15-25° either way (the acceptance test's masked faces tilted > 15° were refused half the time)."""
    angle = float(rng.uniform(15, 25)) * (1 if rng.random() < 0.5 else -1)
    rotation = cv2.getRotationMatrix2D(box.center, angle, 1.0)
    return cv2.warpAffine(image, rotation, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _condition(name: str, image: np.ndarray, box: Box, rng: np.random.Generator) -> tuple[np.ndarray, Box]:
    if name == "clean":
        return image, box
    if name == "ir_grey":
        return fv.infrared(image, rng)[0], box
    if name == "low_light":
        return fv.low_light(image, rng)[0], box
    if name == "blur":
        return _defocus_or_motion(image, box, rng), box
    if name == "jpeg_10_20":
        return _heavy_jpeg(image, rng), box
    if name == "small_28_36px":
        return _small(image, box, rng)
    if name == "backlight":
        return _backlight(image, box, rng), box
    if name == "tilt_15_25deg":
        return _tilt(image, box, rng), box
    raise ValueError(f"unknown condition {name!r}")


CONDITIONS = ("clean", "ir_grey", "low_light", "blur", "jpeg_10_20", "small_28_36px", "backlight", "tilt_15_25deg")


# --------------------------------------------------------------------------- faces and renders


@dataclass
class _Face:
    key: str
    group: str
    region: np.ndarray
    box: Box
    points: np.ndarray


def _region(photo: np.ndarray, box: Box) -> tuple[np.ndarray, Box]:
    """The face with room around it, scaled so the face box is at most ``_MAX_FACE_PX`` wide."""
    region = crop_face(photo, box, _REGION_MARGIN)
    side = max(box.w, box.h) * (1 + 2 * _REGION_MARGIN)
    x0 = box.x + box.w / 2 - side / 2
    y0 = box.y + box.h / 2 - side / 2
    local = Box(box.x - round(x0), box.y - round(y0), box.w, box.h)
    factor = min(1.0, _MAX_FACE_PX / max(box.w, 1.0))
    if factor < 1.0:
        region = cv2.resize(region, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        local = Box(local.x * factor, local.y * factor, local.w * factor, local.h * factor)
    return region, local


def _landmarks(landmarker: FaceLandmarker, region: np.ndarray, box: Box) -> np.ndarray | None:
    """Face-mesh points in ``region``, found on a tight square around ``box`` (the mesh model wants the
    face to fill most of its input; on the whole region it misses about one face in five)."""
    square = square_around(box, _LANDMARK_MARGIN)
    points = landmarker.detect(crop_face(region, box, _LANDMARK_MARGIN))
    return None if points is None else points + (round(square.x), round(square.y))


def find_faces(photo: np.ndarray, name: str, group: str, detector: BlazeFaceDetector,
               landmarker: FaceLandmarker, skipped: dict[str, int]) -> list[_Face]:
    """Every usable face of one photo: found by the gate's detector, with landmarks for the masks."""
    faces = []
    detector.reset()
    for index, detection in enumerate(sorted(detector.detect(photo), key=lambda d: (d.box.x, d.box.y))):
        if detection.box.w < _MIN_FACE_PX:
            skipped["small"] = skipped.get("small", 0) + 1
            continue
        region, box = _region(photo, detection.box)
        points = _landmarks(landmarker, region, box)
        if points is None:
            skipped["no_landmarks"] = skipped.get("no_landmarks", 0) + 1
            continue
        faces.append(_Face(f"{name}#{index}", group, region, box, points))
    return faces


def _spec(rng: np.random.Generator, placement: str, wanted: Callable[[MaskSpec], bool]) -> MaskSpec:
    for _ in range(_MAX_SPEC_TRIES):
        spec = sample_mask_spec(rng, placement)
        if wanted(spec):
            return spec
    raise DatasetError(f"the mask sampler never produced the wanted style for {placement}")


def dress(face: _Face) -> list[tuple[str, str, np.ndarray, dict]]:
    """(variant, truth, picture, mask description) for the bare face, its hard negatives, every style and nose-exposed."""
    out = [("bare", WITHOUT, face.region, {})]
    for name, apply in HARD_NEGATIVES.items():
        out.append((name, WITHOUT, apply(face.region, face.points, _rng(face.key, name))[0], {}))
    for style, wanted in STYLES.items():
        rng = _rng(face.key, style)
        spec = _spec(rng, "over_nose", wanted)
        out.append((style, WITH, render_mask(face.region, face.points, spec, rng)[0], spec.describe()))
    for placement in NOSE_EXPOSED:
        rng = _rng(face.key, placement)
        spec = _spec(rng, placement, lambda s: True)
        out.append((f"nose:{placement}", INCORRECT, render_mask(face.region, face.points, spec, rng)[0], spec.describe()))
    return out


def _redetect(detector: BlazeFaceDetector, image: np.ndarray, expected: Box) -> Box | None:
    """The detector's box on this picture for the face at ``expected``, or None when it misses it."""
    detector.reset()
    best, best_iou = None, 0.2
    for detection in detector.detect(image):
        overlap = detection.box.iou(expected)
        if overlap > best_iou:
            best, best_iou = detection.box, overlap
    return best


# --------------------------------------------------------------------------- the cached sample set


def _cache_root(photos_dir: Path) -> Path:
    """Keyed by what the pictures depend on, the renderer's source included: committed figures always
    correspond to the renderer in the same commit (a changed renderer renders again)."""
    digest = hashlib.sha256(f"{RENDER_VERSION}:{list(STYLES)}:{NOSE_EXPOSED}:{list(HARD_NEGATIVES)}:{CONDITIONS}".encode())
    for module in (masks, fv, landmarks):
        digest.update(Path(module.__file__).read_bytes())
    return Path(photos_dir) / "cache" / digest.hexdigest()[:12]


def _box_list(box: Box) -> list[float]:
    return [round(box.x, 2), round(box.y, 2), round(box.w, 2), round(box.h, 2)]


class _Renderer:
    """Renders one photo's faces and records the detector's box for every (render, condition)."""

    def __init__(self, assets_dir: Path) -> None:
        self.detector = BlazeFaceDetector(DetectorSettings(min_face_px=8), assets_dir=assets_dir)
        self.landmarker = FaceLandmarker(gate.assets.require(gate.assets.FACE_LANDMARK, assets_dir))

    def photo(self, photos_dir: Path, entry: dict, root: Path) -> dict:
        stem = entry["sha256"][:16]
        skipped: dict[str, int] = {}
        faces = find_faces(read_image_rgb(Path(photos_dir) / entry["file"]), entry["file"], entry["group"],
                           self.detector, self.landmarker, skipped)
        records = []
        for face in faces:
            for variant, truth, picture, mask in dress(face):
                name = f"{stem}-{face.key.rsplit('#', 1)[1]}-{variant.replace(':', '-')}.png"
                partial = root / f"{name}.partial.png"  # another run may be reading the cache meanwhile
                cv2.imwrite(str(partial), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
                partial.replace(root / name)
                boxes = {}
                for condition in CONDITIONS:
                    image, box = _condition(condition, picture, face.box, _rng(face.key, variant, condition))
                    found = _redetect(self.detector, image, box)
                    boxes[condition] = {"box": _box_list(found or box), "detected": found is not None}
                records.append({"file": name, "face": face.key, "variant": variant, "truth": truth,
                                "box": _box_list(face.box), "mask": mask, "conditions": boxes})
        return {"photo": entry["file"], "sha256": entry["sha256"], "faces": len(faces), "skipped": skipped, "renders": records}


def build_cache(photos_dir: Path, assets_dir: Path = gate.assets.DEFAULT_ASSETS_DIR) -> Path:
    """Render every photo not rendered yet (one index file per photo, keyed by its SHA-256)."""
    photos_dir = Path(photos_dir)
    root = _cache_root(photos_dir)
    root.mkdir(parents=True, exist_ok=True)
    renderer = None
    for number, entry in enumerate(read_manifest(photos_dir)):
        index = root / f"{entry['sha256'][:16]}.json"
        if index.is_file():
            continue
        renderer = renderer or _Renderer(Path(assets_dir))
        record = renderer.photo(photos_dir, entry, root)
        partial = index.with_suffix(".partial")
        partial.write_text(json.dumps(record, indent=1))
        partial.replace(index)
        log.info("rendered photo %d (%s): %d face(s)", number + 1, entry["file"], record["faces"])
    return root


def load_samples(photos_dir: Path, root: Path) -> tuple[list[Sample], dict]:
    """Every (render, condition) picture with the box the classifier crops; plus a summary of the faces."""
    samples = []
    summary = {"photos": 0, "faces": 0, "skipped_faces": {}}
    for entry in read_manifest(photos_dir):
        index = json.loads((Path(root) / f"{entry['sha256'][:16]}.json").read_text())
        summary["photos"] += 1
        summary["faces"] += index["faces"]
        for reason, count in index["skipped"].items():
            summary["skipped_faces"][reason] = summary["skipped_faces"].get(reason, 0) + count
        for record in index["renders"]:
            picture = read_image_rgb(Path(root) / record["file"])
            render = Render(record["face"], entry["group"], half_of(entry["group"]), record["variant"],
                            record["truth"], Box(*record["box"]))
            for condition in CONDITIONS:
                image, _ = _condition(condition, picture, render.box, _rng(render.face, render.variant, condition))
                found = record["conditions"][condition]
                samples.append(Sample(render, condition, image, Box(*found["box"]), found["detected"]))
    if not samples:
        raise DatasetError(f"no usable face in the photos of {photos_dir}")
    return samples, summary


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Scored:
    """One classified picture: what it is, where it came from, and the model's verdict."""

    truth: str
    label: str
    p_with: float
    half: str = ""
    variant: str = ""
    condition: str = ""
    face: str = ""


def score_samples(classifier: MaskClassifier, samples: Iterable[Sample]) -> list[Scored]:
    """Classify each picture through the gate's classifier, cropping at the detector's box."""
    out = []
    for s in samples:
        result = classifier.classify(s.image, s.box)
        out.append(Scored(s.render.truth, result.label, float(result.scores.get(WITH, 0.0)), s.render.half,
                          s.render.variant, s.condition, s.render.face))
    return out


def score_folder(classifier: MaskClassifier, folder: Path) -> list[Scored]:
    """A folder of ready face crops with one sub-folder per class (``with_mask``, ``without_mask``, and
    ``incorrect_mask`` or an alias of it such as realcrowd's ``incorrect``), each image classified whole
    (``gate-cli test-image --assume-face``). ``face`` is the crop's path relative to ``folder``."""
    folder = Path(folder)
    class_dirs = {truth: [folder / name for name in REAL_FOLDER_ALIASES.get(truth, (truth,)) if (folder / name).is_dir()]
                  for truth in (WITH, WITHOUT, INCORRECT)}
    classes = [truth for truth, dirs in class_dirs.items() if dirs]
    if WITH not in classes or len(classes) < 2:
        raise DatasetError(f"{folder}: expected sub-folders {WITH}/ and {WITHOUT}/ (and optionally {INCORRECT}/ "
                           f"or {'/, '.join(REAL_FOLDER_ALIASES[INCORRECT][1:])}/)")
    out = []
    for truth in classes:
        files = sorted(p for d in class_dirs[truth] for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files:
            try:
                image = read_image_rgb(path)
            except ImageError as exc:
                log.warning("skipping %s", exc)
                continue
            result = classifier.classify(image, None)
            out.append(Scored(truth, result.label, float(result.scores.get(WITH, 0.0)),
                              face=path.relative_to(folder).as_posix()))
    return out


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def metrics(records: list[Scored], three_class: bool, floor: float = 0.0) -> dict:
    """The issue's figures: a grant needs the label ``with_mask`` and P(with_mask) ≥ ``floor``.

    ``false_accept``: bare or nose-exposed faces granted; ``false_reject``: correct masks refused;
    ``three_class`` and ``nose_recall`` only for models with an ``incorrect_mask`` output.
    """
    granted = [r.label == WITH and r.p_with >= floor for r in records]
    masked = [r.truth == WITH for r in records]
    positives = sum(masked)
    negatives = len(records) - positives
    false_accepts = sum(g and not m for g, m in zip(granted, masked))
    false_rejects = sum(m and not g for g, m in zip(granted, masked))
    nose = [r for r in records if r.truth == INCORRECT]
    bare = [r for r in records if r.truth == WITHOUT]
    return {
        "n": len(records), "n_masked": positives, "n_unmasked": negatives,
        "binary": _rate(len(records) - false_accepts - false_rejects, len(records)),
        "false_accept": _rate(false_accepts, negatives),
        "false_reject": _rate(false_rejects, positives),
        "three_class": _rate(sum(r.label == r.truth for r in records), len(records)) if three_class else None,
        "nose_recall": _rate(sum(r.label == INCORRECT for r in nose), len(nose)) if three_class else None,
        "bare_as_incorrect": _rate(sum(r.label == INCORRECT for r in bare), len(bare)) if three_class else None,
    }


def bootstrap_ci(records: list[Scored], floor: float = 0.0, rounds: int = 1000, seed: int = 0) -> dict:
    """95 % intervals of binary / false accept / false reject, resampling whole faces (a face's
    pictures are not independent: the same person under every mask and condition)."""
    faces = sorted({r.face for r in records})
    if not faces:
        return {}
    row = {face: i for i, face in enumerate(faces)}
    counts = np.zeros((len(faces), 4))  # masked, false rejects, unmasked, false accepts
    for r in records:
        granted = r.label == WITH and r.p_with >= floor
        if r.truth == WITH:
            counts[row[r.face]] += (1, not granted, 0, 0)
        else:
            counts[row[r.face]] += (0, 0, 1, granted)
    picks = np.random.default_rng(seed).integers(0, len(faces), (rounds, len(faces)))
    sums = counts[picks].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        figures = {"binary": 1 - (sums[:, 1] + sums[:, 3]) / (sums[:, 0] + sums[:, 2]),
                   "false_accept": sums[:, 3] / sums[:, 2], "false_reject": sums[:, 1] / sums[:, 0]}
    return {k: _interval(v) for k, v in figures.items()}


def _interval(values: np.ndarray) -> list[float] | None:
    """The 2.5th and 97.5th percentiles of the defined values (None when the figure never is: no such faces)."""
    values = values[~np.isnan(values)]
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)] if values.size else None


SWEEP_FLOORS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)


def safe_floor(records: list[Scored], max_false_accept: float = 0.01) -> float | None:
    """The lowest P(with_mask) floor whose false accept rate is ≤ ``max_false_accept`` (None if none is)."""
    negatives = sorted((r.p_with for r in records if r.truth != WITH and r.label == WITH), reverse=True)
    total = sum(r.truth != WITH for r in records)
    if not total:
        return None
    allowed = int(np.floor(max_false_accept * total + 1e-9))
    if allowed >= len(negatives):
        return 0.0
    # Granting needs p ≥ floor: the floor goes just above the (allowed+1)-th highest false accept,
    # rounded up to 4 decimals so that the quoted floor reproduces the quoted figures.
    return float(np.floor(negatives[allowed] * 1e4) + 1) / 1e4


def _source(face: str) -> str:
    """The package a face's photo came from (its folder in the photo set)."""
    return face.split("/", 1)[0]


def _top_and_floor(records: list[Scored], three: bool, floor: float | None) -> dict:
    return {"top_class": metrics(records, three), "at_safe_floor": None if floor is None else metrics(records, three, floor)}


def folder_names(folders: Sequence[Path]) -> list[str]:
    """Short report names of crop folders (``realcrowd/val``); whole paths when two would read alike."""
    names = [f"{Path(f).parent.name}/{Path(f).name}" for f in folders]
    return names if len(set(names)) == len(names) else [str(f) for f in folders]


def folder_figures(folder: Path, records: list[Scored], three: bool, check_floor: float | None) -> dict:
    """A crop folder's figures with the gate's label, at the floor set on the check's choice half, and at
    the folder's own floor for false accept ≤ 1 % (chosen on the folder itself: an optimistic figure)."""
    own = safe_floor(records)
    return {"path": str(folder), "gate_label": metrics(records, three),
            "at_check_floor": None if check_floor is None else metrics(records, three, check_floor),
            "own_floor": None if own is None else {"floor": own, "figures": metrics(records, three, own)}}


# --------------------------------------------------------------------------- skin-tone thirds

CHECK_SET = "real-face check"


def check_tones(samples: Iterable[Sample]) -> dict[str, float | None]:
    """Each face's tone, measured once on its bare, clean picture at the bare face's box: every picture
    of that face (any mask, any condition) belongs to its person's third."""
    return {s.render.face: fairness.face_ita(s.image, s.render.box) for s in samples
            if s.render.variant == "bare" and s.condition == "clean"}


def folder_tones(folder: Path, records: list[Scored]) -> dict[str, float | None]:
    """Each crop's tone (crops are named by their path in ``folder``)."""
    return {r.face: fairness.crop_ita(read_image_rgb(Path(folder) / r.face)) for r in records}


def tone_table(sets: dict[str, tuple[list[Scored], dict[str, float | None]]], three: bool,
               check_floor: float | None) -> dict | None:
    """False accept and false reject per skin-tone third of each set, and the gaps between thirds.

    Each set is cut at the tertiles of its *own* tones (each face or crop once), so each third
    holds a third of the set's faces: the sets' photos differ in lighting (dim street scenes read
    darker than studio portraits), so one pooled scale would mostly sort sets, not skin. A set
    with fewer than three measured tones is left out; None when no set has them.
    """
    rules = {"gate_label": 0.0, **({"at_check_floor": check_floor} if check_floor is not None else {})}
    table = {}
    for name, (records, tones) in sets.items():
        measured = [t for t in tones.values() if t is not None]
        if len(measured) < 3:
            continue
        edges = fairness.tertile_edges(measured)
        groups: dict[str, list[Scored]] = {third: [] for third in fairness.THIRDS}
        for r in records:
            if tones.get(r.face) is not None:
                groups[fairness.third_of(tones[r.face], edges)].append(r)
        thirds = {}
        for third, rs in groups.items():
            values = sorted({r.face: tones[r.face] for r in rs}.values())
            thirds[third] = {"faces": len(values), "ita": [round(values[0], 1), round(values[-1], 1)] if values else None,
                             **{rule: metrics(rs, three, floor) for rule, floor in rules.items()},
                             "ci95": {rule: bootstrap_ci(rs, floor) for rule, floor in rules.items()}}
        table[name] = {
            "edges": list(edges), "faces": len(measured), "unmeasured": len(tones) - len(measured), "thirds": thirds,
            "gap_points": {rule: {k: fairness.gap_points(t[rule][k] for t in thirds.values())
                                  for k in ("false_accept", "false_reject")} for rule in rules}}
    if not table:
        return None
    return {"goal_points": fairness.GOAL_GAP_POINTS, "sets": table, "goal": {rule: _tone_goal(table, rule) for rule in rules}}


def _tone_goal(table: dict, rule: str) -> dict:
    """Met when every gap that can be measured is within the goal; the worst gap and what could not be judged."""
    gaps = [(name, k, g) for name, s in table.items() for k, g in s["gap_points"][rule].items() if g is not None]
    worst = max(gaps, key=lambda item: item[2], default=None)
    return {"met": bool(gaps) and all(g <= fairness.GOAL_GAP_POINTS for _, _, g in gaps),
            "worst": None if worst is None else {"set": worst[0], "metric": worst[1], "gap_points": worst[2]},
            "unjudged": [f"{name}: {k}" for name, s in table.items() for k, g in s["gap_points"][rule].items() if g is None]}


def evaluate(classifier: MaskClassifier, samples: list[Sample], folders: Sequence[Path] = ()) -> dict:
    """Every table of the report for one model; ``folders`` are real crop folders (e.g. realmask/val)."""
    three = INCORRECT in classifier.classes
    scored = score_samples(classifier, samples)
    records = [r for r in scored if r.variant not in HARD_NEGATIVES]   # the headline set
    by_half = {h: [r for r in records if r.half == h] for h in HALVES}
    floor = safe_floor(by_half["choice"])
    result: dict = {
        "model": str(classifier.model_path), "model_sha256": classifier.model_sha256,
        "classes": list(classifier.classes), "contract_min_confidence": classifier.min_confidence,
        "overall": {name: metrics(rs, three) for name, rs in
                    (("choice", by_half["choice"]), ("report", by_half["report"]), ("all", records))},
        "overall_ci95": {h: bootstrap_ci(by_half[h]) for h in HALVES},
        "clean_vs_conditions": {
            f"{half}_{kind}": metrics([r for r in by_half[half] if (r.condition == "clean") == (kind == "clean")], three)
            for half in HALVES for kind in ("clean", "conditions")},
        "per_variant": {v: {h: metrics([r for r in by_half[h] if r.variant == v], three) for h in HALVES}
                        for v in ["bare", *STYLES, *(f"nose:{p}" for p in NOSE_EXPOSED)]},
        "per_condition": {c: {h: metrics([r for r in by_half[h] if r.condition == c], three) for h in HALVES}
                          for c in CONDITIONS},
        "sweep": [{"floor": f, "choice": metrics(by_half["choice"], three, f), "report": metrics(by_half["report"], three, f)}
                  for f in SWEEP_FLOORS],
        "safe_floor": None if floor is None else {
            "floor": floor, "choice": metrics(by_half["choice"], three, floor),
            "report": metrics(by_half["report"], three, floor)},
        "hard_negatives": {v: {h: _top_and_floor([r for r in scored if r.variant == v and r.half == h], three, floor)
                               for h in HALVES} for v in HARD_NEGATIVES},
        "per_source": {src: metrics([r for r in records if _source(r.face) == src], three)
                       for src in sorted({_source(r.face) for r in records})},
        "detector_missed": {h: _rate(sum(not s.detected for s in samples if s.render.half == h),
                                     sum(s.render.half == h for s in samples)) for h in HALVES},
        "detector_missed_by_class": {c: _rate(sum(not s.detected for s in samples if s.render.truth == c),
                                              sum(s.render.truth == c for s in samples)) for c in (WITH, WITHOUT, INCORRECT)},
    }
    tone_sets = {CHECK_SET: (records, check_tones(samples))}
    result["real_folders"] = {}
    for name, folder in zip(folder_names(folders), folders):
        folder_records = score_folder(classifier, folder)
        result["real_folders"][name] = folder_figures(folder, folder_records, three, floor)
        tone_sets[name] = (folder_records, folder_tones(folder, folder_records))
    stricter = floor if floor is not None and floor > classifier.min_confidence else None   # else: the gate label's figures
    result["fairness"] = tone_table(tone_sets, three, stricter)
    result["_records"] = scored
    return result


# --------------------------------------------------------------------------- report


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _acc(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _row(name: str, m: dict) -> str:
    return (f"| {name} | {m['n']} | {_acc(m['binary'])} | {_pct(m['false_accept'])} | {_pct(m['false_reject'])} | "
            f"{_acc(m['three_class'])} | {_acc(m['nose_recall'])} |")


_HEADER = ("| {first} | pictures | binary | false accept | false reject | 3-class | nose-exposed recall |\n"
           "|---|---:|---:|---:|---:|---:|---:|")


def check_markdown(name: str, r: dict) -> str:
    """The real-face check's tables for one model."""
    lines = [f"### {name}", "", f"`{r['model']}` (SHA-256 `{r['model_sha256'][:12]}…`), classes {', '.join(r['classes'])}.", "",
             "Label = the gate's label, as `gate-cli test-image --assume-face` prints it: the top class, "
             f"except that `with_mask` needs P(with_mask) ≥ the contract's floor ({r['contract_min_confidence']}).", "",
             _HEADER.format(first="half"), *(_row(k, v) for k, v in r["overall"].items()),
             *(_row(k.replace("_", ", "), v) for k, v in r["clean_vs_conditions"].items()), "",
             *(f"95 % interval, {h} half (resampling faces): binary {_acc(ci['binary'][0])}–{_acc(ci['binary'][1])}, "
               f"false accept {_pct(ci['false_accept'][0])}–{_pct(ci['false_accept'][1])}, "
               f"false reject {_pct(ci['false_reject'][0])}–{_pct(ci['false_reject'][1])}." for h, ci in r["overall_ci95"].items() if ci),
             "",
             "Per mask style / variant (report half; choice half in the JSON):", "",
             _HEADER.format(first="variant"), *(_row(k, v["report"]) for k, v in r["per_variant"].items()), "",
             "Bare faces with look-alikes drawn on them (not in the headline; false accept and bare read as "
             "`incorrect_mask`, report half):", "",
             "| variant | pictures | false accept | read as incorrect_mask | false accept at the safe floor |",
             "|---|---:|---:|---:|---:|",
             *(f"| {k} | {v['report']['top_class']['n']} | {_pct(v['report']['top_class']['false_accept'])} | "
               f"{_pct(v['report']['top_class']['bare_as_incorrect'])} | "
               f"{_pct((v['report']['at_safe_floor'] or {}).get('false_accept'))} |" for k, v in r["hard_negatives"].items()), "",
             "Per condition (report half):", "",
             _HEADER.format(first="condition"), *(_row(k, v["report"]) for k, v in r["per_condition"].items()), "",
             "Threshold sweep: a grant needs label `with_mask` and P(with_mask) ≥ floor.", "",
             "| floor | choice: false accept | choice: false reject | report: false accept | report: false reject |",
             "|---:|---:|---:|---:|---:|"]
    for row in r["sweep"]:
        c, p = row["choice"], row["report"]
        lines.append(f"| {row['floor']} | {_pct(c['false_accept'])} | {_pct(c['false_reject'])} | "
                     f"{_pct(p['false_accept'])} | {_pct(p['false_reject'])} |")
    safe = r["safe_floor"]
    lines.append("")
    if safe is None:
        lines.append("No floor: the choice half has no unmasked pictures.")
    else:
        lines.append(f"Lowest floor with false accept ≤ 1 % on the choice half: **{safe['floor']}** → on the held-out "
                     f"report half false accept {_pct(safe['report']['false_accept'])}, false reject "
                     f"{_pct(safe['report']['false_reject'])} (binary {_acc(safe['report']['binary'])}).")
    missed = r["detector_missed_by_class"]
    lines.append(f"Detector missed the face (bare face's box used instead): choice {_pct(r['detector_missed']['choice'])}, "
                 f"report {_pct(r['detector_missed']['report'])}; masked {_pct(missed[WITH])}, bare {_pct(missed[WITHOUT])}, "
                 f"nose-exposed {_pct(missed[INCORRECT])}.")
    lines += ["", "Per source package (both halves together — a source is not a held-out unit):", "",
              _HEADER.format(first="source"), *(_row(k, v) for k, v in r["per_source"].items())]
    return "\n".join(lines)


def folders_markdown(r: dict) -> str:
    """The real crop folders, each under three rules; empty when none was scored."""
    if not r.get("real_folders"):
        return ""
    check_floor = (r.get("safe_floor") or {}).get("floor")
    lines = ["Real crop folders, each crop classified whole (as `gate-cli test-image --assume-face`); false accept counts "
             "bare and wrongly-worn masks granted; a folder's own floor (false accept ≤ 1 % on that folder) is chosen on the "
             "folder itself, so its figures are optimistic:", "",
             "| folder | rule | crops | binary | false accept | false reject | 3-class | wrongly-worn recall |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    contract = r["contract_min_confidence"]
    for name, f in sorted(r["real_folders"].items()):   # the JSON keeps keys sorted: the same order either way
        rules = [("gate label", f["gate_label"])]
        if f["at_check_floor"] is not None:
            rules.append((_floor_rule(check_floor, contract, "check's floor, its choice half"), f["at_check_floor"]))
        if f["own_floor"] is not None:
            rules.append((_floor_rule(f["own_floor"]["floor"], contract, "own floor, optimistic"), f["own_floor"]["figures"]))
        lines += [f"| {name} |" + _row(rule, m)[1:] for rule, m in rules]
    return "\n".join(lines)


def _floor_rule(floor: float, contract: float, what: str) -> str:
    """How a floor applies on top of the gate label (which already needs the contract's floor)."""
    if floor > contract:
        return f"P(with_mask) ≥ {floor} ({what})"
    return f"{what}: {floor}, no stricter than the contract's {contract:g} (= gate label)"


_TONE_RULES = {"gate_label": "gate label", "at_check_floor": "at the check's floor"}


def fairness_markdown(r: dict) -> str:
    """False accept / false reject per skin-tone third, the gaps, and whether the goal is met."""
    tone = r.get("fairness")
    if tone is None:
        return "Skin-tone thirds: fewer than three faces with a measurable tone; not measured."
    rules = list(tone["goal"])
    lines = ["Skin-tone thirds: individual typology angle (ITA) of the visible upper-face skin (forehead to upper "
             "cheeks, skin-like pixels only, median L* and b*); each set cut at the tertiles of its own tones (each face "
             "or crop once; the ITA range column says what a third covers). The real-face check: both halves, a face's "
             "tone measured on its bare, clean picture and given to all its pictures (any mask, any condition). ITA is "
             "apparent colour: lighting moves it. In brackets: 95 % intervals from resampling the faces (crops) of the "
             "third; a third of few faces cannot show a 2-point gap."
             + ("" if "at_check_floor" in rules else " The check's floor is no stricter than the contract's, so the "
                "gate label is the only rule."), "",
             "| set | third | ITA range | faces | pictures | " + " | ".join(
                 f"{_TONE_RULES[rule]}: false accept | {_TONE_RULES[rule]}: false reject" for rule in rules) + " |",
             "|---|---|---|---:|---:|" + "---:|---:|" * len(rules)]
    for name, s in sorted(tone["sets"].items()):
        for third in fairness.THIRDS:
            t = s["thirds"][third]
            span = "—" if t["ita"] is None else f"{t['ita'][0]}° to {t['ita'][1]}°"
            lines.append(f"| {name} | {third} | {span} | {t['faces']} | {t['gate_label']['n']} | " + " | ".join(
                f"{_with_ci(t[rule]['false_accept'], t['ci95'][rule].get('false_accept'))} | "
                f"{_with_ci(t[rule]['false_reject'], t['ci95'][rule].get('false_reject'))}" for rule in rules) + " |")
        gaps = s["gap_points"]
        lines.append(f"| {name} | **gap (points)** | | {s['faces']} (+{s['unmeasured']} unmeasured) | | " + " | ".join(
            f"{_points(gaps[rule]['false_accept'])} | {_points(gaps[rule]['false_reject'])}" for rule in rules) + " |")
    lines.append("")
    for rule in rules:
        goal = tone["goal"][rule]
        worst = goal["worst"]
        verdict = "**met**" if goal["met"] else "**not met**"
        detail = "" if worst is None else f" (largest: {worst['set']}, {worst['metric'].replace('_', ' ')}, {worst['gap_points']} points)"
        unjudged = f"; not judged (a third without such faces): {', '.join(goal['unjudged'])}" if goal["unjudged"] else ""
        lines.append(f"Goal gap ≤ {tone['goal_points']:g} points between thirds, {_TONE_RULES[rule]}: {verdict}{detail}{unjudged}.")
    return "\n".join(lines)


def _with_ci(value: float | None, interval: list[float] | None) -> str:
    """A rate with its 95 % interval, e.g. ``2.1 % (0.4–4.0)``."""
    if value is None or interval is None:
        return _pct(value)
    return f"{_pct(value)} ({100 * interval[0]:.1f}–{100 * interval[1]:.1f})"


def _points(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def model_markdown(name: str, r: dict) -> str:
    """The whole report of one model: the check, the crop folders, the skin-tone thirds."""
    return "\n\n".join(part for part in (check_markdown(name, r), folders_markdown(r), fairness_markdown(r)) if part)


def write_report(out_prefix: Path, results: dict[str, dict], summary: dict, command: str) -> tuple[Path, Path]:
    """``<out_prefix>.md`` and ``<out_prefix>.json``: figures only, no pictures."""
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    clean = {name: {k: v for k, v in r.items() if not k.startswith("_")} for name, r in results.items()}
    payload = {"command": command, "photos": summary, "render_version": RENDER_VERSION,
               "styles": list(STYLES), "nose_exposed": list(NOSE_EXPOSED),
               "hard_negatives": list(HARD_NEGATIVES), "conditions": list(CONDITIONS), "models": clean}
    json_path = out_prefix.with_suffix(".json")
    json_path.write_text(json.dumps(payload, indent=1, sort_keys=True))
    halves = summary.get("halves", {})
    text = ["# Real-face check", "",
            "Real, bare faces from photos shipped inside public packages (never committed, never trained on), found by the "
            "gate's BlazeFace detector, masks rendered by `training.masks` (one per style family, plus nose-exposed), "
            "simulated door-camera conditions, classified by `gate.classifier` at the detector's box.", "",
            f"Reproduce: `{command}`", "",
            f"{summary.get('photos')} photos from {len(summary.get('packages', []))} packages, {summary.get('faces')} faces, "
            f"{summary.get('groups')} identity groups (choice {halves.get('choice', {}).get('groups')} groups / "
            f"{halves.get('choice', {}).get('faces')} faces, report {halves.get('report', {}).get('groups')} groups / "
            f"{halves.get('report', {}).get('faces')} faces). Each face: bare, {len(STYLES)} mask styles, "
            f"{len(NOSE_EXPOSED)} nose-exposed placements, {len(HARD_NEGATIVES)} look-alikes on the bare face "
            f"({', '.join(HARD_NEGATIVES)}), each under {len(CONDITIONS)} conditions ({', '.join(CONDITIONS)}).",
            "", "Sources: " + "; ".join(f"{p['package']} ({p['licence']})" for p in summary.get("packages", [])) + ".", ""]
    text += [model_markdown(name, r) + "\n" for name, r in clean.items()]
    md_path = out_prefix.with_suffix(".md")
    md_path.write_text("\n".join(text))
    return md_path, json_path


def contact_sheet(path: Path, samples: list[Sample], records: list[Scored], per_row: int = 12, tile: int = 80, count: int = 72) -> Path:
    """Mistakes of the report half (then a few correct ones), as the classifier saw them, labelled.
    Pictures of people: write it only under a git-ignored folder."""
    pairs = [(s, r) for s, r in zip(samples, records) if r.half == "report"]
    wrong = [p for p in pairs if (p[1].label == WITH) != (p[1].truth == WITH)]
    right = [p for p in pairs if (p[1].label == WITH) == (p[1].truth == WITH)]
    step = max(1, len(wrong) // count) if wrong else 1
    chosen = (wrong[::step] + right[:: max(1, len(right) // 12)])[:count]
    tiles = []
    for sample, record in chosen:
        crop = model_input(crop_face(sample.image, sample.box, 0.2), (tile, tile))
        colour = (255, 60, 60) if (record.label == WITH) != (record.truth == WITH) else (60, 220, 60)
        cv2.rectangle(crop, (0, 0), (tile - 1, tile - 1), colour, 2)
        for line, text in enumerate((f"{record.variant[:12]}", f"{record.condition[:12]}", f"{record.label[:7]} {record.p_with:.2f}")):
            cv2.putText(crop, text, (3, 11 + 10 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(crop)
    tiles += [np.zeros((tile, tile, 3), np.uint8)] * ((-len(tiles)) % per_row)
    rows = [np.hstack(tiles[i : i + per_row]) for i in range(0, len(tiles), per_row)] or [np.zeros((tile, tile, 3), np.uint8)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return Path(path)


def photo_summary(photos_dir: Path, samples: list[Sample], cache_summary: dict) -> dict:
    entries = read_manifest(photos_dir)
    renders = {s.render.face: s.render for s in samples}
    packages = {e["package"]: e["licence"] for e in entries}
    return {
        **cache_summary,
        "groups": len({r.group for r in renders.values()}),
        "halves": {h: {"groups": len({r.group for r in renders.values() if r.half == h}),
                       "faces": sum(r.half == h for r in renders.values())} for h in HALVES},
        "packages": [{"package": k, "licence": v} for k, v in sorted(packages.items())],
        "manifest_digest": manifest_digest(entries),
    }
