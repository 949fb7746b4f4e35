"""The systemd unit: systemd's own verifier, the settings we rely on, and the install script's syntax."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from gate.settings import EXIT_CONFIG

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNIT = SYSTEMD / "maskgate.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (apt-get install systemd)")


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@needs_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # The venv path only exists on the Pi: point ExecStart at a real program, keep everything else.
    text = UNIT.read_text().replace("/opt/maskgate/.venv/bin/gate-cli", shutil.which("true") or "/bin/true")
    (tmp_path / "maskgate.service").write_text(text)
    result = subprocess.run([ANALYZE, "verify", "maskgate.service"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


@needs_analyze
def test_security_exposure_is_low() -> None:
    result = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for maskgate.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


def test_unit_keeps_the_promises_the_code_relies_on() -> None:
    unit = directives()
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["WatchdogSec"] == ["30"] and unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == [str(EXIT_CONFIG)]
    assert unit["User"] == ["maskgate"] and unit["DynamicUser"] == ["no"]
    assert unit["ProtectSystem"] == ["strict"] and unit["DevicePolicy"] == ["closed"]
    assert unit["CapabilityBoundingSet"] == [""] and unit["NoNewPrivileges"] == ["yes"]
    assert "MASKGATE__GATE__STATE_DIR=/var/lib/maskgate" in unit["Environment"] and unit["StateDirectory"] == ["maskgate"]
    assert "MASKGATE__MQTT__PASSWORD_FILE=%d/mqtt_password" in unit["Environment"]
    assert "MASKGATE__PREVIEW__TOKEN_FILE=%d/preview_token" in unit["Environment"]
    assert [v.split(":")[0] for v in unit["LoadCredential"]] == [v.split(":")[0] for v in unit["SetCredential"]] == ["mqtt_password", "preview_token"]
    # the status file, rewritten every 5 s, goes to RAM (not the SD card) and outlives a stop for `gate-cli status`
    assert "MASKGATE__GATE__RUNTIME_DIR=/run/maskgate" in unit["Environment"] and unit["RuntimeDirectory"] == ["maskgate"]
    assert unit["RuntimeDirectoryPreserve"] == ["yes"]


def test_lgpio_gets_a_writable_folder_and_libcamera_its_netlink_socket() -> None:
    """lgpio makes its notification pipe in $LG_WD (else the working folder) when imported, in the
    daemon and in the stop hook; /opt is read-only under ProtectSystem=strict. libcamera watches
    for cameras through a netlink (udev) socket."""
    unit = directives()
    state = f"/var/lib/{unit['StateDirectory'][0]}"  # writable under ProtectSystem=strict, and private
    assert "LG_WD=" + state in unit["Environment"] and unit["WorkingDirectory"] == [state]
    assert unit["StateDirectoryMode"] == ["0750"]  # nobody outside the maskgate group opens the pipes
    assert "AF_NETLINK" in unit["RestrictAddressFamilies"][0].split()
    assert not any("@resources" in line for line in unit["SystemCallFilter"])  # allowed, as part of @system-service
    assert unit["DeviceAllow"][:2] == ["char-video4linux rw", "char-gpiochip rw"]


def test_the_unit_allows_the_devices_of_every_pin_factory_settings_offer() -> None:
    """Each pin factory door.pin_factory accepts must work under DevicePolicy=closed."""
    from typing import get_args

    from gate.settings import RelaySettings

    needs = {"mock": set(), "lgpio": {"char-gpiochip rw"}}
    offered = set(get_args(RelaySettings.model_fields["pin_factory"].annotation))
    assert offered == set(needs)  # a new factory must say here which devices it opens
    assert set().union(*needs.values()) <= set(directives()["DeviceAllow"])


def test_operators_can_read_the_state_folder() -> None:
    unit = directives()
    assert unit["StateDirectoryMode"] == ["0750"] and unit["Group"] == ["maskgate"]


def test_exec_start_is_a_valid_gate_cli_command_line() -> None:
    from gate.cli import build_parser

    argv = shlex.split(directives()["ExecStart"][0])
    assert argv[0].endswith("/gate-cli")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and str(args.settings) == "/etc/maskgate/settings.toml"


@pytest.mark.parametrize("script", [SYSTEMD / "install-pi.sh", SYSTEMD.parent / "scripts" / "pi_smoke.sh"], ids=lambda p: p.name)
def test_install_scripts_parse(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "set -euo pipefail" in script.read_text()
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(script)], check=True)
