"""Evaluation report of one training run: curves, confusion matrix, sample predictions, metrics.

Everything is written into the run directory so a run can be judged (and compared) without
re-running anything: ``maskgate-train report RUN_DIR`` prints where the files are.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support  # noqa: E402

log = logging.getLogger(__name__)

REPORT_FILES = {
    "curves": "curves.png",
    "confusion_matrix": "confusion_matrix.png",
    "predictions": "predictions.png",
    "classification_report": "classification_report.txt",
    "metrics": "metrics.json",
}
#: What training.train writes next to the report (listed by :func:`where` too).
RUN_FILES = {"model": "model.keras", "run_info": "run.json", "history": "history.json", "split": "split.json"}
PREDICTION_GRID = (4, 6)


def write_report(
    run_dir: Path,
    history: dict[str, list[float]],
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: tuple[str, ...],
    images: np.ndarray,
    loss: float,
) -> dict:
    """Write every report file for test ``labels`` vs ``probabilities`` (N×classes); return the metrics."""
    run_dir = Path(run_dir)
    predicted = probabilities.argmax(axis=1)
    metrics = compute_metrics(labels, predicted, classes, loss)
    (run_dir / REPORT_FILES["metrics"]).write_text(json.dumps(metrics, indent=2) + "\n")
    (run_dir / REPORT_FILES["classification_report"]).write_text(
        classification_report(labels, predicted, labels=range(len(classes)), target_names=list(classes),
                              digits=4, zero_division=0)
    )
    plot_curves(history, run_dir / REPORT_FILES["curves"])
    plot_confusion(np.array(metrics["confusion_matrix"]), classes, run_dir / REPORT_FILES["confusion_matrix"])
    plot_predictions(images, labels, probabilities, classes, run_dir / REPORT_FILES["predictions"])
    log.info("test accuracy %.4f on %d images; report in %s", metrics["accuracy"], metrics["n_test"], run_dir)
    return metrics


def compute_metrics(labels: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...], loss: float) -> dict:
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=range(len(classes)), zero_division=0
    )
    return {
        "accuracy": float(np.mean(labels == predicted)) if len(labels) else 0.0,
        "loss": float(loss),
        "n_test": int(len(labels)),
        "classes": list(classes),
        "per_class": {
            cls: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                  "support": int(support[i])}
            for i, cls in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=range(len(classes))).tolist(),
    }


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...],
                   floor: float = 0.5) -> dict:
    """The door's view: a face is granted when P(with_mask) ≥ ``floor`` (and with_mask is the top class).

    False accept = a face without a correct mask granted; false reject = a correctly masked face refused.
    """
    with_mask = classes.index("with_mask")
    p_mask = probabilities[:, with_mask]
    granted = (probabilities.argmax(axis=1) == with_mask) & (p_mask >= floor)
    masked = labels == with_mask
    correct = granted == masked
    return {
        "floor": float(floor), "n": int(len(labels)), "n_masked": int(masked.sum()), "n_unmasked": int((~masked).sum()),
        "binary_accuracy": float(correct.mean()) if len(labels) else 0.0,
        "false_accept": float(granted[~masked].mean()) if (~masked).any() else 0.0,
        "false_reject": float((~granted[masked]).mean()) if masked.any() else 0.0,
    }


def plot_curves(history: dict[str, list[float]], path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + metric, [])
            epochs = range(1, len(values) + 1)
            axis.plot(epochs, values, style, marker="o", markersize=3,
                      label=("validation " if prefix else "train ") + metric)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion(matrix: np.ndarray, classes: tuple[str, ...], path: Path) -> None:
    row_sums = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, row_sums, out=np.zeros(matrix.shape, float), where=row_sums > 0)
    figure, axes = plt.subplots(1, 2, figsize=(6 + 2 * len(classes), 2.5 + 1.2 * len(classes)))
    for axis, values, title, fmt in ((axes[0], matrix, "counts", "{:d}"),
                                     (axes[1], normalised, "normalised by true class", "{:.3f}")):
        axis.imshow(values, cmap="Blues", vmin=0, vmax=values.max() or 1)
        ticks = range(len(classes))
        axis.set_xticks(ticks, classes, rotation=30, ha="right")
        axis.set_yticks(ticks, classes)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(title)
        threshold = (values.max() or 1) / 2
        for (row, col), value in np.ndenumerate(values):
            axis.text(col, row, fmt.format(value.item()), ha="center", va="center",
                      color="white" if value > threshold else "black")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _sample_for_grid(labels: np.ndarray, predicted: np.ndarray, count: int) -> np.ndarray:
    """Mistakes first (they are what a reader wants to see), then an even spread of correct ones."""
    wrong = np.flatnonzero(labels != predicted)[: count // 2]
    right = np.flatnonzero(labels == predicted)
    take = min(count - len(wrong), len(right))
    spread = right[np.linspace(0, len(right) - 1, take).astype(int)] if take else right[:0]
    return np.concatenate([wrong, spread])


def plot_predictions(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                     classes: tuple[str, ...], path: Path) -> None:
    rows, cols = PREDICTION_GRID
    predicted = probabilities.argmax(axis=1)
    chosen = _sample_for_grid(labels, predicted, rows * cols)
    figure, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows))
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, chosen):
        guess, truth = predicted[index], labels[index]
        title = f"{classes[guess]} {probabilities[index, guess]:.2f}"
        if guess != truth:
            title += f"\n(true: {classes[truth]})"
        axis.imshow(images[index])
        axis.set_title(title, fontsize=8, color="black" if guess == truth else "red")
    figure.suptitle("test predictions: label + probability (red = wrong)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def where(run_dir: str | Path) -> dict[str, Path]:
    """The run's files (report, model, run info, split) that exist in ``run_dir``, by kind."""
    run_dir = Path(run_dir)
    files = {**REPORT_FILES, **RUN_FILES}
    return {kind: run_dir / name for kind, name in files.items() if (run_dir / name).is_file()}
