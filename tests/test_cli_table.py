"""Issue 16's table: each command an operator tried that crashed, hung or misled is now one line
on stderr and its documented exit status within 5 s; plus config check, pins as integers and the
quiet default."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from gate.cli import EXIT_USAGE, main
from gate.models import default_model_path
from gate.settings import EXIT_CONFIG, parse_settings

BOUND_S = 5.0


@pytest.fixture(autouse=True)
def own_logging():
    """As in a real process, gate-cli sets logging up (to the stderr this test captures): an earlier
    in-process `run` may have left a handler on a stream that is closed by now."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers[:] = []
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture()
def site(tmp_path, monkeypatch) -> Path:
    """An operator's folder outside the checkout: a text file named like a photo, a short grey clip,
    a model file cut in half (with its contract), settings that name them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.jpg").write_text("not a picture\n")
    writer = cv2.VideoWriter(str(tmp_path / "door-clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for _ in range(5):
        writer.write(np.full((120, 160, 3), 128, np.uint8))
    writer.release()
    model = default_model_path().read_bytes()
    (tmp_path / "half.tflite").write_bytes(model[: len(model) // 2])
    (tmp_path / "half.json").write_text(default_model_path().with_suffix(".json").read_text())
    (tmp_path / "badmodel.toml").write_text(f'[gate]\nstate_dir = "var"\n[classifier]\nmodel = "half.tflite"\n')
    (tmp_path / "native.toml").write_text('[door]\npin_factory = "native"\n')
    (tmp_path / "lgpio.toml").write_text('[door]\npin_factory = "lgpio"\n')
    (tmp_path / "written_at.toml").write_text('[gate]\nstate_dir = "state"\n')
    (tmp_path / "state").mkdir()
    cv2.imwrite(str(tmp_path / "x.png"), np.full((64, 64, 3), 90, np.uint8))
    return tmp_path


TABLE = {
    "demo of a missing clip": (["demo", "--clip", "nothere.mp4", "--fast"], 1, "nothere.mp4: no such video file"),
    "demo of a text file": (["demo", "--clip", "notes.jpg", "--fast"], 1, "notes.jpg: not a video FFmpeg can decode"),
    "demo with a broken model": (["demo", "--clip", "door-clip.mp4", "--fast", "--settings", "badmodel.toml"], 1, "half.tflite: LiteRT cannot load"),
    "nan megapixels": (["test-image", "--max-megapixels", "nan", "x.png"], EXIT_USAGE, "--max-megapixels: must be more than 1e-06"),
    "inf megapixels": (["test-image", "--max-megapixels", "inf", "x.png"], EXIT_USAGE, "--max-megapixels: must be more than 1e-06"),
    "1e-7 megapixels": (["test-image", "--max-megapixels", "1e-7", "x.png"], EXIT_USAGE, "got 1e-7"),
    "lgpio off a Pi: door release": (["--settings", "lgpio.toml", "door", "release"], EXIT_CONFIG, 'door.pin_factory = "lgpio": '),
    "lgpio off a Pi: run": (["run", "--settings", "lgpio.toml"], EXIT_CONFIG, 'door.pin_factory = "lgpio": '),
    "native pins (not offered)": (["--settings", "native.toml", "door", "release"], EXIT_CONFIG, "door.pin_factory: must be one of 'mock' or 'lgpio' (got 'native')"),
    "a frame saved as text": (["test-camera", "--seconds", "2", "--save", "frame.txt"], EXIT_USAGE, "frame.txt: not an image file name"),
    "a frame saved nowhere": (["test-camera", "--save", "/nonexistent/dir/frame.jpg"], EXIT_USAGE, "cannot write there"),
    "assets into /proc": (["assets", "fetch", "--dir", "/proc/foo"], 1, "/proc/foo: not a folder the assets can be kept in"),
}


@pytest.mark.parametrize(("argv", "status", "says"), TABLE.values(), ids=TABLE.keys())
def test_each_command_of_the_table_is_one_line_and_its_status_within_5_s(site, capsys, argv, status, says):
    started = time.monotonic()
    assert main(argv) == status
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and "Traceback" not in err, err
    assert elapsed < BOUND_S


@pytest.mark.parametrize("written_at", ['"yesterday"', "[1, 2]", "1e400"])
def test_a_status_file_with_wrong_types_is_shown_not_a_traceback(site, capsys, written_at):
    (site / "state" / "status.json").write_text(
        f'{{"written_at": {written_at}, "state": 7, "door": [], "camera": "on", "outbox": 3, "mqtt": "x", "last_decision": 5}}')
    assert main(["--settings", "written_at.toml", "status"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "status.json: not a status the gate wrote (written_at:" in err


def test_config_check_names_each_missing_file_and_exits_78(site, capsys):
    (site / "missing.toml").write_text('[classifier]\nmodel = "gone.tflite"\n[detector]\nassets_dir = "no-assets"\n'
                                        '[camera]\nsource = "gone.mp4"\n')
    assert main(["--settings", "missing.toml", "config", "check"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for key, path in (("classifier.model", "gone.tflite"), ("detector.assets_dir", "no-assets"), ("camera.source", "gone.mp4")):
        assert f"{key}: {site / path}" in err


def test_config_check_passes_the_shipped_settings_with_a_camera_file(site, capsys):
    (site / "ok.toml").write_text('[camera]\nsource = "door-clip.mp4"\n')
    assert main(["--settings", "ok.toml", "config", "check"]) == 0
    assert "ok.toml: ok" in capsys.readouterr().out


def test_a_bcm_pin_may_be_written_as_an_integer():
    door = parse_settings({"door": {"relay_pin": 17, "green_led_pin": 27, "buzzer_pin": 23}}, environ={}).door
    assert (door.relay_pin, door.green_led_pin, door.buzzer_pin) == ("17", "27", "23")
    with pytest.raises(ValueError, match="door.relay_pin: a pin number cannot be negative"):
        parse_settings({"door": {"relay_pin": -1}}, environ={})


def test_inputs_with_nothing_in_common_but_the_root_are_annotated_straight_into_the_folder(site, capsys):
    assert main(["test-image", "--json", "--assume-face", "--annotate", "out", "x.png", "/etc/hostname"]) == 1
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert results[0]["annotated"] == str(Path("out") / "x.annotated.jpg") and (site / "out" / "x.annotated.jpg").is_file()
    assert sorted(p.name for p in (site / "out").iterdir()) == ["x.annotated.jpg"]


def test_the_default_is_quiet_and_verbose_shows_the_libraries_lines(site):
    def run(*extra: str) -> str:
        command = [sys.executable, "-m", "gate.cli", "test-image", "--assume-face", *extra, "x.png"]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=site).stderr

    assert run() == ""
    verbose = run("--verbose")
    assert "XNNPACK delegate" in verbose and "gate.classifier" in verbose
