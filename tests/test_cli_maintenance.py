"""gate-cli test-camera, status and config show, as an installer uses them on site."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from gate.cli import main
from gate.health import write_status


def _settings(tmp_path: Path, **sections: dict) -> Path:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path = tmp_path / "settings.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_test_camera_reports_resolution_and_saves_a_frame(tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 20, (320, 240))
    for index in range(30):
        writer.write(np.full((240, 320, 3), index * 8, np.uint8))
    writer.release()
    settings = _settings(tmp_path, camera={"source": str(video), "kind": "file", "loop": True, "fps": 20.0})
    saved = tmp_path / "frame.jpg"
    assert main(["--settings", str(settings), "test-camera", "--seconds", "1.5", "--save", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "ok: 320x240" in out and "frames/s" in out
    assert cv2.imread(str(saved)).shape == (240, 320, 3)


def test_test_camera_on_a_dead_source_fails_with_the_reason(tmp_path, capsys):
    settings = _settings(tmp_path, camera={"source": str(tmp_path / "missing.mp4"), "kind": "file", "reconnect_initial_s": 0.2})
    assert main(["--settings", str(settings), "test-camera", "--seconds", "1.5"]) == 1
    assert "FAILED: no frame" in capsys.readouterr().out


def test_status_reads_what_the_daemon_wrote(tmp_path, capsys):
    state = tmp_path / "var"
    write_status(state, {"gate_id": "front-door", "door": "locked", "fps": 14.9, "camera": {"state": "ok"},
                         "outbox": {"pending": 3, "sent_total": 40, "dropped": 0}, "decisions": {"grant": 7, "deny": 2}})
    settings = _settings(tmp_path, gate={"state_dir": str(state)})
    assert main(["--settings", str(settings), "status"]) == 0
    out = capsys.readouterr().out
    assert "front-door" in out and "3 pending" in out and "grant 7" in out


def test_config_show_redacts_secrets(tmp_path, capsys):
    settings = _settings(tmp_path, mqtt={"username": "gate", "password_file": "/etc/maskgate/mqtt_password"})
    assert main(["--settings", str(settings), "config", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["mqtt"]["username"] == "gate" and shown["mqtt"]["password_file"] == "***"
