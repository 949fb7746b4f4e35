"""Keras → TFLite conversion presets, and conversion of a training run into a contracted model.

Keras 3 on TF 2.21: ``tf.lite.TFLiteConverter.from_keras_model`` works (it exports a SavedModel
internally). A concrete-function path does not: int8 calibration then fails on the model's
resource variables (``READ_VARIABLE`` has no variable).

``convert_run`` never leaves a model without proof: it converts into a scratch folder beside
the destination, runs the parity check (:mod:`convert.parity`) over the whole test split, and
only moves ``X.tflite`` + its contract ``X.json`` into place when the check passes.
``X.parity.json`` is written either way, so a refusal can be read afterwards.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import platform
import tempfile
import warnings
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import gate
from convert.parity import (
    ParityError,
    ParityReport,
    check_parity,
    recommend_min_confidence,
    tflite_probabilities,
)
from gate.classifier import MaskClassifier
from gate.contract import (
    InputSpec,
    ModelContract,
    OutputSpec,
    Thresholds,
    contract_path,
    file_sha256,
    write_contract,
)
from gate.errors import DatasetError, ImageError, ModelError
from gate.preprocess import model_input, read_image_rgb

log = logging.getLogger(__name__)

IO_DTYPES = {"int8": tf.int8, "uint8": tf.uint8}
DEFAULT_CALIBRATION_SIZE = 300


class Preset(str, Enum):
    """How weights and activations are stored in the converted model."""

    FLOAT32 = "float32"  # reference: bit-for-bit the Keras maths
    FLOAT16 = "float16"  # half-size weights, float compute
    DYNAMIC = "dynamic"  # int8 weights, float activations: no calibration data needed
    INT8 = "int8"  # full-integer: int8 weights and activations, int8/uint8 input and output


def convert_model(
    model: keras.Model,
    preset: Preset | str,
    representative: np.ndarray | None = None,
    io_dtype: str = "int8",
) -> bytes:
    """Convert ``model`` to a TFLite flatbuffer.

    ``representative`` (uint8 or float N×H×W×3 raw pixels, as the model takes them) is required
    by ``int8``: it sets the activation ranges, so it must come through the same preprocessing
    as training images.
    """
    preset = Preset(preset)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if preset is not Preset.FLOAT32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if preset is Preset.FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    if preset is Preset.INT8:
        if representative is None or len(representative) == 0:
            raise ValueError("the int8 preset needs representative images for calibration")
        if io_dtype not in IO_DTYPES:
            raise ValueError(f"io_dtype must be one of {sorted(IO_DTYPES)}, not {io_dtype!r}")
        samples = np.asarray(representative, dtype=np.float32)
        converter.representative_dataset = lambda: ([sample[None]] for sample in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = IO_DTYPES[io_dtype]
        converter.inference_output_type = IO_DTYPES[io_dtype]
    # Keras prints the SavedModel signature it exports on the way, and the int8 path warns that
    # the input has no preset statistics (calibration provides them): keep our output readable.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


@dataclass(frozen=True)
class TrainingRun:
    """What conversion needs from a run folder written by ``maskgate-train``."""

    run_dir: Path
    model: keras.Model
    config: dict[str, Any]
    metrics: dict[str, Any]
    split: dict[str, Any]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.config["classes"])

    @property
    def input_size(self) -> tuple[int, int]:
        _, height, width, _ = self.model.input_shape
        return (int(height), int(width))

    @property
    def activation(self) -> str:
        """Read off the model itself: one output unit can only be a sigmoid."""
        return "sigmoid" if self.model.output_shape[-1] == 1 else "softmax"

    @property
    def pixel_range(self) -> tuple[float, float]:
        low, high = self.config.get("pixel_range", (0.0, 255.0))
        return (float(low), float(high))

    @property
    def preset(self) -> str:
        return str(self.config["preset"])

    @property
    def crop_margin(self) -> float:
        return float(self.config["crop_margin"])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing: is {path.parent} a maskgate-train run folder?") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc


def load_run(run_dir: str | Path) -> TrainingRun:
    """Load ``model.keras``, ``run.json``, ``metrics.json`` and ``split.json`` of a training run."""
    run_dir = Path(run_dir)
    config = _read_json(run_dir / "run.json")
    for key in ("classes", "preset", "crop_margin"):
        if key not in config:
            raise DatasetError(f"{run_dir / 'run.json'} has no '{key}'")
    metrics_path = run_dir / "metrics.json"
    metrics = _read_json(metrics_path) if metrics_path.exists() else {}
    split = _read_json(run_dir / "split.json")
    try:
        model = keras.models.load_model(run_dir / "model.keras", compile=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{run_dir / 'model.keras'}: cannot load the Keras model ({exc})") from exc
    run = TrainingRun(run_dir, model, config, metrics, split)
    outputs = 1 if run.activation == "sigmoid" else len(run.classes)
    if model.output_shape[-1] != outputs or config.get("activation", run.activation) != run.activation:
        raise ModelError(
            f"{run_dir}: model outputs {model.output_shape[-1]} value(s), but run.json says "
            f"{config.get('activation', 'softmax')} over classes {list(run.classes)}"
        )
    return run


def _dataset_dir(run: TrainingRun) -> Path:
    """The dataset folder as recorded at training time (relative paths: to here, or absolute in run.json)."""
    recorded = Path(run.split["dataset_dir"])
    candidates = [recorded]
    dataset = run.config.get("dataset")
    if not recorded.is_absolute() and isinstance(dataset, dict) and dataset.get("path"):
        candidates.append(Path(dataset["path"]))
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise DatasetError(f"dataset folder {recorded} of {run.run_dir / 'split.json'} not found")


def load_subset_images(
    run: TrainingRun, name: str, limit: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 N×H×W×3) and label indices of a split subset, via the shared preprocessing.

    ``limit`` draws a seeded random sample (calibration needs a few hundred images, not all).
    """
    entries = run.split[name]
    if limit is not None and limit < len(entries):
        chosen = np.random.default_rng(seed).choice(len(entries), size=limit, replace=False)
        entries = [entries[i] for i in sorted(chosen)]
    if not entries:
        raise DatasetError(f"{run.run_dir / 'split.json'}: the {name} split is empty")
    root = _dataset_dir(run)
    images, labels = [], []
    for entry in entries:
        try:
            images.append(model_input(read_image_rgb(root / entry["file"]), run.input_size))
        except ImageError as exc:
            raise DatasetError(f"{name} split image unreadable: {exc}") from exc
        if entry["label"] not in run.classes:
            raise DatasetError(f"{entry['file']}: label {entry['label']!r} is not one of {list(run.classes)}")
        labels.append(run.classes.index(entry["label"]))
    return np.stack(images), np.array(labels, dtype=np.int32)


