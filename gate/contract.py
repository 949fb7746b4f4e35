"""The model contract: the sidecar JSON that says how to feed a TFLite classifier and read its output.

A ``.tflite`` file alone does not say which classes its outputs are, what pixel range it
expects or how much context to crop around a face. ``maskgate-convert`` writes that
knowledge next to the model (``X.tflite`` → ``X.json``) and binds the two by the model's
SHA-256, so a model swapped without its contract is refused instead of silently
mislabelling faces. Runtime code: no TensorFlow here.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gate.errors import ContractError
from gate.paths import read_regular_file
from gate.types import INCORRECT_MASK, WITH_MASK, WITHOUT_MASK

log = logging.getLogger(__name__)

SCHEMA = "maskgate.model-contract/1"
#: Every class name a maskgate model may output, in canonical order.
KNOWN_CLASSES = (WITH_MASK, WITHOUT_MASK, INCORRECT_MASK)
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
_INPUT_DTYPES = (np.float32, np.int8, np.uint8)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """What the model's input tensor expects: an RGB face crop of this size, pixels mapped to ``pixel_range``."""

    height: int = Field(gt=0, le=4096)
    width: int = Field(gt=0, le=4096)
    color_order: Literal["RGB"] = "RGB"
    pixel_range: tuple[float, float] = (0.0, 255.0)
    crop_margin: float = Field(0.2, ge=0.0, le=2.0)

    @field_validator("pixel_range")
    @classmethod
    def _increasing(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not value[0] < value[1]:
            raise ValueError(f"must be [low, high] with low < high, got {list(value)}")
        return value


class OutputSpec(_Strict):
    """How to read the output: softmax over ``classes``, or one sigmoid unit = P(classes[1])."""

    activation: Literal["softmax", "sigmoid"]
    classes: tuple[str, ...] = Field(min_length=2)

    @field_validator("classes")
    @classmethod
    def _known_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in KNOWN_CLASSES]
        if unknown:
            raise ValueError(f"unknown class name(s) {unknown}; allowed: {list(KNOWN_CLASSES)}")
        if len(set(value)) != len(value):
            raise ValueError(f"class names repeat: {list(value)}")
        return value

    @model_validator(mode="after")
    def _sigmoid_is_binary(self) -> OutputSpec:
        if self.activation == "sigmoid" and len(self.classes) != 2:
            raise ValueError(f"a sigmoid output needs exactly 2 classes, got {list(self.classes)}")
        return self


class Thresholds(_Strict):
    min_confidence: float = Field(0.6, ge=0.0, le=1.0)
    # The grant floor for greyscale crops (an IR camera at night): bare faces under IR lamps fool a
    # model more easily than in colour, and one floor for both would refuse many masked visitors by
    # day to be safe at night. None: the day floor serves both.
    min_confidence_night: float | None = Field(None, ge=0.0, le=1.0)


class ModelContract(_Strict):
    """Sidecar of one TFLite model (schema ``maskgate.model-contract/1``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_id: Literal["maskgate.model-contract/1"] = Field(SCHEMA, alias="schema")
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input: InputSpec
    output: OutputSpec
    thresholds: Thresholds = Thresholds()
    quantization: Literal["float32", "float16", "dynamic", "int8"]
    preset: str
    training_data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_by: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=2) + "\n"


def contract_path(model_path: str | Path) -> Path:
    """``models/x.tflite`` → ``models/x.json``."""
    return Path(model_path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_contract(model_path: str | Path, contract: ModelContract) -> Path:
    """Write the sidecar beside the model (atomically: a half-written contract would brick the gate)."""
    target = contract_path(model_path)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(contract.to_json(), encoding="utf-8")
    partial.replace(target)
    return target


def parse_contract(data: Any, name: str = "<contract>") -> ModelContract:
    """Validate a decoded JSON document as a contract; the error names every bad key."""
    try:
        return ModelContract.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ContractError(f"{name}: invalid model contract: {problems}") from exc


def read_contract(model_path: str | Path) -> ModelContract:
    """The sidecar of ``model_path``, validated against the schema (not yet against the model)."""
    model_path = Path(model_path)
    sidecar = contract_path(model_path)
    try:
        text = read_regular_file(sidecar, 1 << 20).decode("utf-8")
    except FileNotFoundError:
        raise ContractError(
            f"{model_path} has no contract {sidecar.name} beside it: "
            "convert it with maskgate-convert, which writes both"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError(f"{sidecar}: cannot read model contract ({exc})") from exc
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deep to be a contract
        raise ContractError(f"{sidecar}: model contract is not valid JSON ({exc})") from None
    return parse_contract(data, str(sidecar))


def check_tensors(contract: ModelContract, interpreter: Any, name: str) -> None:
    """Refuse a contract that disagrees with the model's actual input/output tensors."""
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ContractError(
            f"{name}: a mask classifier has one input and one output tensor, "
            f"this model has {len(inputs)} and {len(outputs)}"
        )
    shape = tuple(int(d) for d in inputs[0]["shape"])
    expected = (1, contract.input.height, contract.input.width, 3)
    if shape != expected:
        raise ContractError(
            f"{name}: input tensor shape {list(shape)} does not match the contract's "
            f"{contract.input.height}×{contract.input.width}×3 (expected {list(expected)})"
        )
    dtype = inputs[0]["dtype"]
    if dtype not in _INPUT_DTYPES:
        raise ContractError(
            f"{name}: input tensor dtype {np.dtype(dtype).name} is not float32, int8 or uint8"
        )
    size = int(np.prod(outputs[0]["shape"]))
    classes = contract.output.classes
    expected_size = 1 if contract.output.activation == "sigmoid" else len(classes)
    if size != expected_size:
        raise ContractError(
            f"{name}: output tensor has {size} value(s) but the contract's "
            f"{contract.output.activation} output over {list(classes)} needs {expected_size}"
        )


def load_model_contract(model_path: str | Path, interpreter: Any) -> ModelContract:
    """The contract of ``model_path``, checked against the file's SHA-256 and the loaded tensors."""
    model_path = Path(model_path)
    contract = read_contract(model_path)
    actual = file_sha256(model_path)
    if actual != contract.model_sha256:
        raise ContractError(
            f"{model_path}: SHA-256 {actual[:12]}… does not match its contract "
            f"{contract_path(model_path).name} ({contract.model_sha256[:12]}…): the model was "
            "replaced without its contract; re-run maskgate-convert"
        )
    check_tensors(contract, interpreter, str(model_path))
    log.debug("contract of %s: %s %s", model_path, contract.quantization, list(contract.output.classes))
    return contract
