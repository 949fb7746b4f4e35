"""``gate-cli config check``: what the daemon will need, checked without starting it.

A settings file can be valid and still name things that are not there; the daemon would then
hold the door locked and retry at every start. Checked here, each with the key that names it:
the classifier model and its contract load (``classifier.model``); the detector's files are in
``detector.assets_dir`` with the right SHA-256; a camera source that is a file or a device path
exists (``camera.source``; a V4L2 index, a stream URL or a camera plugged in later cannot be
checked before it is used); the Pi camera's package is installed.
"""

from __future__ import annotations

from pathlib import Path

from gate.assets import DEFAULT_ASSETS_DIR, RUNTIME_ASSETS, require
from gate.camera import require_backend, resolve_kind
from gate.classifier import MaskClassifier
from gate.errors import ConfigError, MaskgateError
from gate.settings import Settings


def _model(settings: Settings) -> None:
    MaskClassifier.from_settings(settings.classifier)


def _assets(settings: Settings) -> None:
    folder = Path(settings.detector.assets_dir or DEFAULT_ASSETS_DIR)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder (`gate-cli assets fetch --dir {folder}` fills it)")
    for asset in RUNTIME_ASSETS:
        require(asset, folder)


def _camera(settings: Settings) -> None:
    require_backend(settings.camera)
    kind, source = resolve_kind(settings.camera), settings.camera.source.strip()
    if kind == "file" and not Path(source).is_file():
        raise ConfigError(f"{source}: no such video file")
    if kind == "v4l2" and source.startswith("/dev/") and not Path(source).exists():
        raise ConfigError(f"{source}: no such device")


CHECKS = (("classifier.model", _model), ("detector.assets_dir", _assets), ("camera.source", _camera))


def check_settings(settings: Settings) -> None:
    """ConfigError naming, on one line, every key whose file or folder the daemon could not use."""
    problems = []
    for key, check in CHECKS:
        try:
            check(settings)
        except MaskgateError as exc:
            message = str(exc)
            problems.append(message if message.startswith(key.split(".")[0] + ":") else f"{key}: {message}")
    if problems:
        raise ConfigError("; ".join(problems))
