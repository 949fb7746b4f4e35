"""Conversion: every preset yields a contracted model; parity failures refuse and install nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert.cli import main
from convert.convert import Preset, convert_model, convert_run, parity_path
from convert.parity import compare, recommend_min_confidence
from gate.classifier import MaskClassifier
from gate.contract import contract_path, file_sha256, read_contract
from gate.litert import load_interpreter
from tests.fixtures_models import CLASSES, TinyRun

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("preset", [p.value for p in Preset])
def test_every_preset_writes_a_model_its_contract_and_a_passing_parity_report(
    tiny_models: dict[str, Path], preset: str
) -> None:
    path = tiny_models[preset]
    contract = read_contract(path)
    assert contract.model_sha256 == file_sha256(path)
    assert contract.quantization == preset
    assert contract.output.classes == CLASSES and contract.output.activation == "softmax"
    assert contract.input.crop_margin == 0.2
    assert contract.created_by["tool"] == "maskgate-convert"
    assert contract.metrics["test"]["images"] == 60
    assert 0.5 <= contract.thresholds.min_confidence <= 0.95
    report = json.loads(parity_path(path).read_text())
    assert report["passed"] and report["agreement"] >= 0.99
    MaskClassifier(path)  # loads with its contract


def test_int8_io_dtype_sets_the_tensor_types(tiny_models: dict[str, Path]) -> None:
    for name, dtype in (("int8", np.int8), ("uint8", np.uint8)):
        interpreter = load_interpreter(tiny_models[name])
        assert interpreter.get_input_details()[0]["dtype"] == dtype
        assert interpreter.get_output_details()[0]["dtype"] == dtype
    float_model = load_interpreter(tiny_models["float16"])
    assert float_model.get_input_details()[0]["dtype"] == np.float32


def test_int8_model_agrees_with_keras_on_learnable_data(tiny_run: TinyRun, tiny_models: dict[str, Path]) -> None:
    report = read_contract(tiny_models["int8"]).metrics["test"]
    assert report["keras_accuracy"] >= 0.95, "the fixture model should have learnt the squares"
    assert report["agreement"] >= 0.99
    assert report["drop_points"] <= 0.5


def test_int8_model_is_smaller_than_float32(tiny_models: dict[str, Path]) -> None:
    assert tiny_models["int8"].stat().st_size < tiny_models["float32"].stat().st_size


def test_int8_needs_calibration_images(tiny_run: TinyRun) -> None:
    with pytest.raises(ValueError, match="representative images"):
        convert_model(tiny_run.model, Preset.INT8)


def test_unknown_io_dtype_is_refused(tiny_run: TinyRun) -> None:
    with pytest.raises(ValueError, match="io_dtype"):
        convert_model(tiny_run.model, Preset.INT8, tiny_run.train_images[:4], io_dtype="int16")


def test_compare_flags_an_accuracy_drop_and_low_agreement() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    keras_probs = np.eye(3)[labels]
    worse = keras_probs.copy()
    worse[0] = [0.1, 0.8, 0.1]  # one image now wrong: −10 points, 90 % agreement
    report = compare(keras_probs, worse, labels, CLASSES)
    assert not report.passed
    assert report.drop_points == pytest.approx(10.0)
    assert report.agreement == pytest.approx(0.9)
    assert any("drops 10.00 points" in f for f in report.failures)
    assert any("agrees with Keras on 90.00%" in f for f in report.failures)
    assert compare(keras_probs, keras_probs, labels, CLASSES).passed


def test_recommended_threshold_is_the_lowest_that_reaches_the_target() -> None:
    labels = np.array([0] * 10)
    confident_right = [[0.95, 0.05]] * 8
    unsure_wrong = [[0.45, 0.55]] * 2  # wrong, at confidence 0.55
    probabilities = np.array(confident_right + unsure_wrong)
    assert recommend_min_confidence(probabilities, labels) == pytest.approx(0.6)
    hopeless = np.array([[0.1, 0.9]] * 10)
    assert recommend_min_confidence(hopeless, labels) == pytest.approx(0.95)


def test_cli_converts_and_prints_a_summary(tiny_run: TinyRun, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli" / "model.tflite"
    status = main([str(tiny_run.run_dir), "--preset", "float16", "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert f"ok {out}" in printed and "agreement 100.00%" in printed
    assert out.exists() and contract_path(out).exists() and parity_path(out).exists()


def test_cli_writes_the_chosen_threshold_and_where_it_came_from(tiny_run: TinyRun, tmp_path: Path, capsys) -> None:
    out = tmp_path / "floor" / "model.tflite"
    status = main([str(tiny_run.run_dir), "--preset", "float32", "--out", str(out), "--min-confidence", "0.87",
                   "--threshold-note", "real-face check, choice half: false accept <= 1 %"])
    assert status == 0 and "min_confidence 0.87" in capsys.readouterr().out
    contract = read_contract(out)
    assert contract.thresholds.min_confidence == 0.87
    assert contract.metrics["threshold"]["chosen_on"].startswith("real-face check")
    with pytest.raises(SystemExit):
        main([str(tiny_run.run_dir), "--out", str(out), "--min-confidence", "1.5"])


def test_cli_all_presets_names_each_model_and_reports_json(tiny_run: TinyRun, tmp_path: Path, capsys) -> None:
    status = main([str(tiny_run.run_dir), "--all-presets", str(tmp_path), "--calibration-size", "30", "--json"])
    assert status == 0
    rows = json.loads(capsys.readouterr().out)
    assert [Path(row["model"]).name for row in rows] == [
        f"maskgate-tiny-3c-{preset.value}.tflite" for preset in Preset
    ]
    assert all(row["status"] == "ok" and (tmp_path / Path(row["model"]).name).exists() for row in rows)


def test_cli_out_must_be_a_tflite_file(tiny_run: TinyRun, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main([str(tiny_run.run_dir), "--out", str(tmp_path / "model.json")])
    assert caught.value.code == 2


def test_cli_refuses_when_parity_fails_and_installs_nothing(tiny_run: TinyRun, tmp_path: Path) -> None:
    """An impossible agreement requirement stands in for a model ruined by quantisation."""
    out = tmp_path / "refused" / "model.tflite"
    result = subprocess.run(
        [sys.executable, "-m", "convert.cli", str(tiny_run.run_dir), "--preset", "int8",
         "--calibration-size", "30", "--out", str(out), "--min-agreement", "1.01"],
        capture_output=True, text=True, cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 1, result.stderr
    assert "REFUSED" in result.stderr and "parity check failed" in result.stderr
    assert "fewer than the required 101.00%" in result.stderr
    assert not out.exists() and not contract_path(out).exists()
    report = json.loads(parity_path(out).read_text())
    assert report["passed"] is False and report["failures"]
    assert [p.name for p in out.parent.iterdir()] == [parity_path(out).name]  # no scratch left behind


def test_cli_reports_a_folder_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path), "--out", str(tmp_path / "m.tflite")]) == 1
    assert "run.json is missing" in capsys.readouterr().err


def test_the_real_compact_architecture_converts_to_int8(compact_run: TinyRun, tmp_path: Path) -> None:
    """BatchNorm folding, depthwise convs and ReLU6 through full-integer quantisation.

    Briefly trained on 120 images, the model is not confident everywhere, so the thresholds are
    looser than a real run's; what matters is that the conversion path and contract work for it.
    """
    result = convert_run(compact_run.run_dir, Preset.INT8, tmp_path / "compact.tflite",
                         max_drop=10.0, min_agreement=0.9)
    assert result.parity.agreement >= 0.9
    assert result.contract.preset == "compact-s"
    classifier = MaskClassifier(result.model_path)
    assert classifier.contract.quantization == "int8"
    assert classifier.classify(compact_run.test_images[0]).label in CLASSES
