"""The door's decision: faces tracked over frames → one grant/deny per visitor, or per group.

Pure logic: no IO (a log line aside), no clock (every call says what time it is), so every
rule is testable with a table of frames.

How a decision comes about
--------------------------
* Faces come with track ids from the one tracker (:mod:`gate.vision.tracker`: IoU matching, then
  re-identification by place and time); the policy keeps its evidence and decisions per id. A track
  unseen for ``track_max_age_s`` is forgotten; until then it still counts as present, so a face the
  detector misses for a frame or two cannot let the others through alone.
* **Evidence, not streaks.** Each track keeps a decayed, weighted average of the classifier's
  probabilities: every frame, older evidence is multiplied by ``evidence_decay`` and the new
  frame's probabilities are added with a weight = face size (``min(1, width /
  full_weight_face_px)``) × detector score, so a small or doubtful face counts less. A track
  *reads* a label once it has at least ``evidence_frames`` observations and
  - ``with_mask`` when the average with_mask probability reaches the *mask bar*:
    ``decide_confidence``, or the model contract's ``min_confidence`` if that is higher
    (the contract's threshold is the floor for opening the door);
  - not masked when the rest (1 − with_mask) reaches ``decide_confidence``: ``incorrect_mask``
    if incorrect_mask holds at least ``decide_confidence`` of that rest, else ``without_mask``
    (a deny that cannot tell the two apart gives the graver reason).
  One flickering frame pulls the average down by a bounded amount that the next frames win
  back, instead of restarting a streak; a face whose label alternates never reaches the mask
  bar, so it never opens the door.
* **Groups.** A decision covers every present track. It is taken once no face still being read
  could change it: a grant waits until every face reads masked; a deny comes as soon as it is
  certain, reason included (``all_masked``: one face read without a mask is enough; one read
  ``incorrect_mask`` waits for the others, who might be bare). A face seen for
  ``decide_within_s`` without being read counts as not masked (fail secure; reason
  ``undecided`` if nothing worse was seen). So a masked pair makes one grant and a mixed pair
  one deny, whoever is read first.
* **One decision per visitor.** Once a decision covered a track (read or not yet), that track
  makes no new one while the outcome stays the same, however long the visitor stays. A new
  decision about everyone present comes when a newcomer is read (including a visitor who left,
  was forgotten after ``track_max_age_s``, and came back; a face glimpsed for a frame, like
  someone walking out fast, is never read and decides nothing), or when the outcome changes: a visitor who pulls the
  mask up after a deny gets a grant, pulling it down after a grant gets a deny, and a masked
  visitor denied because of a bare companion is let in once the companion has left.
* **Re-identification.** The tracker loses faces: a visitor walking away moves too far between
  frames for the boxes to overlap, a face is missed for a few frames. A face it takes for a lost
  track again (``reid_distance``, ``reid_within_s``) comes back with that track's id, marked
  ``reidentified``: the same id, the same decision, so it makes no new one. Only the decision
  carries over, not the evidence: the face is read afresh (it may be someone else), and until it is
  read it holds up any decision; once read, it decides again only if it lands on the other side of
  the mask line (pulled down after a grant: deny; put on after a deny: grant). A face appearing
  anywhere else is a newcomer.
* **A late companion joins a fresh grant.** The detector can find the second face of a group
  some frames after the first (a newcomer beside a known face is searched for only every few
  frames), so the first face may be granted alone. A newcomer read while a grant is fresh (at
  most ``join_within_s`` after it, and never beyond half the door's open time, so the companion
  can still walk in) and one of the granted faces is in view joins that grant without a new
  decision, when the decision it would make is that same grant (``all_masked``: it reads
  masked): the door is already open for the group, and a second grant would only restart the
  unlock time. A newcomer read bare, nose-exposed or undecided still makes a deny at once, which
  re-locks the door (fail secure); a masked newcomer after the window, or once the granted
  faces are out of view, is a new visitor and gets a grant of its own. A *settle time* before a
  first grant was the alternative; it was not chosen because it delays every visitor's
  decision, alone or not, and to cover a companion found up to ``detector.full_scan_every``
  frames later it would break the 300 ms decision budget at 30 fps.
* **A grant needs someone in view.** A grant is taken only on a frame that shows at least one
  of its faces: once a face still being read is forgotten, the tracks left may all be
  remembered, not seen, and a grant then would open the door for whoever comes next. It waits
  until one of them is seen again (a deny is never held back).

Rules and reasons (``Decision.reason``)
---------------------------------------
* ``all_masked``: grant (reason ``all_masked``) only when every face wears a mask correctly.
* ``any_masked``: grant (reason ``any_masked``) when at least one face does.
* Otherwise deny: ``no_mask`` if some face is without a mask, else ``incorrect_mask`` if some
  face wears it wrongly, else ``undecided`` (a face could not be read in time). Any class other
  than ``with_mask``/``incorrect_mask`` counts as no mask (fail secure).
* ``observe``: the door never opens: the verdict is always ``deny`` and the reason says what
  ``all_masked`` would have concluded, prefixed ``observed_`` (``observed_all_masked``,
  ``observed_no_mask``, ``observed_incorrect_mask``, ``observed_undecided``), so a consumer
  can tell reports from refusals by the prefix alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

from gate.settings import PolicySettings
from gate.types import INCORRECT_MASK, WITH_MASK, WITHOUT_MASK, Classification, Detection

log = logging.getLogger(__name__)

#: What a face that could not be read within ``decide_within_s`` counts as: not masked.
UNDECIDED = "undecided"
OBSERVED_PREFIX = "observed_"
REASONS = ("all_masked", "any_masked", "no_mask", "incorrect_mask", UNDECIDED)
#: A frame's weight never drops to zero, so the average stays defined.
_MIN_WEIGHT = 1e-3


@dataclass(frozen=True)
class FaceObservation:
    """One face in one frame: where it is, its track id (``detection.track_id``) and what the classifier says about it."""

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
class TrackedFace:
    """A face of the latest frame as the policy sees it (what the live preview draws)."""

    track_id: int
    observation: FaceObservation
    reading: str | None  # the label its evidence reads so far; None while it is still being read
    opened: bool | None  # whether the last decision covering it opened the door; None: not decided yet


@dataclass(frozen=True)
class _Track:
    id: int
    first_seen: float
    last_seen: float
    latest: FaceObservation
    frames: int = 0
    weight: float = 0.0  # Σ decayed weights
    masked: float = 0.0  # Σ decayed weight × P(with_mask)
    incorrect: float = 0.0  # Σ decayed weight × P(incorrect_mask)
    floor: float = 0.0  # Σ decayed weight × the classifier's grant floor (day or night) of each frame
    label: str | None = None  # the latest label the evidence read (kept while it is inconclusive)
    opened: bool | None = None  # whether the last decision covering this track opened the door (None: none did)


def _as_read(track: _Track, reading: str | None) -> FaceObservation:
    """The face as the decision read it: the evidence's label and averaged probabilities, not the
    last frame's (which may disagree with a decision taken on many frames). An unread face keeps
    its last frame's classification; the decision's reason says it was undecided."""
    if reading not in (WITH_MASK, WITHOUT_MASK, INCORRECT_MASK) or track.weight <= 0.0:
        return track.latest
    averaged = {WITH_MASK: track.masked / track.weight, INCORRECT_MASK: track.incorrect / track.weight}
    classes = track.latest.classification.scores
    rest = max(0.0, 1.0 - sum(averaged[c] for c in averaged if c in classes))
    scores = {c: averaged.get(c, rest) for c in classes}
    return FaceObservation(track.latest.detection, Classification(reading, scores, track.floor / track.weight))


def _opens(reason: str) -> bool:
    """Whether a decision with this reason opens the door (or, observing, would have)."""
    return reason.removeprefix(OBSERVED_PREFIX) in ("all_masked", "any_masked")


def _verdict(rule: str, labels: list[str]) -> tuple[Literal["grant", "deny"], str]:
    masked = [label == WITH_MASK for label in labels]
    if rule == "any_masked" and any(masked):
        return "grant", "any_masked"
    if rule in ("all_masked", "observe") and all(masked):
        verdict, reason = "grant", "all_masked"
    elif any(label not in (WITH_MASK, INCORRECT_MASK, UNDECIDED) for label in labels):
        verdict, reason = "deny", "no_mask"
    elif INCORRECT_MASK in labels:
        verdict, reason = "deny", "incorrect_mask"
    else:
        verdict, reason = "deny", UNDECIDED
    if rule == "observe":
        return "deny", OBSERVED_PREFIX + reason
    return verdict, reason


class DecisionPolicy:
    """Turns per-frame face observations into at most one decision per visitor (or group)."""

    def __init__(self, settings: PolicySettings, min_confidence: float, door_open_s: float | None = None) -> None:
        """``min_confidence``: the model contract's threshold, the floor of the mask bar.
        ``door_open_s``: how long a grant keeps the door open; a late companion joins a grant
        for at most half of it, so they still have the door open at least as long to walk in."""
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be within [0, 1], got {min_confidence}")
        if door_open_s is not None and door_open_s <= 0.0:
            raise ValueError(f"door_open_s must be positive, got {door_open_s}")
        self._settings = settings
        self.join_within_s = settings.join_within_s if door_open_s is None else min(settings.join_within_s, door_open_s / 2)
        self.mask_bar = max(settings.decide_confidence, min_confidence)
        self._tracks: list[_Track] = []
        self._now: float | None = None  # the time of the latest update
        self._grant: tuple[float, frozenset[int]] | None = None  # the last decision, if it opened: when, whom

    def reset(self) -> None:
        """Forget every track (the camera was lost: whoever was there may have left)."""
        self._tracks = []
        self._grant = None

    def tracked(self) -> list[TrackedFace]:
        """The faces of the latest update, each with its track's id, reading and decision."""
        return [TrackedFace(t.id, t.latest, t.label, t.opened) for t in self._tracks if t.last_seen == self._now]

    def _weight(self, obs: FaceObservation) -> float:
        size = min(1.0, obs.detection.box.w / self._settings.full_weight_face_px)
        return max(_MIN_WEIGHT, size * min(1.0, max(0.0, obs.detection.score)))

    def _observe(self, track: _Track, now: float, obs: FaceObservation) -> _Track:
        decay, weight, scores = self._settings.evidence_decay, self._weight(obs), obs.classification.scores
        total = decay * track.weight + weight
        masked = decay * track.masked + weight * scores.get(WITH_MASK, 0.0)
        incorrect = decay * track.incorrect + weight * scores.get(INCORRECT_MASK, 0.0)
        floor = decay * track.floor + weight * obs.classification.grant_floor
        frames = track.frames + 1
        label = track.label
        if frames >= self._settings.evidence_frames:
            label = self._read(masked / total, incorrect / total, floor / total) or label
        return replace(track, last_seen=now, latest=obs, frames=frames,
                       weight=total, masked=masked, incorrect=incorrect, floor=floor, label=label)

    def _read(self, p_masked: float, p_incorrect: float, grant_floor: float = 0.0) -> str | None:
        """The label averaged probabilities read as, or None while they are inconclusive.
        ``grant_floor``: the classifier's floors averaged like the evidence, so frames from the IR
        camera at night hold the face to the night floor (the mask bar is the higher of the two)."""
        if p_masked >= max(self.mask_bar, grant_floor):
            return WITH_MASK
        if 1.0 - p_masked >= self._settings.decide_confidence:
            sure_incorrect = p_incorrect >= self._settings.decide_confidence * (1.0 - p_masked)
            return INCORRECT_MASK if sure_incorrect else WITHOUT_MASK
        return None

    def decide_still(self, observations: list[FaceObservation]) -> Decision | None:
        """The decision a photo held in front of the door long enough would get (``gate-cli
        test-image``): each face read from its one classification by the same bars as a track's
        evidence, the group decided by the same rule; None when nobody is in it or a face that
        cannot be read would change the outcome. Leaves the tracks of the stream untouched."""
        if not observations:
            return None
        readings = [self._read(o.classification.scores.get(WITH_MASK, 0.0), o.classification.scores.get(INCORRECT_MASK, 0.0),
                               o.classification.grant_floor) for o in observations]
        outcome = _verdict(self._settings.rule, [r or WITHOUT_MASK for r in readings])
        if outcome != _verdict(self._settings.rule, [r or WITH_MASK for r in readings]):
            return None
        return Decision(verdict=outcome[0], reason=outcome[1], faces=tuple(observations), track_ids=(), at=0.0, first_seen=0.0)

    def _reading(self, track: _Track, now: float) -> str | None:
        """The label the track brings to a decision now, or None while it may still be read."""
        if track.label is not None:
            return track.label
        # Seen (not merely remembered) for decide_within_s: a face glimpsed once does not time out.
        return UNDECIDED if track.last_seen - track.first_seen >= self._settings.decide_within_s else None

    def _joins_grant(self, now: float, in_view: set[int]) -> bool:
        """Whether a grant about to be taken would only repeat the last decision: a grant (which
        covered every track but the newcomers) at most ``join_within_s`` old, one of whose faces
        is still in view."""
        if self._grant is None or now - self._grant[0] > self.join_within_s:
            return False
        return bool(self._grant[1] & in_view)

    def update(self, now: float, observations: list[FaceObservation]) -> Decision | None:
        """Feed one frame's tracked faces (possibly none); returns a decision when one is taken."""
        self._now = now
        tracks = [t for t in self._tracks if now - t.last_seen <= self._settings.track_max_age_s]
        position = {track.id: index for index, track in enumerate(tracks)}
        for obs in observations:
            track_id = obs.detection.track_id
            if track_id is None:
                raise ValueError("the policy reads tracked faces: give each detection its track id (gate.vision.tracker.Tracker)")
            index = position.get(track_id)
            if index is None:
                position[track_id] = len(tracks)
                tracks.append(self._observe(_Track(id=track_id, first_seen=now, last_seen=now, latest=obs), now, obs))
            elif obs.detection.reidentified:
                # The same visitor, perhaps not: only the decision carries over; the face is read afresh
                # (until it is, it holds up any decision, so a different face cannot ride on a grant).
                again = _Track(id=track_id, first_seen=now, last_seen=now, latest=obs, opened=tracks[index].opened)
                tracks[index] = self._observe(again, now, obs)
            else:
                tracks[index] = self._observe(tracks[index], now, obs)
        self._tracks = tracks

        if not tracks:
            return None
        readings = [self._reading(t, now) for t in tracks]
        # Decided once no face still to be read can change the outcome (reason included).
        outcome = _verdict(self._settings.rule, [r or WITHOUT_MASK for r in readings])
        if outcome != _verdict(self._settings.rule, [r or WITH_MASK for r in readings]):
            return None
        verdict, reason = outcome
        opens = _opens(reason)
        newcomers = [t for t, r in zip(tracks, readings) if t.opened is None and r is not None]
        if not newcomers and all(t.opened in (None, opens) for t in tracks):
            return None  # no newly read face, the same outcome: already decided
        in_view = {t.id for t in tracks if t.last_seen == now}
        if opens and not in_view:
            return None  # nobody to let in: the grant waits until one of its faces is seen again
        joins = opens and self._joins_grant(now, in_view)
        self._tracks = [replace(t, opened=opens) for t in tracks]
        if joins:
            log.info("%s read %.2f s after the grant to tracks %s: joined it, no new decision",
                     ", ".join(f"track {t.id} ({r})" for t, r in zip(tracks, readings) if t in newcomers),
                     now - self._grant[0], sorted(self._grant[1]))
            return None
        self._grant = (now, frozenset(t.id for t in tracks)) if opens else None
        return Decision(
            verdict=verdict,
            reason=reason,
            faces=tuple(_as_read(t, r) for t, r in zip(tracks, readings)),
            track_ids=tuple(t.id for t in tracks),
            at=now,
            first_seen=min(t.first_seen for t in newcomers or tracks),  # latency is the newcomers', not a lingering track's
        )
