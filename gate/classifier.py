"""The mask classifier: a TFLite model plus its contract, run through LiteRT.

Everything the model needs to know about its input (size, pixel range, crop margin) and its
output (activation, class order) comes from the contract, so swapping a float model for an
int8 one, or a 2-class model for a 3-class one, needs no code change.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gate.contract import ModelContract, load_model_contract
from gate.errors import ImageError, ModelError
from gate.litert import load_interpreter
from gate.preprocess import face_input, is_greyscale
from gate.settings import ClassifierSettings
from gate.types import WITH_MASK, Box, Classification

log = logging.getLogger(__name__)


def _pixel_table(contract: ModelContract, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """Lookup table uint8 pixel → input tensor value (pixel range mapping + quantisation in one step).

    A 256-entry table turns per-frame preprocessing into a single ``np.take``.
    """
    low, high = contract.input.pixel_range
    values = low + np.arange(256, dtype=np.float64) * ((high - low) / 255.0)
    if dtype == np.float32:
        return values.astype(np.float32)
    info = np.iinfo(dtype)
    quantised = np.round(values / scale) + zero_point
    return np.clip(quantised, info.min, info.max).astype(dtype)


def _require_scale(model_path: Path, which: str, dtype: np.dtype, scale: float) -> None:
    if dtype != np.float32 and scale == 0:
        raise ModelError(f"{model_path}: {which} tensor is {dtype.name} without quantisation parameters")


class MaskClassifier:
    """Classifies face crops with a contracted TFLite model. Not thread-safe: one per thread."""

    def __init__(self, model_path: Path, threads: int = 1, min_confidence: float | None = None) -> None:
        self.model_path = Path(model_path)
        self._interpreter = load_interpreter(self.model_path, num_threads=threads)
        self._contract = load_model_contract(self.model_path, self._interpreter)
        self._min_confidence = min_confidence
        (input_details,) = self._interpreter.get_input_details()
        (output_details,) = self._interpreter.get_output_details()
        self._input_index = input_details["index"]
        self._output_index = output_details["index"]
        in_dtype = np.dtype(input_details["dtype"])
        in_scale, in_zero = input_details["quantization"]
        _require_scale(self.model_path, "input", in_dtype, in_scale)
        self._table = _pixel_table(self._contract, in_dtype, in_scale, in_zero)
        self._input = np.zeros(input_details["shape"], dtype=in_dtype)
        out_scale, out_zero = output_details["quantization"]
        quantised_output = np.dtype(output_details["dtype"]) != np.float32
        _require_scale(self.model_path, "output", np.dtype(output_details["dtype"]), out_scale)
        self._out_scale = float(out_scale) if quantised_output else 1.0
        self._out_zero = float(out_zero) if quantised_output else 0.0
        self._classes = self._contract.output.classes
        self._sigmoid = self._contract.output.activation == "sigmoid"
        log.info(
            "classifier %s: %s %dx%d %s, classes %s, %d thread(s)",
            self.model_path, self._contract.quantization, self._contract.input.height,
            self._contract.input.width, in_dtype.name, list(self._classes), threads,
        )

    @classmethod
    def from_settings(cls, settings: ClassifierSettings) -> MaskClassifier:
        return cls(settings.model, threads=settings.threads, min_confidence=settings.min_confidence)

    @property
    def contract(self) -> ModelContract:
        return self._contract

    @property
    def model_sha256(self) -> str:
        return self._contract.model_sha256

    @property
    def min_confidence(self) -> float:
        """Below this top-class probability a face is 'uncertain': settings override, else the contract's."""
        if self._min_confidence is not None:
            return self._min_confidence
        return self._contract.thresholds.min_confidence

    @property
    def min_confidence_night(self) -> float:
        """The grant floor for greyscale (IR night-mode) crops: the contract's night floor, never
        below :attr:`min_confidence` (a settings override that raises the day floor raises both)."""
        night = self._contract.thresholds.min_confidence_night
        return self.min_confidence if night is None else max(night, self.min_confidence)

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of the model input."""
        return (self._contract.input.height, self._contract.input.width)

    @property
    def classes(self) -> tuple[str, ...]:
        return self._classes

    def classify(self, image_rgb: np.ndarray, box: Box | None = None) -> Classification:
        """Label the face in ``box`` (or the whole image when None). ``image_rgb`` is RGB uint8 H×W×3."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ImageError(
                f"classifier needs an RGB uint8 H×W×3 image, got {image_rgb.dtype} {list(image_rgb.shape)}"
            )
        pixels = face_input(image_rgb, self.input_size, box, self._contract.input.crop_margin)
        np.take(self._table, pixels, out=self._input[0])
        self._interpreter.set_tensor(self._input_index, self._input)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output_index).reshape(-1)
        values = (raw.astype(np.float32) - self._out_zero) * self._out_scale
        if self._sigmoid:
            positive = float(np.clip(values[0], 0.0, 1.0))
            probabilities = (1.0 - positive, positive)
        else:
            probabilities = tuple(float(v) for v in values)
        scores = dict(zip(self._classes, probabilities))
        floor = self.min_confidence_night if is_greyscale(pixels) else self.min_confidence
        return Classification(self._safe_label(scores, floor), scores, floor)

    @staticmethod
    def _safe_label(scores: dict[str, float], floor: float) -> str:
        """The top class, except that ``with_mask`` needs P(with_mask) ≥ the grant ``floor`` (the
        day or the night one): below it the face is read as the likelier of the other classes,
        so a label never promises more than the door would grant on it (safety first)."""
        label = max(scores, key=scores.__getitem__)
        if label == WITH_MASK and scores[label] < floor:
            label = max((c for c in scores if c != WITH_MASK), key=scores.__getitem__)
        return label

