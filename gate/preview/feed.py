"""What the gate's loop hands the live preview, and the running tuning counts.

The loop calls :meth:`PreviewFeed.offer` once per frame and :meth:`PreviewFeed.decided` once per
decision. Both only assign references and count: no lock a viewer could hold, no copy of the image,
no encoding, no I/O. The newest frame replaces the one before (a one-slot mailbox): a slow or
stalled page gets the newest frame or none, and costs the door nothing. The server thread reads
the feed and never writes to it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gate.events import Event
from gate.policy import TrackedFace
from gate.settings import DetectorSettings
from gate.types import Detection, Frame
from gate.vision.detector import OUTSIDE_ROI, TOO_SMALL

#: Face-width histogram: bins of this many pixels, the last one open-ended.
HISTOGRAM_BIN_PX = 16
HISTOGRAM_BINS = 20
#: Decisions the side panel lists, newest first.
DECISIONS_SHOWN = 10
#: Weight of the newest interval between frames in the smoothed frame rate.
FPS_SMOOTHING = 0.1


@dataclass(frozen=True)
class Snapshot:
    """One frame and what the gate made of it: the faces it passed on, and those it ignored (with why)."""

    frame: Frame
    faces: Sequence[TrackedFace]
    ignored: Sequence[tuple[Detection, str]]


class TuningCounts:
    """Since the start: frames, frames with a face, faces by width, faces ignored as too small or
    outside the region of interest. What the installer changes ``detector.min_face_px`` and
    ``detector.roi`` by. Counted on the loop's thread; read (approximately) from the server's."""

    def __init__(self, detector: DetectorSettings) -> None:
        self._detector = detector
        self.frames = 0
        self.frames_with_face = 0
        self.passed = [0] * HISTOGRAM_BINS  # faces passed on to the classifier, by width
        self.ignored = {TOO_SMALL: [0] * HISTOGRAM_BINS, OUTSIDE_ROI: [0] * HISTOGRAM_BINS}

    def count(self, faces: Sequence[TrackedFace], ignored: Sequence[tuple[Detection, str]]) -> None:
        self.frames += 1
        self.frames_with_face += bool(faces)
        for face in faces:
            self.passed[_bin(face.observation.detection.box.w)] += 1
        for detection, why in ignored:
            self.ignored[why][_bin(detection.box.w)] += 1

    def report(self) -> dict[str, Any]:
        """Counts, shares and what to change, as the page shows them."""
        passed, small, outside = list(self.passed), list(self.ignored[TOO_SMALL]), list(self.ignored[OUTSIDE_ROI])
        frames, with_face = self.frames, self.frames_with_face
        found = sum(passed) + sum(small) + sum(outside)

        def share(part: int, whole: int) -> float | None:
            return part / whole if whole else None

        shares = {"under_min_size": share(sum(small), found), "outside_roi": share(sum(outside), found)}
        advice = []
        if found:
            advice.append({"key": "detector.min_face_px", "value": self._detector.min_face_px, "share": shares["under_min_size"],
                           "text": f"{shares['under_min_size']:.0%} of the faces found were narrower than {self._detector.min_face_px} px: "
                                   "lower it if they are visitors at the door; raise it to ignore people passing further away"})
            advice.append({"key": "detector.roi", "value": list(self._detector.roi), "share": shares["outside_roi"],
                           "text": f"{shares['outside_roi']:.0%} of the faces found were centred outside the region of interest: "
                                   "widen it if they are visitors at the door; narrow it to ignore a corridor or a window"})
        return {
            "frames": frames, "frames_with_face": with_face, "share_frames_with_face": share(with_face, frames),
            "faces_found": found, "faces_passed": sum(passed), **{f"share_{k}": v for k, v in shares.items()},
            "histogram": {"bin_px": HISTOGRAM_BIN_PX, "passed": passed, "under_min_size": small, "outside_roi": outside},
            "min_face_px": self._detector.min_face_px, "roi": list(self._detector.roi), "advice": advice,
        }


def _bin(width: float) -> int:
    return min(max(int(width) // HISTOGRAM_BIN_PX, 0), HISTOGRAM_BINS - 1)


class PreviewFeed:
    """The one-slot mailbox between the gate's loop and the preview server (see the module docstring)."""

    def __init__(self, detector: DetectorSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.detector = detector
        self.clock = clock
        self.latest: Snapshot | None = None
        self.tuning = TuningCounts(detector)
        self.decisions: deque[dict[str, Any]] = deque(maxlen=DECISIONS_SHOWN)
        self.door = "locked"
        self.stage_ms: Mapping[str, float] = {}
        self._last_offer: float | None = None
        self._interval: float | None = None  # smoothed time between offers

    def offer(self, frame: Frame, faces: Sequence[TrackedFace], ignored: Sequence[tuple[Detection, str]], *,
              door: str, stage_ms: Mapping[str, float]) -> None:
        """The newest frame and its faces (replacing the one before), the door's state and the loop's
        smoothed stage times (a live mapping: read, never copied, here)."""
        self.latest = Snapshot(frame, faces, ignored)
        self.tuning.count(faces, ignored)
        self.door = door
        self.stage_ms = stage_ms
        now = self.clock()
        if self._last_offer is not None:
            interval = now - self._last_offer
            self._interval = interval if self._interval is None else (1 - FPS_SMOOTHING) * self._interval + FPS_SMOOTHING * interval
        self._last_offer = now

    @property
    def fps(self) -> float:
        """Frames the gate processed per second, smoothed over the last few seconds' intervals."""
        return 1.0 / self._interval if self._interval else 0.0

    def decided(self, event: Event) -> None:
        """A decision was recorded: the panel lists it (labels and scores, never an image)."""
        shown = event.model_dump(mode="json", include={"time", "seq", "verdict", "reason", "source", "relay", "latency_ms"})
        shown["faces"] = [{"track_id": f.track_id, "label": f.label, "confidence": f.scores.get(f.label)} for f in event.faces]
        self.decisions.appendleft(shown)
