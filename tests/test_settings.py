"""Settings: every section rejects bad values with the dotted key and what is allowed."""

from pathlib import Path

import pytest

from gate.cli import main
from gate.errors import ConfigError
from gate.settings import EXIT_CONFIG, Settings, load_settings, parse_settings, redacted

REPO = Path(__file__).resolve().parent.parent


def test_shipped_settings_file_is_valid_and_documents_the_defaults():
    assert load_settings(REPO / "settings.toml", environ={}) == Settings()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"gate": {"id": "Front Door"}}, "gate.id: String should match pattern"),
        ({"gate": {"log_level": "LOUD"}}, "gate.log_level: must be one of 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ({"camera": {"kind": "usb"}}, "camera.kind: must be one of 'auto', 'v4l2', 'file', 'stream' or 'picamera2' (got 'usb')"),
        ({"camera": {"stall_timeout_s": 0}}, "camera.stall_timeout_s: Input should be greater than 0"),
        ({"detector": {"roi": [0.5, 0.0, 0.2, 1.0]}}, "detector: Value error, roi must be [x0, y0, x1, y1] with x0 < x1"),
        ({"detector": {"score_threshold": 1.5}}, "detector.score_threshold: Input should be less than or equal to 1"),
        ({"classifier": {"threads": 0}}, "classifier.threads: Input should be greater than or equal to 1"),
        ({"policy": {"rule": "masks_please"}}, "policy.rule: must be one of 'all_masked', 'any_masked' or 'observe'"),
        ({"privacy": {"retention_days": 365}}, "privacy.retention_days: Input should be less than or equal to 90"),
        ({"journal": {"max_bytes": 10}}, "journal.max_bytes: Input should be greater than or equal to 10000"),
        ({"door": {"pin_factory": "gpio"}}, "door.pin_factory: must be one of 'mock', 'lgpio', 'rpigpio' or 'native'"),
        ({"mqtt": {"port": 70000}}, "mqtt.port: Input should be less than or equal to 65535 (got 70000)"),
        ({"mqtt": {"tls": {"enabled": "sometimes"}}}, "mqtt.tls.enabled: Input should be a valid boolean"),
        ({"outbox": {"max_events": 5}}, "outbox.max_events: Input should be greater than or equal to 100"),
        ({"metrics": {"prometheus_port": 80}}, "metrics.prometheus_port: Input should be greater than or equal to 1024"),
        ({"mqtt": {"hots": "broker"}}, "mqtt.hots: unknown key"),
        ({"camra": {}}, "camra: unknown key"),
    ],
)
def test_each_section_names_the_bad_key(data, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, environ={})
    assert fragment in str(caught.value)


def test_all_problems_are_reported_together():
    with pytest.raises(ConfigError, match=r"\(3 problems\)"):
        parse_settings({"camera": {"fps": -1}, "door": {"unlock_s": 0}, "mqtt": {"port": 0}}, environ={})


def test_environment_overrides_are_typed_and_validated():
    settings = parse_settings({}, environ={"MASKGATE__MQTT__PORT": "8883", "MASKGATE__MQTT__TLS__ENABLED": "true", "MASKGATE__MQTT__HOST": "broker.lan"})
    assert (settings.mqtt.port, settings.mqtt.tls.enabled, settings.mqtt.host) == (8883, True, "broker.lan")
    with pytest.raises(ConfigError, match="door.unlock_s"):
        parse_settings({}, environ={"MASKGATE__DOOR__UNLOCK_S": "soon"})


def test_secrets_are_redacted_and_not_echoed_in_errors():
    settings = parse_settings({"mqtt": {"password_file": "/run/credentials/x"}}, environ={})
    assert redacted(settings)["mqtt"]["password_file"] == "***"


def test_invalid_file_exits_with_the_config_status(tmp_path, capsys):
    bad = tmp_path / "settings.toml"
    bad.write_text('[door]\nrelay_active_high = "maybe"\n')
    assert main(["--settings", str(bad), "config", "check"]) == EXIT_CONFIG
    assert "door.relay_active_high" in capsys.readouterr().err
    bad.write_text("[door\n")
    assert main(["--settings", str(bad), "config", "check"]) == EXIT_CONFIG
    assert "not valid TOML" in capsys.readouterr().err
