"""The model contract refuses every way a model and its sidecar can disagree, with a message naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gate.classifier import MaskClassifier
from gate.contract import (
    SCHEMA,
    ModelContract,
    contract_path,
    file_sha256,
    load_model_contract,
    read_contract,
    write_contract,
)
from gate.errors import ContractError, ModelError
from gate.litert import load_interpreter

pytestmark = pytest.mark.slow


@pytest.fixture
def model_copy(tiny_models: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the int8 model and its contract, free to break."""
    source = tiny_models["int8"]
    target = tmp_path / "m.tflite"
    shutil.copy(source, target)
    shutil.copy(contract_path(source), contract_path(target))
    return target


def _edit_contract(model_path: Path, edit) -> None:
    path = contract_path(model_path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_sidecar_path_is_the_model_path_with_json_suffix() -> None:
    assert contract_path("models/x.tflite") == Path("models/x.json")


def test_valid_contract_loads_and_matches_the_model(model_copy: Path) -> None:
    contract = load_model_contract(model_copy, load_interpreter(model_copy))
    assert contract.schema_id == SCHEMA
    assert contract.model_sha256 == file_sha256(model_copy)
    assert (contract.input.height, contract.input.width) == (32, 32)
    assert contract.output.classes == ("with_mask", "without_mask", "incorrect_mask")
    assert contract.quantization == "int8"


def test_write_contract_round_trips_with_schema_key(model_copy: Path) -> None:
    contract = read_contract(model_copy)
    changed = contract.model_copy(update={"preset": "other"})
    write_contract(model_copy, changed)
    raw = json.loads(contract_path(model_copy).read_text())
    assert raw["schema"] == SCHEMA and "schema_id" not in raw
    assert read_contract(model_copy) == changed


def test_missing_sidecar_says_how_to_make_one(model_copy: Path) -> None:
    contract_path(model_copy).unlink()
    with pytest.raises(ContractError, match=r"m\.tflite has no contract m\.json beside it.*maskgate-convert"):
        MaskClassifier(model_copy)


def test_corrupt_json_is_refused(model_copy: Path) -> None:
    contract_path(model_copy).write_text('{"schema": "maskgate.model-contract/1", ')
    with pytest.raises(ContractError, match="m.json: model contract is not valid JSON"):
        MaskClassifier(model_copy)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d.pop("output"), "output: Field required"),
        (lambda d: d.update(schema="maskgate.model-contract/9"), "schema:"),
        (lambda d: d["input"].update(color_order="BGR"), "input.color_order"),
        (lambda d: d["input"].update(pixel_range=[1.0, 0.0]), "input.pixel_range"),
        (lambda d: d["output"].update(classes=["with_mask", "no_mask", "incorrect_mask"]), "unknown class name(s) ['no_mask']"),
        (lambda d: d["output"].update(activation="sigmoid"), "sigmoid output needs exactly 2 classes"),
        (lambda d: d["thresholds"].update(min_confidence=1.5), "thresholds.min_confidence"),
        (lambda d: d.update(surprise=1), "surprise: Extra inputs are not permitted"),
    ],
)
def test_schema_violations_name_the_key(model_copy: Path, edit, fragment: str) -> None:
    _edit_contract(model_copy, edit)
    with pytest.raises(ContractError, match="invalid model contract") as caught:
        MaskClassifier(model_copy)
    assert fragment in str(caught.value)


def test_model_replaced_without_its_contract_is_refused(model_copy: Path, tiny_models: dict[str, Path]) -> None:
    shutil.copy(tiny_models["float32"], model_copy)
    with pytest.raises(ContractError, match="does not match its contract m.json.*replaced without its contract"):
        MaskClassifier(model_copy)


def _rebind(model_path: Path) -> None:
    """Keep the SHA-256 right so the tensor check is what fails."""
    _edit_contract(model_path, lambda d: d.update(model_sha256=file_sha256(model_path)))


def test_wrong_class_count_is_refused(model_copy: Path) -> None:
    _edit_contract(model_copy, lambda d: d["output"].update(classes=["with_mask", "without_mask"]))
    with pytest.raises(ContractError, match=r"output tensor has 3 value\(s\).*needs 2"):
        MaskClassifier(model_copy)


def test_wrong_input_size_is_refused(model_copy: Path) -> None:
    _edit_contract(model_copy, lambda d: d["input"].update(height=96, width=96))
    with pytest.raises(ContractError, match=r"input tensor shape \[1, 32, 32, 3\].*96×96×3"):
        MaskClassifier(model_copy)


def test_sigmoid_contract_on_a_softmax_model_is_refused(model_copy: Path) -> None:
    _edit_contract(model_copy, lambda d: d["output"].update(
        activation="sigmoid", classes=["with_mask", "without_mask"]))
    with pytest.raises(ContractError, match=r"output tensor has 3 value\(s\).*sigmoid.*needs 1"):
        MaskClassifier(model_copy)


def test_contract_error_is_a_model_error() -> None:
    assert issubclass(ContractError, ModelError)


def test_contract_model_rejects_bad_sha_text() -> None:
    with pytest.raises(ValueError, match="model_sha256"):
        ModelContract.model_validate({
            "schema": SCHEMA, "model_sha256": "abc", "quantization": "int8", "preset": "p",
            "input": {"height": 8, "width": 8}, "output": {"activation": "softmax", "classes": ["with_mask", "without_mask"]},
        })
