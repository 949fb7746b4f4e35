"""One training run: data → augmentation → model → fit → test evaluation → report.

Everything a later step needs lands in the run directory: ``model.keras`` (best
validation loss), ``history.json``, ``split.json`` (which files were train/val/test, so
conversion and benchmarks evaluate on the same test images), ``run.json`` (what was
trained, on what, how big, how long) and the report files of :mod:`training.report`.

Real photos (``real_dirs``, realmask-style folders) join the synthetic data: their ``train``
part the training split, their ``val`` part the validation split (and its own figures in
``run.json``); the test split stays synthetic. Real bare photos the builder rendered into its
val/test splits (``--own-faces``) are left out of training, so no identity crosses splits.

Long runs survive interruptions: after every epoch ``last.keras`` (model *and* optimizer
state) and ``progress.json`` (epochs done, history so far, best validation loss) are saved;
``resume`` continues from them. Early stopping's patience counter restarts on resume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from gate.errors import DatasetError
from gate.preprocess import DEFAULT_CROP_MARGIN
from training import report
from training.augment import make_augmenter
from training.dataset import (
    MANIFEST_NAME,
    Split,
    SplitSizes,
    Subset,
    class_names,
    concat,
    held_out_own_photos,
    load_real_folder,
    load_split,
)
from training.models import BACKBONES, compile_model, count_macs, make_model, recipe, set_backbone_trainable

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyper-parameters of a run. ``None`` means "the preset's recipe" (see training.models)."""

    dataset_dir: Path
    out_dir: Path
    preset: str = "compact"
    classes: int = 3
    input_size: int | None = None
    epochs: int = 30
    batch_size: int | None = None
    steps_per_epoch: int | None = None
    learning_rate: float | None = None
    seed: int = 0
    split: SplitSizes = field(default_factory=SplitSizes)
    patience: int | None = 8  # early stopping on val_loss; None or 0 = train all epochs
    label_smoothing: float = 0.0
    augment: str | None = None  # "original", "door", "real", "real-door" (training.augment) or "none"
    overwrite: bool = False
    real_dirs: tuple[Path, ...] = ()  # realmask-style folders of real photos (train/ and val/)
    resume: bool = False  # continue from last.keras + progress.json in out_dir
    init_from: Path | None = None  # start from this model's weights (fine-tuning; fresh optimizer and schedule)
    class_weights: tuple[float, ...] | None = None  # loss weight per class, in class order (None: all 1)
    # Backbone presets (training.models.BACKBONES): where the pretrained weights come from (a path to
    # Keras' *_no_top.h5, "imagenet" = Keras' download, None = random start), how many epochs train the
    # head alone on frozen features (at head_learning_rate), and from which backbone layer on the
    # remaining epochs fine-tune (BatchNorm stays frozen; None = the head only, throughout).
    backbone_weights: str | None = None
    head_epochs: int = 0
    head_learning_rate: float = 1e-3
    fine_tune_from: str | None = None
    # "shuffle": every training image once per pass; "sqrt": classes drawn equally often and, inside a
    # class, real and rendered images in proportion to the square root of their counts, so 52 real
    # wrongly-worn masks are seen often but cannot crowd out 2,000 rendered ones.
    sampling: str = "shuffle"
    # "all": validate (best checkpoint, early stopping) on the synthetic val split plus the real photos'
    # val parts; "real": on the real photos' val parts only — the figures that decide a door's worth.
    select_on: str = "all"

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` filled from the preset's recipe, validated."""
        base = recipe(self.preset)
        config = dataclasses.replace(
            self,
            dataset_dir=Path(self.dataset_dir),
            out_dir=Path(self.out_dir),
            input_size=self.input_size or base.input_size,
            batch_size=self.batch_size or base.batch_size,
            learning_rate=self.learning_rate or base.learning_rate,
            steps_per_epoch=self.steps_per_epoch or base.steps_per_epoch,
            augment=self.augment or base.augmentation,
            real_dirs=tuple(Path(d) for d in self.real_dirs),
        )
        class_names(config.classes)
        for name in ("train", "val", "test"):
            if getattr(config.split, name) < 1:
                raise DatasetError(f"the {name} split needs at least 1 image per class")
        if config.epochs < 1 or config.batch_size < 1 or config.input_size < 16:
            raise ValueError("epochs and batch size must be ≥ 1 and the input size ≥ 16 px")
        if config.sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {config.sampling!r} (choose from {', '.join(SAMPLINGS)})")
        if config.select_on not in ("all", "real") or (config.select_on == "real" and not config.real_dirs):
            raise ValueError("select_on must be 'all' or 'real', and 'real' needs real photos (--real)")
        if not 0 <= config.head_epochs < config.epochs and (config.head_epochs or config.fine_tune_from):
            raise ValueError(f"head_epochs must be in 0..epochs-1 (got {config.head_epochs} of {config.epochs})")
        backbone = config.preset in BACKBONES
        if not backbone and (config.head_epochs or config.fine_tune_from or config.backbone_weights):
            raise ValueError(f"head epochs, fine-tuning and backbone weights need a backbone preset "
                             f"({', '.join(BACKBONES)}), not {config.preset}")
        return config

    def as_json(self) -> dict:
        values = dataclasses.asdict(self)
        values["dataset_dir"], values["out_dir"] = str(self.dataset_dir), str(self.out_dir)
        values["real_dirs"] = [str(d) for d in self.real_dirs]
        values["init_from"] = str(self.init_from) if self.init_from else None
        return values


class EpochLog(keras.callbacks.Callback):
    """One log line per epoch (fit runs silently) and the epoch durations for run.json."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.monotonic() - self._started)
        logs = logs or {}
        log.info(
            "epoch %d/%d  loss %.4f  acc %.4f  val_loss %.4f  val_acc %.4f  (%.1f s)",
            epoch + 1, self.epochs, logs.get("loss", math.nan), logs.get("accuracy", math.nan),
            logs.get("val_loss", math.nan), logs.get("val_accuracy", math.nan), self.seconds[-1],
        )


def _targets(labels: np.ndarray, config: TrainConfig) -> np.ndarray:
    """Labels in the form the preset's loss wants."""
    if recipe(config.preset).activation == "sigmoid":
        return labels.astype(np.float32).reshape(-1, 1)
    if config.label_smoothing:
        return np.eye(config.classes, dtype=np.float32)[labels]
    return labels


SAMPLINGS = ("shuffle", "sqrt")


def sampling_weights(labels: np.ndarray, is_real: np.ndarray) -> dict[tuple[int, bool], float]:
    """``{(class, is real): share of draws}`` for ``sqrt`` sampling; the shares add up to 1.

    Every class present gets the same share; inside a class, real and rendered images split it in
    proportion to the square root of their counts (a middle way between drawing by count, which
    drowns a rare real kind, and drawing each kind equally, which repeats 52 crops to overfitting).
    """
    classes = sorted(set(int(label) for label in labels))
    weights = {}
    for cls in classes:
        groups = {real: int(np.sum((labels == cls) & (is_real == real))) for real in (False, True)}
        roots = {real: math.sqrt(count) for real, count in groups.items() if count}
        for real, root in roots.items():
            weights[(cls, real)] = root / sum(roots.values()) / len(classes)
    return weights


def training_dataset(images: np.ndarray, targets: np.ndarray, config: TrainConfig,
                     is_real: np.ndarray | None = None, labels: np.ndarray | None = None) -> tf.data.Dataset:
    """Shuffled (or ``sqrt``-sampled), endlessly repeated, augmented batches (sequential map keeps the seed meaningful)."""
    augmenter = make_augmenter(config.seed, config.augment) if config.augment != "none" else None

    def prepare(batch, target):
        batch = tf.cast(batch, tf.float32)
        return (augmenter(batch, training=True) if augmenter else batch), target

    def endless(rows: np.ndarray) -> tf.data.Dataset:
        return (tf.data.Dataset.from_tensor_slices((images[rows], targets[rows]))
                .shuffle(len(rows), seed=config.seed, reshuffle_each_iteration=True).repeat())

    if config.sampling == "sqrt":
        if labels is None or is_real is None:
            raise ValueError("sqrt sampling needs the labels and which images are real")
        shares = sampling_weights(labels, is_real)
        groups = [endless(np.flatnonzero((labels == cls) & (is_real == real))) for cls, real in shares]
        stream = tf.data.Dataset.sample_from_datasets(groups, weights=list(shares.values()), seed=config.seed)
    else:
        stream = endless(np.arange(len(images)))
    return stream.batch(config.batch_size).map(prepare).prefetch(2)


def evaluation_dataset(images: np.ndarray, targets: np.ndarray, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((images, targets)).batch(batch_size).map(
        lambda batch, target: (tf.cast(batch, tf.float32), target)
    )


def class_probabilities(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """N×classes probabilities; a sigmoid model's single unit becomes [P(class 0), P(class 1)]."""
    output = model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
    if output.shape[1] == 1:
        output = np.concatenate([1.0 - output, output], axis=1)
    return output


def dataset_fingerprint(dataset_dir: Path) -> dict:
    manifest = dataset_dir / MANIFEST_NAME
    return {
        "path": str(dataset_dir.resolve()),
        "manifest": str(manifest) if manifest.is_file() else None,
        "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None,
    }


CHECKPOINT, PROGRESS = "last.keras", "progress.json"


class Checkpoint(keras.callbacks.Callback):
    """After every epoch: the model with its optimizer state, and the history so far (atomic writes)."""

    def __init__(self, run_dir: Path, history: dict[str, list[float]], epoch_log: EpochLog, past_seconds: list[float]):
        super().__init__()
        self.run_dir = run_dir
        self.history = history
        self.epoch_log = epoch_log  # runs before this callback: its durations include this epoch
        self.past_seconds = past_seconds

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        staged = self.run_dir / f".{CHECKPOINT}"
        self.model.save(staged)
        staged.replace(self.run_dir / CHECKPOINT)
        history = {**self.history, "epoch_seconds": self.past_seconds + self.epoch_log.seconds}
        progress = {"epochs_done": epoch + 1, "history": history,
                    "best_val_loss": min(self.history.get("val_loss", [math.inf]))}
        staged = self.run_dir / f".{PROGRESS}"
        staged.write_text(json.dumps(progress, indent=1) + "\n")
        staged.replace(self.run_dir / PROGRESS)


def _prepare_run_dir(config: TrainConfig) -> Path:
    run_dir = config.out_dir
    if config.resume:
        if not (run_dir / PROGRESS).is_file() or not (run_dir / CHECKPOINT).is_file():
            raise DatasetError(f"{run_dir} has no {CHECKPOINT} + {PROGRESS} to resume from")
        return run_dir
    if (run_dir / "run.json").exists() and not config.overwrite:
        raise FileExistsError(f"{run_dir} already holds a training run; choose another --out or pass --overwrite")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _with_real_photos(split: Split, config: TrainConfig, classes: tuple[str, ...]) -> tuple[Split, Subset | None]:
    """``split`` with the real photos' train/val parts added (val: only them when ``select_on`` is "real");
    also the real val part alone (None without real photos)."""
    if not config.real_dirs:
        return split, None
    exclude = held_out_own_photos(config.dataset_dir)
    parts = [load_real_folder(d, classes, config.input_size, exclude) for d in config.real_dirs]
    real_val = concat(*(part["val"] for part in parts))
    merged = dataclasses.replace(split, train=concat(split.train, *(part["train"] for part in parts)),
                                 val=real_val if config.select_on == "real" else concat(split.val, real_val))
    log.info("with real photos: %d train, %d val images (%d own photos left out: in the build's val/test)",
             len(merged.train), len(merged.val), len(exclude))
    return merged, real_val


def run(config: TrainConfig) -> Path:
    """Train, evaluate and report one run; returns the run directory."""
    config = config.resolved()
    classes = class_names(config.classes)
    make_model(config.preset, config.classes, config.input_size)  # refuse a bad preset/classes pair before loading data
    if config.fine_tune_from:
        set_backbone_trainable(make_model(config.preset, config.classes, config.input_size), config.fine_tune_from)
    run_dir = _prepare_run_dir(config)
    keras.utils.set_random_seed(config.seed)
    log.info("run %s: preset %s, %d classes, %dpx, data %s", run_dir, config.preset, config.classes,
             config.input_size, config.dataset_dir)

    split = load_split(config.dataset_dir, classes, config.input_size, config.split, config.seed)
    split, real_val = _with_real_photos(split, config, classes)
    split.save_file_lists(run_dir / "split.json")

    steps = config.steps_per_epoch or math.ceil(len(split.train) / config.batch_size)
    done, past = 0, {}
    if config.resume:
        progress = json.loads((run_dir / PROGRESS).read_text())
        done, past = int(progress["epochs_done"]), progress["history"]
        model = keras.models.load_model(run_dir / CHECKPOINT)  # with its optimizer state and trainable flags
        log.info("resuming %s after epoch %d of %d", run_dir, done, config.epochs)
    else:
        model = make_model(config.preset, config.classes, config.input_size, config.backbone_weights)
        if config.backbone_weights:
            log.info("backbone weights: %s", config.backbone_weights)
        if config.init_from is not None:
            model.set_weights(keras.models.load_model(config.init_from, compile=False).get_weights())
            log.info("starting from the weights of %s", config.init_from)
    history_so_far = {key: list(values) for key, values in past.items() if key != "epoch_seconds"}
    epoch_log = EpochLog(config.epochs)
    checkpoint = Checkpoint(run_dir, history_so_far, epoch_log, list(past.get("epoch_seconds", [])))
    real_train = np.array([Path(name).is_absolute() for name in split.train.files])  # real photos: absolute names
    batches = training_dataset(split.train.images, _targets(split.train.labels, config), config,
                               is_real=real_train, labels=split.train.labels)
    validation = evaluation_dataset(split.val.images, _targets(split.val.labels, config), config.batch_size)
    started = time.monotonic()
    for stage in _stages(config):
        if done >= stage.last_epoch:
            continue
        if done <= stage.first_epoch:  # a stage starting now: its trainable set and a fresh optimizer
            if config.preset in BACKBONES:
                set_backbone_trainable(model, stage.unfreeze_from)
            model = compile_model(model, config.preset, stage.learning_rate, config.label_smoothing,
                                  total_steps=steps * (stage.last_epoch - stage.first_epoch))
        # else: resumed inside this stage; the checkpoint carries its trainable set and optimizer (schedule step included)
        best_so_far = min(history_so_far.get("val_loss", [math.inf]))
        callbacks = [
            keras.callbacks.ModelCheckpoint(run_dir / "model.keras", monitor="val_loss", save_best_only=True,
                                            initial_value_threshold=None if math.isinf(best_so_far) else best_so_far),
            epoch_log,
            checkpoint,
        ]
        if config.patience:
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                                           restore_best_weights=True))
        trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
        log.info("%s: %s (%d params, %d trainable, %.1f M MACs): %d steps × batch %d per epoch, epochs %d-%d, rate %g",
                 stage.name, model.name, model.count_params(), trainable, count_macs(model) / 1e6, steps,
                 config.batch_size, max(done, stage.first_epoch) + 1, stage.last_epoch, stage.learning_rate)
        model.fit(
            batches,
            steps_per_epoch=steps,
            epochs=stage.last_epoch,
            initial_epoch=max(done, stage.first_epoch),
            class_weight=dict(enumerate(config.class_weights)) if config.class_weights else None,
            validation_data=validation,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles (seeded)
            verbose=0,
        )
        done = len(history_so_far.get("val_loss", []))
        if done < stage.last_epoch:  # early stopping ended the run
            break
    training_seconds = time.monotonic() - started
    history = {key: list(values) for key, values in history_so_far.items()}
    history["epoch_seconds"] = list(past.get("epoch_seconds", [])) + epoch_log.seconds
    (run_dir / "history.json").write_text(json.dumps(history, indent=1) + "\n")

    best = keras.models.load_model(run_dir / "model.keras")
    metrics = evaluate(best, split, config, history, run_dir)
    real = real_figures(best, real_val, split.classes, config.batch_size) if real_val is not None else None
    _write_run_json(run_dir, config, split, best, history, metrics, training_seconds, real)
    return run_dir


@dataclass(frozen=True)
class Stage:
    """Epochs ``first_epoch``..``last_epoch`` (0-based start, exclusive end) with one trainable set and rate."""

    name: str
    first_epoch: int
    last_epoch: int
    learning_rate: float
    unfreeze_from: str | None  # backbone presets: None = backbone frozen


def _stages(config: TrainConfig) -> list[Stage]:
    """One stage, or for a backbone: the head on frozen features, then fine-tuning from ``fine_tune_from``."""
    if config.preset not in BACKBONES:
        return [Stage("training", 0, config.epochs, config.learning_rate, None)]
    if not config.head_epochs:
        return [Stage("fine-tuning", 0, config.epochs, config.learning_rate, config.fine_tune_from)]
    return [Stage("head on frozen features", 0, config.head_epochs, config.head_learning_rate, None),
            Stage(f"fine-tuning from {config.fine_tune_from or 'the head only'}", config.head_epochs,
                  config.epochs, config.learning_rate, config.fine_tune_from)]


def real_figures(model: keras.Model, subset: Subset, classes: tuple[str, ...], batch_size: int = 64) -> dict:
    """The real photos' validation figures at the door (grant = with_mask on top, argmax floor)."""
    probabilities = class_probabilities(model, subset.images, batch_size)
    figures = report.binary_metrics(subset.labels, probabilities, classes)
    log.info("real val: binary %.4f, false accept %.4f, false reject %.4f on %d photos",
             figures["binary_accuracy"], figures["false_accept"], figures["false_reject"], figures["n"])
    return figures


def evaluate(model: keras.Model, split: Split, config: TrainConfig, history: dict, run_dir: Path) -> dict:
    """Test-split metrics of the best checkpoint, plus the report files."""
    test = split.test
    loss = model.evaluate(evaluation_dataset(test.images, _targets(test.labels, config), config.batch_size),
                          verbose=0)[0]
    probabilities = class_probabilities(model, test.images, config.batch_size)
    return report.write_report(run_dir, history, test.labels, probabilities, split.classes, test.images, loss)


def _backbone_provenance(config: TrainConfig) -> dict | None:
    """Which pretrained weights a backbone run started from (the model card names the file and its SHA-256)."""
    if config.preset not in BACKBONES:
        return None
    weights = config.backbone_weights
    path = Path(weights) if weights not in (None, "imagenet") else None
    return {"preset": config.preset, "weights": weights or "none (random start)",
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path else None,
            "head_epochs": config.head_epochs, "fine_tune_from": config.fine_tune_from}


def _write_run_json(run_dir: Path, config: TrainConfig, split: Split, model: keras.Model,
                    history: dict, metrics: dict, training_seconds: float, real_val: dict | None = None) -> None:
    val_losses = history.get("val_loss", [])
    info = {
        "preset": config.preset,
        "classes": list(split.classes),
        "activation": recipe(config.preset).activation,
        "input_size": config.input_size,
        "color_order": "RGB",
        "pixel_range": [0.0, 255.0],
        "crop_margin": DEFAULT_CROP_MARGIN,
        "config": config.as_json(),
        "dataset": {**dataset_fingerprint(config.dataset_dir), "split_source": split.split_source,
                    "counts": split.counts(),
                    "skipped_files": len(split.skipped)},
        "params": int(model.count_params()),
        "macs": count_macs(model),
        "epochs_run": len(val_losses),
        "best_epoch": int(np.argmin(val_losses)) + 1 if val_losses else None,
        "training_seconds": round(training_seconds, 1),
        "test_accuracy": metrics["accuracy"],
        "real_val": real_val,
        "backbone": _backbone_provenance(config),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()},
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    log.info("run saved in %s (test accuracy %.4f)", run_dir, metrics["accuracy"])


def compare_variants(base: TrainConfig, presets: list[str], input_sizes: list[int]) -> Path:
    """Train each preset × input size with ``base``'s settings; write ``comparison.json`` in base.out_dir.

    This is how the default ``compact`` variant was chosen: validation accuracy against cost, and,
    with real photos (``base.real_dirs``), their validation figures, which are the ones to pick on.
    """
    rows = []
    for preset in presets:
        for size in input_sizes:
            run_dir = run(dataclasses.replace(base, preset=preset, input_size=size,
                                              out_dir=Path(base.out_dir) / f"{preset}-{size}px"))
            info = json.loads((run_dir / "run.json").read_text())
            history = json.loads((run_dir / "history.json").read_text())
            rows.append({
                "preset": preset, "input_size": size, "params": info["params"], "macs": info["macs"],
                "best_val_accuracy": max(history["val_accuracy"]), "best_val_loss": min(history["val_loss"]),
                "test_accuracy": info["test_accuracy"], "epochs_run": info["epochs_run"],
                **({f"real_val_{key}": info["real_val"][key] for key in ("binary_accuracy", "false_accept", "false_reject")}
                   if info.get("real_val") else {}),
                "seconds_per_epoch": round(float(np.mean(history["epoch_seconds"])), 1),
                "run_dir": str(run_dir),
            })
            log.info("compare: %s", rows[-1])
    table = Path(base.out_dir) / "comparison.json"
    table.write_text(json.dumps(rows, indent=2) + "\n")
    return table
