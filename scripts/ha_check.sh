#!/usr/bin/env bash
# The gate against a real Home Assistant Core (issue 20): scripts/ha_check.py says what is checked.
# First run: installs Home Assistant Core $HA_VERSION from PyPI into its own venv under build/ha/
# (Home Assistant needs Python 3.13; its own package_constraints.txt, read from the wheel, pins
# every dependency, so pip resolves at once) — about 2 minutes; later runs reuse the venv.
# Needs: the project's .venv (make bootstrap), python3.13, mosquitto. Run: make ha-check
set -euo pipefail
cd "$(dirname "$0")/.."
HA_VERSION="${HA_VERSION:-2025.4.4}"
HA_DIR="${HA_DIR:-build/ha}"
PYTHON="${PYTHON:-.venv/bin/python}"
venv="$HA_DIR/venv-$HA_VERSION"

python313=""
for candidate in ${PYTHON313:-} python3.13 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13; do
  # a pyenv shim is on PATH without a 3.13 behind it: take the first that really runs
  if "$candidate" -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
    python313="$candidate"
    break
  fi
done

installed() {
  "$venv/bin/python" -c "from homeassistant.const import __version__ as v; import paho.mqtt, hass_frontend; raise SystemExit(v != '$HA_VERSION')" 2>/dev/null
}

if ! installed; then
  if [ -z "$python313" ]; then
    echo "ha-check: Home Assistant $HA_VERSION needs Python 3.13 (apt-get install python3.13, or pyenv install 3.13; or set PYTHON313=)" >&2
    exit 1
  fi
  echo "ha-check: installing Home Assistant Core $HA_VERSION into $venv (once)"
  rm -rf "$venv"
  "$python313" -m venv "$venv"
  "$venv/bin/pip" download --quiet --no-deps -d "$HA_DIR/wheels" "homeassistant==$HA_VERSION"
  wheel="$HA_DIR/wheels/homeassistant-$HA_VERSION-py3-none-any.whl"
  constraints="$HA_DIR/package_constraints-$HA_VERSION.txt"
  "$venv/bin/python" -c "import sys, zipfile; sys.stdout.write(zipfile.ZipFile(sys.argv[1]).read('homeassistant/package_constraints.txt').decode())" "$wheel" > "$constraints"
  # paho-mqtt: the MQTT integration's requirement; home-assistant-frontend: set up at every start.
  # Both pinned by the constraints; installed now so Home Assistant installs nothing at run time.
  started=$SECONDS
  "$venv/bin/pip" install --quiet -c "$constraints" "$wheel" paho-mqtt home-assistant-frontend
  echo "ha-check: installed in $((SECONDS - started)) s"
fi

clip=build/demo/door-clip.mp4
if [ ! -f "$clip" ]; then
  "$PYTHON" -m training.cli door-clip --out "$clip"
fi
exec "$PYTHON" scripts/ha_check.py --hass "$venv/bin/hass" --clip "$clip" "$@"
