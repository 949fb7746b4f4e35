"""`gate-cli status` tells the truth: the daemon writes its status from start-up on (a model fault
shows within seconds) and when it stops (door locked, gate stopped), never leaving an earlier
run's "ok" behind. Real parts: the gate's own serve(), mock pins, a real video file."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

from gate.cli import main
from gate.daemon import serve
from gate.health import read_status
from gate.settings import parse_settings


def _settings(tmp_path: Path, clip: Path, **classifier):
    return parse_settings({
        "gate": {"state_dir": str(tmp_path / "var")},
        "camera": {"source": str(clip), "kind": "file", "realtime": False, "fps": 10},
        "door": {"pin_factory": "mock"},
        "classifier": classifier,
    }, environ={})


def _clip(tmp_path: Path, frames: int = 15) -> Path:
    path = tmp_path / "empty.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for index in range(frames):
        writer.write(np.full((240, 320, 3), 100 + index, np.uint8))
    writer.release()
    return path


def _wait_for(state_dir: Path, predicate, seconds: float) -> dict | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = read_status(state_dir)
        if status is not None and predicate(status):
            return status
        time.sleep(0.1)
    return read_status(state_dir)


def test_a_model_fault_shows_within_seconds_and_a_stop_leaves_the_door_locked(tmp_path, capsys):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"not a model")
    settings = _settings(tmp_path, _clip(tmp_path), model=str(model))
    state_dir = settings.gate.state_dir
    stop = threading.Event()
    worker = threading.Thread(target=serve, args=(settings,), kwargs={"stop": stop})
    started = time.monotonic()
    worker.start()
    try:
        status = _wait_for(state_dir, lambda s: s.get("state") == "fault", 5.0)
        assert status is not None and status["state"] == "fault", status
        assert time.monotonic() - started < 5.0
        assert "not a TFLite model" in status["fault"] and status["door"] == "fault"
        settings_file = tmp_path / "settings.toml"
        settings_file.write_text(f'[gate]\nstate_dir = "{state_dir}"\n')
        assert main(["--settings", str(settings_file), "status"]) == 0
        assert "running, FAULT (door held locked)" in capsys.readouterr().out
    finally:
        stop.set()
        worker.join(30)
    final = read_status(state_dir)
    assert (final["state"], final["door"], final["camera"]["state"]) == ("stopped", "locked", "stopped")
    assert main(["--settings", str(settings_file), "status"]) == 0
    assert "not running since" in capsys.readouterr().out


def test_a_run_that_ends_leaves_a_stopped_status_with_its_counters(tmp_path):
    settings = _settings(tmp_path, _clip(tmp_path))
    health = serve(settings, until_camera_ends=True)
    final = read_status(settings.gate.state_dir)
    assert health["frames"] > 0 and final["frames"] == health["frames"]
    assert (final["state"], final["door"], final["camera"]["state"], final["fps"]) == ("stopped", "locked", "stopped", 0.0)
    assert final["stop_reason"] == "stopped" and final["stopped_at"] >= final["written_at"] - 1
