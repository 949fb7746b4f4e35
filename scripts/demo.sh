#!/usr/bin/env bash
# The main job on the embedded default: make the door-camera clip (once), then run the whole
# gate on it — no camera, no broker, no GPIO (mock pins) — printing each decision and a summary
# that compares each visitor's verdict and reason with the clip's ground truth: the exit status is
# 1 when the gate got a visitor wrong. `.venv/bin/gate-cli status --demo` shows the demo's status.
set -euo pipefail
cd "$(dirname "$0")/.."
clip=build/demo/door-clip.mp4
if [ ! -f "$clip" ]; then
  .venv/bin/maskgate-train door-clip --out "$clip"
fi
exec .venv/bin/gate-cli demo --clip "$clip" "$@"
