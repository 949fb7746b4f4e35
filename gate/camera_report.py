"""``gate-cli test-camera``: open the configured camera for a few seconds and say what it delivers
(resolution, frame rate, drops, reopens), optionally saving the last frame. The command reports
the camera's state itself, so the camera's own reopen warnings show only with --verbose."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from gate.annotate import write_image
from gate.camera import open_camera
from gate.settings import CameraSettings


def report_camera(settings: CameraSettings, seconds: float, save: Path | None = None, *, verbose: bool = False) -> bool:
    """Print one result line (and where the frame was saved); whether a frame came."""
    camera_log = logging.getLogger("gate.camera")
    level = camera_log.level
    if not verbose:
        camera_log.setLevel(logging.ERROR)
    try:
        return _report(settings, seconds, save)
    finally:
        camera_log.setLevel(level)


def _report(settings: CameraSettings, seconds: float, save: Path | None) -> bool:
    deadline = time.monotonic() + seconds
    first = last = None
    count = 0
    with open_camera(settings) as camera:
        while time.monotonic() < deadline:
            frame = camera.read(timeout=min(0.5, seconds))
            if frame is None:
                state = camera.status.state  # a file that ended has no more; a source that failed twice, none at all
                if state == "ended" or (state == "failed" and first is None and camera.status.reopens > 0):
                    break
                continue
            first = first or frame
            last = frame
            count += 1
        status = camera.status
    if first is None or last is None:
        print(f"FAILED: no frame in {seconds:g} s ({status.state}: {status.detail})")
        return False
    height, width = first.image.shape[:2]
    span = last.timestamp - first.timestamp
    fps = (count - 1) / span if span > 0 else 0.0
    print(f"ok: {width}x{height}, {fps:.1f} frames/s over {count} frames, dropped {status.dropped}, reopens {status.reopens}")
    if save is not None:
        write_image(last.image, save, "the frame")
        print(f"saved one frame to {save}")
    return True
