"""``gate-cli test-image``: the door's detector, classifier and policy on still photos.

Each photo is judged on its own (its answer never depends on the photos before it): faces found
by the detector's still search (:meth:`BlazeFaceDetector.detect_still`), each classified, and the
decision asked of the door's own policy (:meth:`DecisionPolicy.decide_still`): what the door would
decide if that photo were held in front of it long enough. The still search looks harder than the
door's per-frame pass (tiles with both face models, every proposal confirmed), so it may report a
doubtful face the door would not find in one frame; the door itself is judged by ``gate-cli demo``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gate.annotate import write_annotated
from gate.classifier import MaskClassifier
from gate.errors import MaskgateError
from gate.policy import DecisionPolicy, FaceObservation
from gate.preprocess import read_image_rgb
from gate.settings import Settings
from gate.types import Box, Detection


class StillCheck:
    """The parts test-image needs, loaded once for every photo of the command."""

    def __init__(self, settings: Settings, *, max_pixels: int, model: Path | None = None, assume_face: bool = False) -> None:
        """``assume_face``: each photo is one face crop, not looked for. ``model`` overrides classifier.model."""
        self._max_pixels = max_pixels
        self._classifier = MaskClassifier(model or settings.classifier.model, threads=settings.classifier.threads,
                                          min_confidence=settings.classifier.min_confidence)
        self._policy = DecisionPolicy(settings.policy, self._classifier.min_confidence)
        self._detector = None
        if not assume_face:
            from gate.vision.detector import BlazeFaceDetector

            self._detector = BlazeFaceDetector(settings.detector)

    def check(self, path: Path, annotated: Path | None = None) -> dict[str, Any]:
        """One photo's faces and decision as a plain dict; ``error`` says what went wrong, if anything."""
        result: dict[str, Any] = {"path": str(path), "faces": [], "decision": None, "error": None}
        try:
            image = read_image_rgb(path, self._max_pixels)
            height, width = image.shape[:2]
            faces = self._detector.detect_still(image) if self._detector else [Detection(Box(0, 0, width, height), 1.0)]
            observations = [FaceObservation(f, self._classifier.classify(image, f.box if self._detector else None)) for f in faces]
            result["faces"] = [
                {"box": o.detection.box.as_list(), "label": o.classification.label,
                 "scores": {k: round(v, 4) for k, v in o.classification.scores.items()},
                 "grant_floor": o.classification.grant_floor, "detector_score": round(o.detection.score, 4)}
                for o in observations
            ]
            decision = self._policy.decide_still(observations)
            reason = decision.reason if decision else "uncertain" if observations else "no_face"
            result["decision"] = {"verdict": decision.verdict if decision else None, "reason": reason}
            if annotated is not None:
                write_annotated(image, observations, annotated)
                result["annotated"] = str(annotated)
        except MaskgateError as exc:
            result["error"] = str(exc)
        return result


def format_result(result: dict[str, Any], as_json: bool) -> str:
    """One JSON line, or a line for the photo and one per face for a person."""
    if as_json:
        return json.dumps(result)
    if result["decision"] is None:
        return f"{result['path']}: ERROR {result['error']}"
    decision = result["decision"]
    lines = [f"{result['path']}: {len(result['faces'])} face(s) → {decision['verdict'] or 'no decision'} ({decision['reason']})"]
    for face in result["faces"]:
        scores = " ".join(f"{k}={v:.3f}" for k, v in face["scores"].items())
        lines.append(f"  box {face['box']}  {face['label']:<15} {scores}  (grant floor {face['grant_floor']:.3g})")
    if result["error"]:
        lines.append(f"  ERROR {result['error']}")
    return "\n".join(lines)
