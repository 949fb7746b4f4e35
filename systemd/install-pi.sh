#!/usr/bin/env bash
# Install (or upgrade) maskgate as a systemd service on a Raspberry Pi
# (Raspberry Pi OS Bookworm / Debian 12 or later: systemd >= 252 for the credential fallback).
#
#   sudo systemd/install-pi.sh [REPO]      REPO: the maskgate checkout (default: this script's)
#
# Idempotent: re-running upgrades the code and the unit, and never overwrites
# /etc/maskgate/settings.toml or /etc/maskgate/mqtt_password.
# Runtime only, never TensorFlow: LiteRT, OpenCV and gpiozero from PyPI; lgpio and Picamera2 from
# apt (libcamera has no wheels), seen by the venv through --system-site-packages. The venv keeps
# the system's numpy (a pip constraint), because the system's picamera2/simplejpeg are built
# against it ("numpy.dtype size changed" under any other).
# Without a running systemd (a chroot, an image being built) the unit is installed and enabled,
# not started.
set -euo pipefail

REPO=$(cd "${1:-$(dirname "$0")/..}" && pwd)
PREFIX=/opt/maskgate
ETC=/etc/maskgate
STATE=/var/lib/maskgate
USER_NAME=maskgate  # also the operators' group: its members read the settings and the state
UNIT_DIR=/etc/systemd/system
ON_PATH=/usr/local/bin/gate-cli

say() { printf '==> %s\n' "$*"; }
die() { printf 'install-pi: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root: sudo $0 ${1:-}"
[[ -f $REPO/pyproject.toml && -f $REPO/systemd/maskgate.service ]] || die "$REPO is not a maskgate checkout"
command -v systemctl >/dev/null || die "systemd is required"

# python3-lgpio and python3-picamera2 are Raspberry Pi OS packages (Debian has neither): installed
# where the package sources have them, reported where they do not.
pi_missing=()
if command -v apt-get >/dev/null; then
    missing=()
    for pkg in python3-venv python3-numpy python3-lgpio python3-picamera2; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        say "apt-get update"
        apt-get update -q
        available=()
        for pkg in "${missing[@]}"; do
            if apt-cache show "$pkg" >/dev/null 2>&1; then available+=("$pkg"); else pi_missing+=("$pkg"); fi
        done
        if ((${#available[@]})); then
            say "apt-get install ${available[*]}"
            apt-get install -y --no-install-recommends "${available[@]}"
        fi
    fi
fi
command -v python3 >/dev/null || die "python3 is required"

say "system user $USER_NAME (groups video, gpio)"
getent group gpio >/dev/null || groupadd --system gpio
getent group video >/dev/null || groupadd --system video
if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
fi
usermod --append --groups video,gpio "$USER_NAME"

say "virtual environment in $PREFIX/.venv"
install -d -m 0755 "$PREFIX"
[[ -x $PREFIX/.venv/bin/python ]] || python3 -m venv --system-site-packages "$PREFIX/.venv"
system_numpy=$(cd / && python3 -c 'import numpy; print(numpy.__version__)') || die "the system's numpy cannot be imported (apt-get install python3-numpy)"
if [[ $("$PREFIX/.venv/bin/python" -c 'import numpy; print(numpy.__file__)' 2>/dev/null) == "$PREFIX"/* ]]; then
    say "removing the venv's own numpy (an earlier install's): the system's $system_numpy is used"
    "$PREFIX/.venv/bin/pip" uninstall --quiet --yes numpy
fi
printf '# written by install-pi.sh: the system numpy, which its picamera2 and simplejpeg were built for\nnumpy==%s\n' \
    "$system_numpy" >"$PREFIX/constraints.txt"
"$PREFIX/.venv/bin/pip" install --quiet --upgrade pip
"$PREFIX/.venv/bin/pip" install --quiet --upgrade --constraint "$PREFIX/constraints.txt" "$REPO"
[[ -f $REPO/README.md ]] && install -m 0644 "$REPO/README.md" "$PREFIX/README.md"
say "numpy $("$PREFIX/.venv/bin/python" -c 'import numpy; print(numpy.__version__)') in the venv (the system's: $system_numpy)"

# Import each Pi library as the gate would (in a scratch folder: importing lgpio makes a pipe there).
scratch=$(mktemp -d)
for module in lgpio picamera2; do
    if problem=$(cd "$scratch" && "$PREFIX/.venv/bin/python" -c "import $module" 2>&1); then
        say "$module: imports in the venv"
    else
        say "WARNING: $module cannot be imported in the venv (${problem##*$'\n'})"
    fi
done
rm -rf "$scratch"
if ((${#pi_missing[@]})); then
    say "WARNING: not in this system's package sources: ${pi_missing[*]} (Raspberry Pi OS packages);" \
        "door.pin_factory = \"lgpio\" and camera.source = \"picamera2\" will refuse to start (exit 78) without them"
fi

say "face detector assets"
"$PREFIX/.venv/bin/gate-cli" assets fetch --dir "$PREFIX/assets"

say "configuration in $ETC, state in $STATE (group $USER_NAME may read both)"
install -d -m 0750 -g "$USER_NAME" "$ETC"
install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$STATE"
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
MASKGATE__GATE__STATE_DIR=$STATE MASKGATE_ASSETS="$PREFIX/assets" "$PREFIX/.venv/bin/gate-cli" --settings "$ETC/settings.toml" config check \
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
if [[ ! -f $boot_config ]]; then
    say "no /boot/firmware/config.txt (not a Raspberry Pi?): on the Pi add 'gpio=${relay_pin}=op,${relay_level}' to it"
elif ! grep -Eq "^gpio=${relay_pin}=op,${relay_level}" "$boot_config"; then
    say "WARNING: add 'gpio=${relay_pin}=op,${relay_level}' to $boot_config so the relay stays off from power-on until the daemon starts"
fi

say "operators: gate-cli on the PATH; members of the $USER_NAME group run status, config check, test-image without sudo"
ln -sfn "$PREFIX/.venv/bin/gate-cli" "$ON_PATH"
if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
    usermod --append --groups "$USER_NAME" "$SUDO_USER"
    say "added $SUDO_USER to the $USER_NAME group (takes effect at the next login); others: sudo usermod -aG $USER_NAME NAME"
fi

say "systemd unit"
install -m 0644 "$REPO/systemd/maskgate.service" "$UNIT_DIR/maskgate.service"
systemd-analyze verify "$UNIT_DIR/maskgate.service" || die "the unit does not verify"
if [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    systemctl enable maskgate.service
    systemctl restart maskgate.service  # start, or pick up an upgrade
    say "done: systemctl status maskgate; journalctl -u maskgate -f; gate-cli status"
else
    systemctl enable maskgate.service  # offline: makes the symlinks only
    say "systemd is not running here (a chroot or a container): maskgate.service is installed and enabled but NOT started;" \
        "it starts at the next boot"
fi
