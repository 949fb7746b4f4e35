#!/usr/bin/env bash
# A Pi-like proof of the installer, run by hand (not in CI): a Debian bookworm arm64 root made with
# debootstrap and run under qemu-user-static, systemd/install-pi.sh run inside it as on a Pi (no
# systemd running there: installed and enabled, not started), then, inside the root, what an
# operator does next without sudo or paths: gate-cli --version, config check of the installed
# settings, status, test-image on a photo, demo --fast on the door clip; door release (here no
# lgpio: one line, exit 78), and systemd-analyze verify of the installed unit. The README quotes
# its output.
#
#   sudo bash scripts/pi_smoke.sh [ROOT]     ROOT: the arm64 root (default /var/tmp/maskgate-piroot;
#                                             kept, so a second run skips debootstrap)
#   PYTHON=…/.venv/bin/python   the host's development venv, which renders the photo and the clip
#   QEMU_CPU=cortex-a76          emulate a Pi 5's CPU instead of a Pi 4's
#
# Needs root, network (Debian mirror, PyPI) and about 2 GB. Installs debootstrap, qemu-user-static
# and binfmt-support on the host when missing. Emulated steps run under nice. Not provable here:
# python3-lgpio and python3-picamera2 are Raspberry Pi OS packages, not Debian's; no GPIO chip,
# no camera, no running systemd; a Pi 4's /proc/cpuinfo stands in for the CPU's own.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(realpath -m "${1:-/var/tmp/maskgate-piroot}")
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
OPERATOR=pi  # Raspberry Pi OS's first user; Debian already has an "operator" group
NICE=(nice -n 15)
# The emulated CPU: a Raspberry Pi 4's (cortex-a72; a Pi 5's is cortex-a76). qemu's default "max"
# CPU has features no Pi has, and on it LiteRT's XNNPACK int8 kernels answer wrongly (a bare face
# read with_mask 0.996; LiteRT's reference kernels and the Pi CPUs agree with x86-64).
export QEMU_CPU=${QEMU_CPU:-cortex-a72}

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'pi_smoke: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (debootstrap, chroot, binfmt_misc)"
[[ $ROOT != "$REPO"* ]] || die "keep the arm64 root outside the repository (got $ROOT)"
[[ -x $PYTHON ]] || die "no development venv at $PYTHON (bash scripts/bootstrap.sh, or PYTHON=...)"

say "host tools"
for tool in debootstrap:debootstrap qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support; do
    command -v "${tool%%:*}" >/dev/null || { apt-get update -q && apt-get install -y --no-install-recommends "${tool##*:}"; }
done
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 2>/dev/null || true
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "qemu-aarch64 is not registered with binfmt_misc"

if [[ ! -f $ROOT/.maskgate-debootstrap-done ]]; then
    say "debootstrap bookworm arm64 into $ROOT"
    started=$SECONDS
    "${NICE[@]}" debootstrap --arch=arm64 --variant=minbase --include=systemd,ca-certificates bookworm "$ROOT" "$MIRROR"
    touch "$ROOT/.maskgate-debootstrap-done"
    say "debootstrap took $((SECONDS - started)) s"
fi

