"""Every bad input is one line and the right exit status, and the other inputs still run:
huge images, unusable --annotate targets, name collisions, missing settings, mock pins,
paths and cameras that can never work. Plus --settings anywhere and --version."""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from gate.cli import main
from gate.contract import file_sha256
from gate.models import default_model_path
from gate.settings import EXIT_CONFIG

try:
    import picamera2  # noqa: F401

    HAVE_PICAMERA2 = True
except ImportError:
    HAVE_PICAMERA2 = False


def png_claiming(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose header claims ``width``×``height`` (one compressed row only)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.fixture()
def face(tmp_path) -> Path:
    """A plain 128×128 'face crop' (any picture will do for --assume-face)."""
    path = tmp_path / "face.png"
    image = np.zeros((128, 128, 3), np.uint8)
    cv2.circle(image, (64, 64), 40, (180, 150, 130), -1)
    cv2.imwrite(str(path), image)
    return path


def run_json(argv: list[str], capsys) -> tuple[int, list[dict], str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def test_a_60000_by_60000_header_is_refused_before_decoding_and_the_rest_still_runs(tmp_path, face, capsys):
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_claiming(60000, 60000))
    status, (bad, good), _ = run_json(["test-image", "--json", "--assume-face", str(huge), str(face)], capsys)
    assert status == 1
    assert bad["error"] == f"{huge}: 60000×60000 is 3600 megapixels, over the 40-megapixel limit"
    assert good["error"] is None and len(good["faces"]) == 1


def test_the_pixel_limit_is_configurable(tmp_path, face, capsys):
    status, [result], _ = run_json(["test-image", "--json", "--assume-face", "--max-megapixels", "0.01", str(face)], capsys)
    assert status == 1 and "128×128 is 0.0164 megapixels, over the 0.01-megapixel limit" in result["error"]
    assert main(["test-image", "--assume-face", "--max-megapixels", "0", str(face)]) == 2


@pytest.mark.parametrize("kind", ["a file", "below a file"])
def test_an_annotate_target_that_cannot_be_a_folder_is_one_line_before_any_image(tmp_path, face, capsys, kind):
    blocker = tmp_path / "taken.txt"
    blocker.write_text("not a folder")
    target = blocker if kind == "a file" else blocker / "out"
    assert main(["test-image", "--assume-face", "--annotate", str(target), str(face)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and f"--annotate {target}: not a folder that can be written" in err


def test_annotations_of_same_named_files_never_overwrite_each_other(tmp_path, face, capsys):
    inputs = []
    for folder, name in (("a", "door.png"), ("b", "door.png"), ("a", "door.jpg")):
        (tmp_path / folder).mkdir(exist_ok=True)
        inputs.append(tmp_path / folder / name)
        cv2.imwrite(str(inputs[-1]), cv2.imread(str(face)))
    out = tmp_path / "annotated"
    status, results, _ = run_json(["test-image", "--json", "--assume-face", "--annotate", str(out), *map(str, inputs), str(inputs[0])], capsys)
    assert status == 0
    written = [Path(r["annotated"]) for r in results]
    assert written == [out / "a" / "door.annotated.jpg", out / "b" / "door.annotated.jpg",
                       out / "a" / "door.annotated-2.jpg", out / "a" / "door.annotated-3.jpg"]
    assert all(cv2.imread(str(p)) is not None for p in written)


def test_settings_is_accepted_before_and_after_the_sub_command(tmp_path, capsys):
    settings = tmp_path / "site.toml"
    settings.write_text('[gate]\nid = "back-door"\n')
    assert main(["--settings", str(settings), "config", "show"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert main(["config", "show", "--settings", str(settings)]) == 0
    after = json.loads(capsys.readouterr().out)
    assert before == after and after["gate"]["id"] == "back-door"


def test_version_prints_the_version_and_the_default_models_sha(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gate-cli 0.1.0") and file_sha256(default_model_path()) in out


@pytest.mark.parametrize("command", [["run", "--allow-mock-pins"], ["config", "check"]])
def test_run_and_config_check_need_the_settings_file_they_were_told_to_use(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)  # no ./settings.toml here
    assert main(command) == EXIT_CONFIG
    assert "settings.toml: no such settings file (pass --settings FILE)" in capsys.readouterr().err
    assert main(["--settings", str(tmp_path / "missing.toml"), *command]) == EXIT_CONFIG
    assert f"{tmp_path / 'missing.toml'}: no such settings file" in capsys.readouterr().err


def test_run_refuses_mock_pins_unless_asked(tmp_path, capsys):
    settings = tmp_path / "settings.toml"
    settings.write_text('[door]\npin_factory = "mock"\n')
    assert main(["run", "--settings", str(settings)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert 'door.pin_factory = "mock"' in err and "--allow-mock-pins" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ('[gate]\nstate_dir = "blocker/var"\n', "gate.state_dir: cannot use"),
        ('[outbox]\npath = "/proc/maskgate/outbox.sqlite3"\n', "outbox.path: cannot use /proc/maskgate"),
        ('[camera]\nsource = "picamera2"\n', "camera: source 'picamera2' needs the picamera2 package"),
    ],
)
def test_configurations_that_can_never_work_exit_78_with_one_line(tmp_path, capsys, toml, fragment):
    if "picamera2" in toml and HAVE_PICAMERA2:
        pytest.skip("picamera2 is installed here")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[door]\npin_factory = "mock"\n{toml}')
    assert main(["run", "--allow-mock-pins", "--settings", str(settings)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("configuration error")] == [err.splitlines()[-1]]


def test_a_real_process_never_prints_a_traceback_for_bad_input(tmp_path):
    import subprocess

    bad = tmp_path / "settings.toml"
    bad.write_bytes(b"\xff\xfe[\x00g\x00")
    result = subprocess.run([sys.executable, "-m", "gate.cli", "--settings", str(bad), "run"], capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_CONFIG and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "not UTF-8 text" in result.stderr
