"""The door's decision: faces tracked over frames → one grant/deny per visitor.

Pure logic: no IO, no clock (every call says what time it is), so every rule is testable
with a table of frames.

How a decision comes about
--------------------------
* Faces are linked across frames to *tracks* (greedy IoU matching, best overlaps first). A
  track unseen for ``track_max_age_s`` is forgotten; until then it still counts as present,
  so a face the detector misses for a frame or two cannot let the others through alone.
* A track is *settled* once its last ``consistent_frames`` observations all had the same label
  with confidence ≥ ``min_confidence``. An uncertain or different label starts the streak again.
* A decision is taken on a frame where every present track is settled and at least one of
  them is *due*: it never had a decision, its cooldown (``cooldown_s``) has run out, or its
  settled label crossed the mask/no-mask line since it was decided (a visitor who pulls the
  mask up after a deny gets a grant without waiting; a bare face read as ``incorrect_mask``
  for a moment while leaving does not get a second deny). The decision covers every present track and starts all of their cooldowns,
  so one visitor standing at the door makes one decision, and a newcomer makes a new one.

Rules and reasons (``Decision.reason``)
---------------------------------------
* ``all_masked``: grant (reason ``all_masked``) only when every face wears a mask correctly.
* ``any_masked``: grant (reason ``any_masked``) when at least one face does.
* Otherwise deny: ``no_mask`` if some face is without a mask, else ``incorrect_mask``.
  Any label other than ``with_mask``/``incorrect_mask`` counts as no mask (fail secure).
* ``observe``: the door never opens: the verdict is always ``deny`` and the reason says what
  ``all_masked`` would have concluded, prefixed ``observed_`` (``observed_all_masked``,
  ``observed_no_mask``, ``observed_incorrect_mask``), so a consumer can tell reports from
  refusals by the prefix alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from gate.settings import PolicySettings
from gate.types import Box, Classification, Detection

WITH_MASK = "with_mask"
INCORRECT_MASK = "incorrect_mask"
OBSERVED_PREFIX = "observed_"


@dataclass(frozen=True)
class FaceObservation:
    """One face in one frame: where it is and what the classifier says about it."""

    detection: Detection
    classification: Classification


@dataclass(frozen=True)
class Decision:
    """What the gate concluded about the faces in front of it."""

    verdict: Literal["grant", "deny"]
    reason: str
    faces: tuple[FaceObservation, ...]
    track_ids: tuple[int, ...]
    at: float
    first_seen: float  # when the earliest *newly decided* face appeared: the decision's latency starts here


@dataclass(frozen=True)
class _Track:
    id: int
    box: Box
    first_seen: float
    last_seen: float
    latest: FaceObservation
    streak_label: str | None = None
    streak: int = 0
    decided_at: float | None = None
    decided_label: str | None = None


def _match(tracks: list[_Track], observations: list[FaceObservation], min_iou: float) -> dict[int, int]:
    """Greedy IoU matching: observation index → track index, highest overlaps first."""
    pairs = sorted(
        (
            (track.box.iou(obs.detection.box), t, o)
            for t, track in enumerate(tracks)
            for o, obs in enumerate(observations)
        ),
        reverse=True,
    )
    matched: dict[int, int] = {}
    used_tracks: set[int] = set()
    for overlap, t, o in pairs:
        if overlap < min_iou or overlap <= 0.0:
            break
        if t in used_tracks or o in matched:
            continue
        matched[o] = t
        used_tracks.add(t)
    return matched


def _verdict(rule: str, labels: list[str]) -> tuple[Literal["grant", "deny"], str]:
    masked = [label == WITH_MASK for label in labels]
    if rule == "any_masked" and any(masked):
        return "grant", "any_masked"
    if rule in ("all_masked", "observe") and all(masked):
        verdict, reason = "grant", "all_masked"
    elif any(label not in (WITH_MASK, INCORRECT_MASK) for label in labels):
        verdict, reason = "deny", "no_mask"
    else:
        verdict, reason = "deny", "incorrect_mask"
    if rule == "observe":
        return "deny", OBSERVED_PREFIX + reason
    return verdict, reason


class DecisionPolicy:
    """Turns per-frame face observations into at most one decision per visitor."""

    def __init__(self, settings: PolicySettings, min_confidence: float) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be within [0, 1], got {min_confidence}")
        self._settings = settings
        self._min_confidence = min_confidence
        self._tracks: list[_Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget every track (the camera was lost: whoever was there may have left)."""
        self._tracks = []

    def _observe(self, track: _Track, now: float, obs: FaceObservation) -> _Track:
        label, confident = obs.classification.label, obs.classification.confidence >= self._min_confidence
        if not confident:
            streak_label, streak = None, 0
        elif label == track.streak_label:
            streak_label, streak = label, track.streak + 1
        else:
            streak_label, streak = label, 1
        return replace(track, box=obs.detection.box, last_seen=now, latest=obs, streak_label=streak_label, streak=streak)

    def _settled(self, track: _Track) -> bool:
        return track.streak_label is not None and track.streak >= self._settings.consistent_frames

    def _due(self, track: _Track, now: float) -> bool:
        return (
            track.decided_at is None
            or now - track.decided_at >= self._settings.cooldown_s
            or (track.streak_label == WITH_MASK) != (track.decided_label == WITH_MASK)
        )

    def update(self, now: float, observations: list[FaceObservation]) -> Decision | None:
        """Feed one frame's faces (possibly none); returns a decision when one is taken."""
        alive = [t for t in self._tracks if now - t.last_seen <= self._settings.track_max_age_s]
        matched = _match(alive, observations, self._settings.track_iou)
        updated = {t: self._observe(alive[t], now, observations[o]) for o, t in matched.items()}
        tracks = [updated.get(i, track) for i, track in enumerate(alive)]
        for o, obs in enumerate(observations):
            if o not in matched:
                fresh = _Track(id=self._next_id, box=obs.detection.box, first_seen=now, last_seen=now, latest=obs)
                self._next_id += 1
                tracks.append(self._observe(fresh, now, obs))
        self._tracks = tracks

        if not tracks or not all(self._settled(t) for t in tracks):
            return None
        if not any(self._due(t, now) for t in tracks):
            return None
        verdict, reason = _verdict(self._settings.rule, [t.streak_label or "" for t in tracks])
        newcomers = [t for t in tracks if self._due(t, now)]  # latency is theirs, not a lingering track's
        self._tracks = [replace(t, decided_at=now, decided_label=t.streak_label) for t in tracks]
        return Decision(
            verdict=verdict,
            reason=reason,
            faces=tuple(t.latest for t in tracks),
            track_ids=tuple(t.id for t in tracks),
            at=now,
            first_seen=min(t.first_seen for t in newcomers),
        )
