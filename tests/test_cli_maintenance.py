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


def test_status_of_a_gate_that_never_ran_is_not_an_error(tmp_path, capsys):
    settings = _settings(tmp_path, gate={"state_dir": str(tmp_path / "var")})
    assert main(["--settings", str(settings), "status"]) == 0
    assert capsys.readouterr().out.startswith(f"state     not running: no status in {tmp_path / 'var'}")


def test_status_of_a_stopped_gate_says_since_when_and_that_the_door_is_locked(tmp_path, capsys):
    state = tmp_path / "var"
    write_status(state, {"gate_id": "front-door", "state": "stopped", "door": "locked", "stopped_at": 1_800_000_000,
                         "stop_reason": "stopped", "camera": {"state": "stopped"}})
    settings = _settings(tmp_path, gate={"state_dir": str(state)})
    assert main(["--settings", str(settings), "status"]) == 0
    out = capsys.readouterr().out
    assert "not running since 2027-01-1" in out and "door      locked" in out and "camera    stopped" in out


def test_status_demo_reads_the_folder_the_demo_writes(tmp_path, capsys):
    settings = _settings(tmp_path, gate={"state_dir": str(tmp_path / "var")})
    write_status(tmp_path / "var" / "demo", {"gate_id": "demo-door", "state": "running", "door": "locked"})
    assert main(["--settings", str(settings), "status", "--demo"]) == 0
    assert "demo-door" in capsys.readouterr().out
    assert main(["--settings", str(settings), "status"]) == 0  # the daemon never ran: say where the demo's is
    assert "not running: no status" in (out := capsys.readouterr().out) and "gate-cli status --demo" in out


def test_demo_summary_compares_verdict_and_reason_of_every_decision_in_each_window(capsys):
    from gate.demo import Visitor, print_visitors

    segments = [Visitor(start=1.0, end=4.0, labels=["with_mask"]), Visitor(start=6.0, end=9.0, labels=["without_mask"]),
                Visitor(start=11.0, end=14.0, labels=["incorrect_mask"]), Visitor(start=16.0, end=19.0, labels=["with_mask", "with_mask"])]
    right = [(2.5, "grant", "all_masked"), (7.5, "deny", "no_mask"), (12.5, "deny", "incorrect_mask"), (17.0, "grant", "all_masked")]
    assert print_visitors(segments, right, "all_masked") == 0
    assert capsys.readouterr().out.count("[ok]") == 4

    # the case: the bare visitor denied for the wrong reason; a late second decision; a stray one
    wrong = [(0.2, "deny", "no_mask"), (2.5, "grant", "all_masked"), (7.5, "deny", "incorrect_mask"),
             (12.5, "deny", "incorrect_mask"), (13.5, "grant", "all_masked"), (17.0, "grant", "all_masked")]
    assert print_visitors(segments, wrong, "all_masked") == 3
    out = capsys.readouterr().out
    assert "[EXTRA] 0.2 s: deny (no_mask) with nobody at the door" in out
    assert "[MISMATCH] visitor 2: expected deny (no_mask), got 7.5 s deny (incorrect_mask)" in out
    assert "[MISMATCH] visitor 3: expected deny (incorrect_mask), got 12.5 s deny (incorrect_mask); 13.5 s grant (all_masked)" in out
    assert "visitor 1 (with_mask): expected grant (all_masked), gate said 2.5 s grant (all_masked)  [ok]" in out
    assert "2 of 4 visitors right; 1 decision(s) with nobody at the door" in out
    assert print_visitors(segments[:1], [], "all_masked") == 1  # saying nothing is wrong too


def test_demo_exits_1_when_the_gate_gets_a_visitor_wrong(tmp_path, capsys):
    """The whole demo on a clip whose script expects a masked visitor the gate cannot see (an empty scene)."""
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for _ in range(20):
        writer.write(np.full((240, 320, 3), 128, np.uint8))
    writer.release()
    clip.with_suffix(".json").write_text(json.dumps({"fps": 10, "segments": [{"start": 0.1, "end": 1.5, "labels": ["with_mask"]}]}))
    settings = _settings(tmp_path, gate={"state_dir": str(tmp_path / "var")})
    assert main(["--settings", str(settings), "demo", "--clip", str(clip), "--fast"]) == 1
    out = capsys.readouterr().out
    assert "[MISMATCH] visitor 1: expected grant (all_masked), got nothing" in out
    assert main(["--settings", str(settings), "status", "--demo"]) == 0
    assert "not running since" in capsys.readouterr().out
