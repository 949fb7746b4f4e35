"""The face detector the gate uses: the facade over the vision package.

``BlazeFaceDetector.detect`` takes the next frame of a camera stream and returns its faces, tracked
(the streaming search, :mod:`gate.vision.stream`); ``detect_still`` takes one photo on its own (the
stateless search, :mod:`gate.vision.search`), for ``gate-cli test-image``. Both end with the size
filter (``detector.min_face_px``) and the region of interest (``detector.roi``: a face counts when
its centre is inside). With ``detector.confirm`` off, the full-range model's proposals are the faces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from gate.assets import DEFAULT_ASSETS_DIR
from gate.settings import DetectorSettings, PolicySettings
from gate.types import Detection
from gate.vision.imageops import check_image
from gate.vision.search import FaceSearch
from gate.vision.stream import StreamSearch
from gate.vision.tracker import Tracker

#: The frame rate assumed between ``detect`` calls that give no time (tests, benchmarks of stills).
ASSUMED_FPS = 30.0
#: Why a face the detector found is not passed on (``BlazeFaceDetector.ignored``; a face both too small and
#: outside the region is counted as too small).
TOO_SMALL, OUTSIDE_ROI = "under_min_size", "outside_roi"


class FaceDetector(Protocol):
    def detect(self, image: np.ndarray, now: float | None = None) -> list[Detection]: ...

    def reset(self) -> None: ...


class BlazeFaceDetector:
    """MediaPipe's face models (and its pose detector for masked faces) run by LiteRT, with the one
    tracker; ``tracking`` holds the tracker's settings (the policy's, by default)."""

    def __init__(self, settings: DetectorSettings, assets_dir: Path | None = None, tracking: PolicySettings | None = None) -> None:
        self._settings = settings
        self.search = FaceSearch(settings, Path(assets_dir or settings.assets_dir or DEFAULT_ASSETS_DIR))
        self.tracker = Tracker.from_settings(tracking or PolicySettings())
        self.stream = StreamSearch(self.search, self.tracker) if settings.confirm else None
        self._now: float | None = None
        self.ignored: list[tuple[Detection, str]] = []  # the last frame's faces dropped by the size or region filter, with why

    def reset(self) -> None:
        """Forget earlier frames (after a camera failure, or between unrelated images): the next
        ``detect`` runs the full per-frame pass, tile search included, and tracks start afresh."""
        self.tracker.reset()
        if self.stream is not None:
            self.stream.reset()
        self._now = None

    def detect(self, image: np.ndarray, now: float | None = None) -> list[Detection]:
        """Faces in an RGB uint8 frame, the next of the stream, taken at ``now`` (monotonic seconds;
        None: 1/ASSUMED_FPS after the last), in frame pixels, tracked, best score first."""
        check_image(image)
        now = now if now is not None else 0.0 if self._now is None else self._now + 1 / ASSUMED_FPS
        self._now = now
        if self.stream is None:
            faces = self.tracker.update(now, self.search.proposals(image))
        else:
            faces = self.stream.find(image, now)
        return self._filtered(faces, image)

    def detect_still(self, image: np.ndarray) -> list[Detection]:
        """Faces in one photo on its own, tracked from id 1: the same answer whatever was seen before."""
        check_image(image)
        self.reset()
        return self._filtered(self.tracker.update(0.0, self.search.still(image)), image)

    def _filtered(self, faces: list[Detection], image: np.ndarray) -> list[Detection]:
        """The faces passed on; the others, with why, are kept in ``ignored`` for the preview's tuning view."""
        reasons = [self._ignored_because(face, image.shape[1], image.shape[0]) for face in faces]
        self.ignored = [(face, why) for face, why in zip(faces, reasons) if why is not None]
        return [face for face, why in zip(faces, reasons) if why is None]

    def _ignored_because(self, face: Detection, width: int, height: int) -> str | None:
        x0, y0, x1, y1 = self._settings.roi
        cx, cy = face.box.center
        if face.box.w < self._settings.min_face_px:
            return TOO_SMALL
        if not (x0 * width <= cx <= x1 * width and y0 * height <= cy <= y1 * height):
            return OUTSIDE_ROI
        return None