def default_model_name(run: TrainingRun, preset: Preset | str) -> str:
    """``maskgate-compact-3c-int8.tflite``: architecture, class count, quantisation."""
    return f"maskgate-{run.preset}-{len(run.classes)}c-{Preset(preset).value}.tflite"


def _tool_versions() -> dict[str, str]:
    return {
        "tool": "maskgate-convert",
        "maskgate": gate.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _portable(value: Any) -> Any:
    """A contract ships to other machines: an absolute path becomes relative to here, else its name."""
    if not isinstance(value, str) or not Path(value).is_absolute():
        return value
    path = Path(value)
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else path.name


def _training_data(run: TrainingRun) -> dict[str, Any]:
    dataset = run.config.get("dataset")
    described = {k: _portable(v) for k, v in dataset.items()} if isinstance(dataset, dict) else {"description": dataset}
    return {**described, "run_dir": _portable(str(run.run_dir)), "splits": {
        name: len(run.split.get(name, [])) for name in ("train", "val", "test")
    }}


def build_contract(
    run: TrainingRun, preset: Preset, model_path: Path, parity: ParityReport | None, min_confidence: float,
    threshold_note: str | None = None, min_confidence_night: float | None = None,
) -> ModelContract:
    height, width = run.input_size
    metrics: dict[str, Any] = {"training": run.metrics}
    if parity is not None:
        metrics["test"] = parity.to_dict()
    if run.config.get("real_val"):
        metrics["real_val_keras"] = run.config["real_val"]
    if threshold_note:
        metrics["threshold"] = {"min_confidence": min_confidence, "min_confidence_night": min_confidence_night,
                                "chosen_on": threshold_note}
    return ModelContract(
        model_sha256=file_sha256(model_path),
        input=InputSpec(height=height, width=width, pixel_range=run.pixel_range, crop_margin=run.crop_margin),
        output=OutputSpec(activation=run.activation, classes=run.classes),
        thresholds=Thresholds(min_confidence=min_confidence, min_confidence_night=min_confidence_night),
        quantization=preset.value,
        preset=run.preset,
        training_data=_training_data(run),
        metrics=metrics,
        created_by=_tool_versions(),
    )


def _tune_min_confidence(
    run: TrainingRun, model_path: Path, test_probabilities: np.ndarray, test_labels: np.ndarray
) -> float:
    """Pick the threshold on the validation split (a threshold tuned on test would flatter it).

    Runs without validation images fall back to the test split.
    """
    if not run.split.get("val"):
        log.warning("no validation split: tuning min_confidence on the test split")
        return recommend_min_confidence(test_probabilities, test_labels)
    images, labels = load_subset_images(run, "val")
    return recommend_min_confidence(tflite_probabilities(MaskClassifier(model_path), images), labels)


@dataclass(frozen=True)
class ConversionResult:
    model_path: Path
    contract_path: Path
    parity_path: Path
    contract: ModelContract
    parity: ParityReport
    size_bytes: int


def parity_path(model_path: Path) -> Path:
    """``models/x.tflite`` → ``models/x.parity.json``."""
    return model_path.with_suffix(".parity.json")


def convert_run(
    run_dir: str | Path | TrainingRun,
    preset: Preset | str,
    out_path: str | Path,
    io_dtype: str = "int8",
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    max_drop: float = 0.5,
    min_agreement: float = 0.99,
    min_confidence: float | None = None,
    threshold_note: str | None = None,
    min_confidence_night: float | None = None,
) -> ConversionResult:
    """Convert a training run, check parity on its whole test split, write model + contract.

    ``min_confidence`` sets the contract's threshold (e.g. the with_mask floor chosen on the real-face
    check for a false-accept target, described by ``threshold_note``); without it the threshold is
    tuned on the validation split. ``min_confidence_night`` is the floor for greyscale (IR night-mode)
    crops (None: the day floor serves both).

    Raises :class:`convert.parity.ParityError` (nothing installed at ``out_path``) when the
    converted model loses more than ``max_drop`` accuracy points or agrees with Keras on fewer
    than ``min_agreement`` of the test images.
    """
    run = run_dir if isinstance(run_dir, TrainingRun) else load_run(run_dir)
    preset = Preset(preset)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    representative = None
    if preset is Preset.INT8:
        representative, _ = load_subset_images(run, "train", limit=calibration_size)
        log.info("calibrating int8 on %d training images", len(representative))
    flatbuffer = convert_model(run.model, preset, representative, io_dtype)
    test_images, test_labels = load_subset_images(run, "test")
    with tempfile.TemporaryDirectory(prefix=".convert-", dir=out_path.parent) as scratch:
        staged = Path(scratch) / out_path.name
        staged.write_bytes(flatbuffer)
        write_contract(staged, build_contract(run, preset, staged, None, 0.5))
        report, test_probabilities = check_parity(
            run.model, staged, test_images, test_labels, run.classes, max_drop, min_agreement
        )
        report_path = parity_path(out_path)
        report_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        if not report.passed:
            raise ParityError(report, out_path)
        threshold = (min_confidence if min_confidence is not None
                     else _tune_min_confidence(run, staged, test_probabilities, test_labels))
        contract = build_contract(run, preset, staged, report, threshold, threshold_note, min_confidence_night)
        write_contract(staged, contract)
        contract_path(staged).replace(contract_path(out_path))
        staged.replace(out_path)
    log.info("wrote %s (%d bytes) and its contract", out_path, len(flatbuffer))
    return ConversionResult(
        out_path, contract_path(out_path), report_path, contract, report, len(flatbuffer)
    )
