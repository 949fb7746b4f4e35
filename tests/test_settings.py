"""Settings: every section rejects bad values with the dotted key and what is allowed."""

from pathlib import Path

import pytest

from gate.cli import main
from gate.errors import ConfigError
from gate.settings import EXIT_CONFIG, find_settings_file, load_relay_settings, load_settings, parse_settings, redacted

REPO = Path(__file__).resolve().parent.parent


def test_shipped_settings_file_is_valid_and_documents_the_defaults():
    shipped = load_settings(REPO / "settings.toml", environ={})
    defaults = parse_settings({}, environ={})
    # its one relative path is relative to the file, not to the working directory
    assert shipped.gate.state_dir == REPO / "var"
    shipped = shipped.model_copy(update={"gate": shipped.gate.model_copy(update={"state_dir": Path("var")})})
    assert shipped.model_dump() == defaults.model_dump()  # a dict diff names the key that drifted


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"gate": {"id": "Front Door"}}, "gate.id: String should match pattern"),
        ({"gate": {"log_level": "LOUD"}}, "gate.log_level: must be one of 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ({"camera": {"kind": "usb"}}, "camera.kind: must be one of 'auto', 'v4l2', 'file', 'stream' or 'picamera2' (got 'usb')"),
        ({"camera": {"stall_timeout_s": 0}}, "camera.stall_timeout_s: Input should be greater than 0"),
        ({"detector": {"roi": [0.5, 0.0, 0.2, 1.0]}}, "detector: roi must be [x0, y0, x1, y1] with x0 < x1"),
        ({"detector": {"score_threshold": 1.5}}, "detector.score_threshold: Input should be less than or equal to 1"),
        ({"classifier": {"threads": 0}}, "classifier.threads: Input should be greater than or equal to 1"),
        ({"policy": {"rule": "masks_please"}}, "policy.rule: must be one of 'all_masked', 'any_masked' or 'observe'"),
        ({"privacy": {"retention_days": 365}}, "privacy.retention_days: Input should be less than or equal to 90"),
        ({"journal": {"max_bytes": 10}}, "journal.max_bytes: Input should be greater than or equal to 10000"),
        ({"door": {"pin_factory": "rpigpio"}}, "door.pin_factory: must be one of 'mock' or 'lgpio' (got 'rpigpio')"),
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


def test_environment_values_that_look_like_numbers_fill_text_keys():
    settings = parse_settings({"camera": {"source": "/dev/video2"}}, environ={
        "MASKGATE__CAMERA__SOURCE": "0", "MASKGATE__DOOR__RELAY_PIN": "17", "MASKGATE__DOOR__GREEN_LED_PIN": "none",
        "MASKGATE__DETECTOR__ROI": "[0, 0.1, 1, 0.9]", "MASKGATE__GATE__ID": "2",
    })
    assert (settings.camera.source, settings.door.relay_pin, settings.gate.id) == ("0", "17", "2")
    assert settings.door.green_led_pin is None and settings.detector.roi == (0.0, 0.1, 1.0, 0.9)


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"MASKGATE__DOOR__UNLOCK_S": "soon"}, "MASKGATE__DOOR__UNLOCK_S (environment): door.unlock_s: Input should be a valid number"),
        ({"MASKGATE__CAMERA__SOURSE": "0"}, "MASKGATE__CAMERA__SOURSE (environment): camera.sourse: unknown key"),
        ({"MASKGATE__CAMRA__SOURCE": "0"}, "MASKGATE__CAMRA__SOURCE (environment): camra is not a settings section"),
        ({"MASKGATE__DETECTOR__ROI": "[0, 0"}, "MASKGATE__DETECTOR__ROI (environment): a list or table that is not valid JSON"),
        ({"MASKGATE__DETECTOR__ROI": "[0.5, 0, 0.2, 1]"}, "MASKGATE__DETECTOR__ROI (environment): detector: roi must be"),
    ],
)
def test_a_bad_override_is_blamed_on_its_variable_not_on_the_file(tmp_path, environ, fragment):
    path = tmp_path / "settings.toml"
    path.write_text('[door]\nunlock_s = 4.0\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ)
    assert fragment in str(caught.value)


def test_a_bad_file_value_is_named_by_its_key_without_an_environment_variable(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('[door]\nunlock_s = "soon"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={"MASKGATE__MQTT__PORT": "8883"})
    assert f"{path} is invalid (1 problem): door.unlock_s: Input should be a valid number" in str(caught.value)
    assert "environment" not in str(caught.value)


def test_relative_paths_in_a_file_are_relative_to_that_file(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "settings.toml").write_text(
        '[gate]\nstate_dir = "state"\n[classifier]\nmodel = "models/m.tflite"\n[detector]\nassets_dir = "assets"\n'
        '[camera]\nsource = "door.mp4"\n[outbox]\npath = "outbox.sqlite3"\n[journal]\npath = "logs/decisions.jsonl"\n'
        '[mqtt]\npassword_file = "secret"\n[mqtt.tls]\nca_file = "/etc/ca.crt"\n'
    )
    monkeypatch.chdir(tmp_path)  # anywhere but the file's folder
    settings = load_settings(Path("site/settings.toml"), environ={"MASKGATE__DETECTOR__ASSETS_DIR": "env-assets"})
    site = site.resolve()
    assert settings.gate.state_dir == site / "state"
    assert settings.classifier.model == site / "models" / "m.tflite"
    assert settings.camera.source == str(site / "door.mp4")
    assert settings.mqtt.password_file == site / "secret" and settings.mqtt.tls.ca_file == Path("/etc/ca.crt")
    assert settings.detector.assets_dir == Path("env-assets")  # the environment's paths: as given
    # documented as relative to gate.state_dir: left alone
    assert settings.outbox.path == Path("outbox.sqlite3") and settings.journal.path == Path("logs/decisions.jsonl")
    assert settings.state_path(settings.outbox.path) == site / "state" / "outbox.sqlite3"


def test_without_a_file_the_model_is_the_packaged_one():
    from gate.models import default_model_path

    model = parse_settings({}, environ={}).classifier.model
    assert model == default_model_path() and model.is_absolute() and model.is_file()
    assert model.with_suffix(".json").is_file()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\xef\xbb\xbf[door]\nunlock_s = 4.0\n", "starts with a byte-order mark (BOM)"),
        ("[gate]\nid = \"tür\"\n".encode("latin-1"), "not UTF-8 text (byte 0xfc at offset 14)"),
        ("[gate]\nid = \"front\"\n".encode("utf-16"), "not UTF-8 text"),
    ],
)
def test_encoding_problems_exit_78_with_the_reason_on_one_line(tmp_path, capsys, content, fragment):
    path = tmp_path / "settings.toml"
    path.write_bytes(content)
    assert main(["config", "check", "--settings", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_camera_backoff_is_capped_so_a_returning_camera_is_used_within_5_s():
    assert parse_settings({}, environ={}).camera.reconnect_max_s <= 4.0
    with pytest.raises(ConfigError, match="camera.reconnect_max_s: Input should be less than or equal to 4"):
        parse_settings({"camera": {"reconnect_max_s": 30}}, environ={})


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


# -- which file, without --settings; what `door release` reads --------------------------------


def test_the_installed_settings_are_found_when_there_is_no_local_file(tmp_path):
    local, installed = tmp_path / "here" / "settings.toml", tmp_path / "etc" / "maskgate" / "settings.toml"
    assert find_settings_file(local, installed) is None  # neither: the caller's defaults or "no such file"
    installed.parent.mkdir(parents=True)
    installed.write_text("")
    assert find_settings_file(local, installed) == installed  # an operator on the Pi: no path needed
    local.parent.mkdir()
    local.write_text("")
    assert find_settings_file(local, installed) == local  # a checkout's own file comes first


def test_an_installed_file_this_user_may_not_read_is_named_not_skipped(tmp_path):
    """Outside the maskgate group: `gate-cli status` says it cannot read /etc/maskgate/settings.toml,
    rather than quietly showing the built-in defaults' state folder."""
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads any folder")
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "settings.toml").write_text("")
    folder.chmod(0o000)
    try:
        assert find_settings_file(tmp_path / "settings.toml", folder / "settings.toml") == folder / "settings.toml"
    finally:
        folder.chmod(0o755)


def test_relay_settings_ignore_every_other_section_and_door_key(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('[door]\npin_factory = "lgpio"\nrelay_pin = "GPIO5"\nrelay_active_high = false\nunlock_s = -1\n'
                    '[mqtt]\nport = "not a port"\ntypo = 1\n[no_such_section]\n')
    with pytest.raises(ConfigError):
        load_settings(path, environ={})
    relay = load_relay_settings(path, environ={"MASKGATE__MQTT__PORT": "nope", "MASKGATE__DOOR__UNLOCK_S": "x"})
    assert (relay.pin_factory, relay.relay_pin, relay.relay_active_high) == ("lgpio", "GPIO5", False)
    overridden = load_relay_settings(path, environ={"MASKGATE__DOOR__RELAY_PIN": "6", "MASKGATE__DOOR__RELAY_ACTIVE_HIGH": "true"})
    assert (overridden.relay_pin, overridden.relay_active_high) == ("6", True)


def test_relay_settings_still_refuse_a_bad_relay_key(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('[door]\nrelay_pin = ""\n[mqtt]\nport = 0\n')
    with pytest.raises(ConfigError) as caught:
        load_relay_settings(path, environ={})
    assert "door.relay_pin" in str(caught.value) and "mqtt" not in str(caught.value)