mounts=()
cleanup() {
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() {  # bind <host path> <path inside ROOT> [mount options]
    mkdir -p "$ROOT$2"
    mountpoint -q "$ROOT$2" || { mount --bind "$1" "$ROOT$2" && mounts+=("$ROOT$2"); }
}
mountpoint -q "$ROOT/proc" || { mount -t proc proc "$ROOT/proc" && mounts+=("$ROOT/proc"); }
# qemu-user passes the host's x86 /proc/cpuinfo through, and LiteRT's CPU detection crashes on it
# (SIGSEGV in Interpreter()): the root sees a Raspberry Pi 4's instead (Cortex-A72, one entry per
# host CPU, as /sys says).
cpuinfo=$ROOT/.maskgate-pi4-cpuinfo
for ((cpu = 0; cpu < $(nproc --all); cpu++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$cpu"
done >"$cpuinfo"
printf 'Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n' >>"$cpuinfo"
mount --bind "$cpuinfo" "$ROOT/proc/cpuinfo" && mounts+=("$ROOT/proc/cpuinfo")
bind /sys /sys
bind /dev /dev
bind /dev/pts /dev/pts
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# A certificate authority the host trusts locally (a TLS-inspecting proxy's, say) is trusted inside
# too, or pip cannot reach PyPI; a Pi on an open network needs nothing of the sort.
new_ca=0
for ca in /usr/local/share/ca-certificates/*.crt; do
    [[ -f $ca ]] && ! cmp -s "$ca" "$ROOT/usr/local/share/ca-certificates/${ca##*/}" || continue
    cp "$ca" "$ROOT/usr/local/share/ca-certificates/"
    new_ca=1
done
((new_ca == 0)) || chroot "$ROOT" update-ca-certificates >/dev/null  # slow under emulation: only when one was added

# As on a Pi: a clean environment, a login's PATH, the machine's own pip (none of the host's settings).
inside() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU" "$@"; }
as_operator() { inside runuser -u "$OPERATOR" -- /usr/bin/env HOME="/home/$OPERATOR" sh -c "cd && $1"; }

say "the checkout's tracked files -> $ROOT/root/maskgate"
rm -rf "$ROOT/root/maskgate"
mkdir -p "$ROOT/root/maskgate"
(cd "$REPO" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$ROOT/root/maskgate"

say "test inputs made on the host: a door photo with one bare face, the door clip and its script"
inputs=$ROOT/root/inputs
mkdir -p "$inputs"
(cd "$REPO" && PYTHONPATH=$REPO "$PYTHON" - "$inputs/photo.jpg" <<'EOF'
import sys
import cv2
from tests.door_scenes import door_background, paste, synthetic_faces

face = synthetic_faces(1, seed=4242)[0]
frame = door_background(seed=8)
paste(frame, face.bare, face.box, face_height=150, x=240, y=110)
cv2.imwrite(sys.argv[1], cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
EOF
)
[[ -f $inputs/door-clip.mp4 ]] || (cd "$REPO" && PYTHONPATH=$REPO "${NICE[@]}" "$PYTHON" -m training.cli door-clip --out "$inputs/door-clip.mp4")
host_answer=$(cd "$REPO" && PYTHONPATH=$REPO "$PYTHON" -m gate.cli test-image --json "$inputs/photo.jpg" | grep '^{')

say "an operator account (install-pi.sh adds the sudo user to the maskgate group)"
inside sh -c "id $OPERATOR >/dev/null 2>&1 || useradd --create-home --shell /bin/bash $OPERATOR"
install -m 0644 "$inputs/photo.jpg" "$inputs/door-clip.mp4" "$inputs/door-clip.json" "$ROOT/home/$OPERATOR/"

say "install-pi.sh inside the arm64 root (SUDO_USER=$OPERATOR, as after: sudo systemd/install-pi.sh)"
started=$SECONDS
inside SUDO_USER=$OPERATOR "${NICE[@]}" bash /root/maskgate/systemd/install-pi.sh /root/maskgate
say "install-pi.sh took $((SECONDS - started)) s"

failures=0
check() {  # check <expected exit status> <description> <command run inside...>
    local expected=$1 what=$2 status=0 started=$SECONDS
    shift 2
    say "$what"
    "$@" || status=$?
    if [[ $status == "$expected" ]]; then
        printf -- '--> ok: exit %s as expected (%d s)\n' "$status" $((SECONDS - started))
    else
        printf -- '--> FAILED: exit %s, expected %s\n' "$status" "$expected"
        failures=$((failures + 1))
    fi
}

check 0 "uname -m; the emulated CPU; the venv's numpy, OpenCV, LiteRT" inside sh -c \
    'uname -m && echo "QEMU_CPU=$QEMU_CPU" && /opt/maskgate/.venv/bin/python -c "import numpy, cv2, ai_edge_litert; from importlib.metadata import version as v; print(\"numpy\", numpy.__version__, numpy.__file__); print(\"opencv\", cv2.__version__, \"ai-edge-litert\", v(\"ai-edge-litert\"))"'
check 0 "operator: gate-cli --version" as_operator "gate-cli --version"
check 0 "operator: gate-cli config check (no ./settings.toml: the installed one)" as_operator "gate-cli config check"
check 0 "operator: gate-cli status (the daemon never ran here)" as_operator "gate-cli status"
check 0 "operator: gate-cli test-image photo.jpg" as_operator "gate-cli test-image photo.jpg"
arm_answer=$(as_operator "gate-cli test-image --json photo.jpg" | grep '^{') || arm_answer='{}'
check 0 "the arm64 answer against the host's (x86-64) on the same photo" "$PYTHON" -c '
import json, sys
arm, host = (json.loads(text) for text in sys.argv[1:])
print("arm64 :", arm["decision"], [(f["label"], f["box"], f["scores"]) for f in arm["faces"]])
print("x86-64:", host["decision"], [(f["label"], f["box"], f["scores"]) for f in host["faces"]])
same = arm["decision"] == host["decision"] and [f["label"] for f in arm["faces"]] == [f["label"] for f in host["faces"]]
sys.exit(0 if same and arm["decision"] == {"verdict": "deny", "reason": "no_mask"} else 1)' "$arm_answer" "$host_answer"
check 0 "operator: gate-cli demo --fast --clip door-clip.mp4 --state-dir demo-state" \
    as_operator "nice -n 15 gate-cli demo --fast --clip door-clip.mp4 --state-dir demo-state"
check 78 "operator: gate-cli door release (pin_factory lgpio, and Debian has no lgpio: one line, exit 78)" \
    as_operator "gate-cli door release"
check 0 "systemd-analyze verify /etc/systemd/system/maskgate.service" inside systemd-analyze verify /etc/systemd/system/maskgate.service
check 0 "systemctl is-enabled maskgate.service" inside systemctl is-enabled maskgate.service
check 0 "lgpio's folder in the installed unit (LG_WD, WorkingDirectory)" inside grep -E '^(WorkingDirectory|Environment=LG_WD)=' /etc/systemd/system/maskgate.service

say "$(date -u +%Y-%m-%d) pi_smoke: $failures failure(s)"
exit $((failures > 0))
