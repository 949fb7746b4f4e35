"""Parity check: does the converted model still decide like the Keras model it came from?

Run on the whole test split through :class:`gate.classifier.MaskClassifier` — the exact code
path the door uses (pixel table, quantisation, output reading) — and compared with Keras.
Quantisation that quietly costs accuracy is the failure this exists to catch.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from gate.classifier import MaskClassifier
from gate.errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParityReport:
    """Keras vs TFLite on the same images; ``drop_points`` = Keras accuracy − TFLite accuracy, in points."""

    images: int
    agreement: float
    keras_accuracy: float
    tflite_accuracy: float
    drop_points: float
    max_drop: float
    min_agreement: float
    per_class_tflite_accuracy: dict[str, float]
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failures": list(self.failures), "passed": self.passed}


class ParityError(ModelError):
    """The converted model strays too far from Keras; nothing was installed."""

    def __init__(self, report: ParityReport, model_path: Path) -> None:
        self.report = report
        super().__init__(
            f"{model_path}: conversion refused, parity check failed: " + "; ".join(report.failures)
        )


def keras_probabilities(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """N×C class probabilities from Keras (a sigmoid unit becomes [1−p, p])."""
    outputs = model.predict(images.astype(np.float32), batch_size=64, verbose=0)
    return _as_class_probabilities(outputs)


def tflite_probabilities(classifier: MaskClassifier, images: np.ndarray) -> np.ndarray:
    """N×C class probabilities from the TFLite model, one ``classify`` call per image."""
    classes = classifier.classes
    rows = []
    for image in images:
        scores = classifier.classify(image).scores
        rows.append([scores[name] for name in classes])
    return np.array(rows, dtype=np.float32)


def _as_class_probabilities(outputs: np.ndarray) -> np.ndarray:
    outputs = np.asarray(outputs, dtype=np.float32).reshape(len(outputs), -1)
    if outputs.shape[1] == 1:
        return np.concatenate([1.0 - outputs, outputs], axis=1)
    return outputs


def compare(
    keras_probs: np.ndarray,
    tflite_probs: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
    max_drop: float = 0.5,
    min_agreement: float = 0.99,
) -> ParityReport:
    """Agreement and accuracies of two prediction sets over the same labelled images."""
    keras_labels = keras_probs.argmax(axis=1)
    tflite_labels = tflite_probs.argmax(axis=1)
    agreement = float(np.mean(keras_labels == tflite_labels))
    keras_accuracy = float(np.mean(keras_labels == labels))
    tflite_accuracy = float(np.mean(tflite_labels == labels))
    drop = (keras_accuracy - tflite_accuracy) * 100.0
    per_class = {
        name: float(np.mean(tflite_labels[labels == index] == index))
        for index, name in enumerate(classes)
        if np.any(labels == index)
    }
    failures = []
    if drop > max_drop:
        failures.append(
            f"accuracy drops {drop:.2f} points (Keras {keras_accuracy:.2%} → TFLite "
            f"{tflite_accuracy:.2%}), more than the allowed {max_drop:g}"
        )
    if agreement < min_agreement:
        failures.append(
            f"agrees with Keras on {agreement:.2%} of {len(labels)} test images, "
            f"fewer than the required {min_agreement:.2%}"
        )
    return ParityReport(
        images=int(len(labels)),
        agreement=round(agreement, 6),
        keras_accuracy=round(keras_accuracy, 6),
        tflite_accuracy=round(tflite_accuracy, 6),
        drop_points=round(drop, 4),
        max_drop=max_drop,
        min_agreement=min_agreement,
        per_class_tflite_accuracy={k: round(v, 6) for k, v in per_class.items()},
        failures=tuple(failures),
    )


def check_parity(
    model: keras.Model,
    tflite_path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
    max_drop: float = 0.5,
    min_agreement: float = 0.99,
) -> tuple[ParityReport, np.ndarray]:
    """Compare Keras and the contracted TFLite model on ``images``; also return the TFLite probabilities."""
    classifier = MaskClassifier(tflite_path)
    keras_probs = keras_probabilities(model, images)
    tflite_probs = tflite_probabilities(classifier, images)
    report = compare(keras_probs, tflite_probs, labels, classes, max_drop, min_agreement)
    log.info(
        "parity on %d images: agreement %.2f%%, Keras %.2f%%, TFLite %.2f%% (%s)",
        report.images, report.agreement * 100, report.keras_accuracy * 100,
        report.tflite_accuracy * 100, "pass" if report.passed else "FAIL",
    )
    return report, tflite_probs


def recommend_min_confidence(
    probabilities: np.ndarray,
    labels: np.ndarray,
    target_accuracy: float = 0.98,
    candidates: tuple[float, ...] = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2)),
) -> float:
    """Lowest confidence threshold at which the faces kept are at least ``target_accuracy`` right.

    Below the threshold a face is 'uncertain' and never opens the door; a low threshold keeps
    the gate usable, a high one keeps it honest. If no candidate reaches the target, the
    highest candidate is returned (and logged): the model is weak and should stay strict.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    for threshold in candidates:
        kept = confidence >= threshold
        if kept.any() and correct[kept].mean() >= target_accuracy:
            log.info(
                "min_confidence %.2f: keeps %.1f%% of faces at %.2f%% accuracy",
                threshold, kept.mean() * 100, correct[kept].mean() * 100,
            )
            return float(threshold)
    log.warning("no confidence threshold reaches %.0f%% accuracy on these images; recommending %.2f",
                target_accuracy * 100, candidates[-1])
    return float(candidates[-1])
