#!/usr/bin/env bash
# Record systemd's own security assessment of the unit (quoted by the README):
#   benchmarks/results/systemd-security.txt
set -euo pipefail
cd "$(dirname "$0")/.."
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found (apt-get install systemd)" >&2; exit 1; }
out=benchmarks/results/systemd-security.txt
mkdir -p "$(dirname "$out")"
{
    echo "# systemd-analyze security --offline=true systemd/maskgate.service"
    echo "# $(systemd-analyze --version | head -n 1)"
    SYSTEMD_COLORS=0 systemd-analyze security --offline=true --no-pager systemd/maskgate.service
} >"$out"
tail -n 1 "$out"
