"""Optional face crops of decisions, off by default (privacy), with a retention limit.

Only used when ``privacy.save_faces = true``. Files older than ``retention_days`` are deleted
at start and then at most once an hour, so the folder never grows without bound.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from gate.preprocess import crop_face
from gate.types import Box

log = logging.getLogger(__name__)

_PURGE_EVERY_S = 3600.0


class FaceSnapshots:
    def __init__(self, folder: Path, retention_days: float, *, clock=time.time) -> None:
        self.folder = folder
        self.retention_s = retention_days * 86400.0
        self._clock = clock
        self._last_purge = float("-inf")
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        log.warning("privacy.save_faces is ON: face crops are written to %s and kept %.1f days", folder, retention_days)
        self.purge()

    def save(self, image: np.ndarray, boxes: list[Box], event_id: str) -> None:
        for index, box in enumerate(boxes):
            path = self.folder / f"{event_id}-{index}.jpg"
            crop = cv2.cvtColor(crop_face(image, box), cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(path), crop):
                log.error("cannot write face crop %s", path)
        if self._clock() - self._last_purge > _PURGE_EVERY_S:
            self.purge()

    def purge(self) -> int:
        """Delete crops older than the retention limit; returns how many were deleted."""
        self._last_purge = now = self._clock()
        removed = 0
        for path in self.folder.glob("*.jpg"):
            try:
                if now - path.stat().st_mtime > self.retention_s:
                    path.unlink()
                    removed += 1
            except OSError as exc:
                log.warning("cannot purge %s: %s", path, exc)
        if removed:
            log.info("deleted %d face crops older than %.1f days", removed, self.retention_s / 86400)
        return removed
