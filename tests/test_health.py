"""status.json round trip, the human summary, and the Prometheus endpoint."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from gate.errors import ConfigError, StateError
from gate.health import MetricsServer, format_status, read_status, write_status
from tests.broker import free_port

STATUS = {
    "gate_id": "front-door", "uptime_s": 3725.0, "fps": 14.2, "frames": 1000, "faces": 120,
    "stage_ms": {"detect": 21.5, "classify": 3.1},
    "camera": {"state": "running", "detail": "", "dropped": 4, "stale": 0, "reopens": 1},
    "door": "locked", "decisions": {"grant": 7, "deny": 2},
    "last_decision": {"time": "2024-05-01T12:00:00.000Z", "verdict": "deny", "reason": "without_mask"},
    "outbox": {"pending": 3, "sent_total": 6, "dropped": 0, "last_seq": 9, "oldest_pending_age_s": 42.0},
    "mqtt": {"connected": False, "last_error": "MQTT broker 10.0.0.2:8883 is unreachable: Connection refused", "connects": 1},
    "model_sha256": "ab" * 32,
}


def test_round_trip_is_atomic(tmp_path: Path) -> None:
    write_status(tmp_path, STATUS)
    write_status(tmp_path, {**STATUS, "door": "unlocked"})
    status = read_status(tmp_path)
    assert status["door"] == "unlocked" and status["outbox"] == STATUS["outbox"]
    assert 0 <= status["age_s"] < 60
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temporary file left behind


def test_missing_and_corrupt_status_name_the_file(tmp_path: Path) -> None:
    assert read_status(tmp_path) is None  # never started here: not an error (`status` says "not running")
    (tmp_path / "status.json").write_text("{truncated")
    with pytest.raises(StateError, match="status.json: not valid JSON"):
        read_status(tmp_path)


def test_format_status(tmp_path: Path) -> None:
    write_status(tmp_path, STATUS)
    text = format_status(read_status(tmp_path))
    assert "door      locked" in text
    assert "3 pending, 6 sent, 0 dropped, oldest 42 s" in text
    assert "NOT connected (MQTT broker 10.0.0.2:8883 is unreachable" in text
    assert "deny without_mask" in text and "01:02:05" in text
    assert "not running since about" in format_status({**STATUS, "age_s": 600})
    assert "door      ?" in format_status({})


def test_prometheus_endpoint_on_loopback() -> None:
    with MetricsServer(free_port()) as server:
        server.update(STATUS)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            text = response.read().decode()
    assert 'maskgate_decisions_total{verdict="grant"} 7.0' in text
    assert 'maskgate_door_state{state="locked"} 1.0' in text and 'maskgate_door_state{state="fault"} 0.0' in text
    assert "maskgate_outbox_pending 3.0" in text and "maskgate_mqtt_connected 0.0" in text
    assert 'maskgate_stage_latency_ms{stage="detect"} 21.5' in text


def test_port_in_use_is_a_config_error() -> None:
    with MetricsServer(free_port()) as server, pytest.raises(ConfigError, match="prometheus_port"):
        MetricsServer(server.port)
