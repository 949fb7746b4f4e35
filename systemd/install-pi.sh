#!/usr/bin/env bash
# Install (or upgrade) maskgate as a systemd service on a Raspberry Pi
# (Raspberry Pi OS Bookworm / Debian 12 or later: systemd >= 252 for the credential fallback).
#
#   sudo systemd/install-pi.sh [REPO]      REPO: the maskgate checkout (default: this script's)
#
# Idempotent: re-running upgrades the code and the unit, and never overwrites
# /etc/maskgate/settings.toml or /etc/maskgate/mqtt_password.
# Runtime only: installs maskgate[pi] (LiteRT, OpenCV, gpiozero, lgpio, Picamera2), never TensorFlow.
set -euo pipefail

REPO=$(cd "${1:-$(dirname "$0")/..}" && pwd)
PREFIX=/opt/maskgate
ETC=/etc/maskgate
USER_NAME=maskgate
UNIT_DIR=/etc/systemd/system

say() { printf '==> %s\n' "$*"; }
die() { printf 'install-pi: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root: sudo $0 ${1:-}"
[[ -f $REPO/pyproject.toml && -f $REPO/systemd/maskgate.service ]] || die "$REPO is not a maskgate checkout"
command -v systemctl >/dev/null || die "systemd is required"

# Picamera2 and lgpio come from apt (libcamera has no pip wheels); the venv sees them via
# --system-site-packages, so pip finds maskgate[pi]'s extras already satisfied.
if command -v apt-get >/dev/null; then
    missing=()
    for pkg in python3-venv python3-picamera2 python3-lgpio; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        say "apt-get install ${missing[*]}"
        apt-get update -q
        apt-get install -y --no-install-recommends "${missing[@]}"
    fi
fi

say "system user $USER_NAME (groups video, gpio)"
getent group gpio >/dev/null || groupadd --system gpio
getent group video >/dev/null || groupadd --system video
if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/maskgate --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
fi
usermod --append --groups video,gpio "$USER_NAME"

say "virtual environment in $PREFIX/.venv"
install -d -m 0755 "$PREFIX" "$PREFIX/models"
[[ -x $PREFIX/.venv/bin/python ]] || python3 -m venv --system-site-packages "$PREFIX/.venv"
"$PREFIX/.venv/bin/pip" install --quiet --upgrade pip
"$PREFIX/.venv/bin/pip" install --quiet --upgrade "$REPO[pi]"
[[ -f $REPO/README.md ]] && install -m 0644 "$REPO/README.md" "$PREFIX/README.md"

say "classifier model"
shopt -s nullglob
models=("$REPO"/models/*.tflite)
if ((${#models[@]})); then
    for model in "${models[@]}"; do
        contract=${model%.tflite}.json
        [[ -f $contract ]] || die "$model has no contract $contract beside it"
        install -m 0644 "$model" "$contract" "$PREFIX/models/"
    done
else
    say "WARNING: no model in $REPO/models; copy a .tflite and its .json contract to $PREFIX/models"
fi

say "face detector assets"
"$PREFIX/.venv/bin/gate-cli" assets fetch --dir "$PREFIX/assets"

say "configuration in $ETC"
install -d -m 0750 -g "$USER_NAME" "$ETC"
if [[ ! -e $ETC/settings.toml ]]; then
    install -m 0640 -g "$USER_NAME" "$REPO/settings.toml" "$ETC/settings.toml"
    # A Pi drives real pins (lgpio, not the demo's mock GPIO) and keeps its state where the unit
    # may write (also what `gate-cli status` then reads); the status file, rewritten every 5 s, in
    # RAM (the unit's RuntimeDirectory), so the SD card is written only for what must survive.
    sed -i -e 's/^pin_factory = "mock"/pin_factory = "lgpio"/' -e 's|^state_dir = "var"|state_dir = "/var/lib/maskgate"|' \
        -e 's|^# runtime_dir = "/run/maskgate"|runtime_dir = "/run/maskgate"|' "$ETC/settings.toml"
    grep -q '^pin_factory = "lgpio"' "$ETC/settings.toml" || die "could not set door.pin_factory = \"lgpio\" in $ETC/settings.toml"
    say "created $ETC/settings.toml: review [door] pins and [mqtt] before relying on it"
else
    say "kept the existing $ETC/settings.toml"
fi
if [[ ! -e $ETC/mqtt_password ]]; then
    say "no $ETC/mqtt_password (fine for a broker without passwords); to add one:"
    say "  sudo install -m 0600 /dev/stdin $ETC/mqtt_password   # type the password, then Ctrl-D"
fi
(cd "$PREFIX" && MASKGATE__GATE__STATE_DIR=/var/lib/maskgate MASKGATE_ASSETS="$PREFIX/assets" \
    "$PREFIX/.venv/bin/gate-cli" --settings "$ETC/settings.toml" config check) \
    || die "$ETC/settings.toml is invalid (see above); the service would refuse to start (exit 78)"

# The relay's level from power-on until the daemon drives it is the firmware's: see README "Wiring".
relay=$("$PREFIX/.venv/bin/gate-cli" --settings "$ETC/settings.toml" config show | "$PREFIX/.venv/bin/python" -c '
import json, sys
door = json.load(sys.stdin)["door"]
pin = door["relay_pin"].upper().removeprefix("GPIO")  # config.txt wants the BCM number
print(pin if pin.isdigit() else "<BCM-number>", "dl" if door["relay_active_high"] else "dh")') \
    || die "cannot read [door] from $ETC/settings.toml"
read -r relay_pin relay_level <<<"$relay"
boot_config=/boot/firmware/config.txt
[[ -f $boot_config ]] || boot_config=/boot/config.txt
if [[ -f $boot_config ]] && ! grep -Eq "^gpio=${relay_pin}=op,${relay_level}" "$boot_config"; then
    say "WARNING: add 'gpio=${relay_pin}=op,${relay_level}' to $boot_config so the relay stays off from power-on until the daemon starts"
fi

say "systemd unit"
install -m 0644 "$REPO/systemd/maskgate.service" "$UNIT_DIR/maskgate.service"
systemd-analyze verify "$UNIT_DIR/maskgate.service" || die "the unit does not verify"
systemctl daemon-reload
systemctl enable maskgate.service
systemctl restart maskgate.service  # start, or pick up an upgrade

say "done: systemctl status maskgate; journalctl -u maskgate -f; $PREFIX/.venv/bin/gate-cli --settings $ETC/settings.toml status"
