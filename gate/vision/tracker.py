"""The one tracker: who is who across frames, as stable track ids.

Every face the gate sees gets its id here, once, and every later stage uses that id: the detector's
stream follows and re-confirms known faces by it (:mod:`gate.vision.stream`), the classifier's
readings are gathered per id as the policy's evidence, and the policy's decisions name the ids they
cover (:mod:`gate.policy`). An id is never given twice.

How a face gets its id, first rule that applies:

1. *continued*: a face the detector followed or confirmed again from a known face carries that
   face's id already, and keeps it;
2. *matched*: otherwise it takes the id of a remembered track whose last box it overlaps at least
   ``policy.track_iou`` (greedy, best overlaps first). A track is remembered until it has been
   unseen for ``policy.track_max_age_s``, so a face the detector misses for a frame or two keeps its id;
3. *re-identified*: otherwise, a face appearing within ``policy.reid_distance`` face widths of where a
   track was lost (its width within half to double of that face's), at most
   ``policy.reid_within_s`` after it was last seen, takes that track's id (nearest first), marked
   ``reidentified``: the tracker loses faces (a visitor walking away moves too far between frames
   for the boxes to overlap), but it may be someone else, so the policy reads such a face afresh;
4. *new*: otherwise a new id, in the order the faces came.

Pure: no clock (every call says what time it is), no images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from gate.settings import PolicySettings
from gate.types import Box, Detection
from gate.vision.geometry import iou

#: A face re-found within ``reid_within_s`` (0.5 s by default) is at most this much wider or narrower
#: than when it was lost (walking up to the door, a face grows by about a third in 0.5 s).
REID_MAX_SIZE_RATIO = 2.0


@dataclass(frozen=True)
class _Seen:
    """A track as last seen: its id, its box, when."""

    id: int
    box: Box
    at: float


def assign(pairs: list[tuple[float, int, int]]) -> dict[int, int]:
    """Greedy one-to-one assignment of (cost, track, face) pairs, lowest cost first: face → track."""
    matched: dict[int, int] = {}
    used: set[int] = set()
    for _, t, o in sorted(pairs):
        if t not in used and o not in matched:
            matched[o] = t
            used.add(t)
    return matched


def reid_distance(lost: Box, found: Box) -> float:
    """How far (centre to centre, in widths of the lost face) a face appeared from where one was
    lost; infinite when their widths differ by more than REID_MAX_SIZE_RATIO (not the same face)."""
    if min(lost.w, found.w) <= 0.0 or max(lost.w, found.w) > REID_MAX_SIZE_RATIO * min(lost.w, found.w):
        return math.inf
    (lx, ly), (fx, fy) = lost.center, found.center
    return math.hypot(fx - lx, fy - ly) / lost.w


class Tracker:
    """Gives each face of a frame its track id (see the module docstring)."""

    def __init__(self, track_iou: float, max_age_s: float, reid_within_s: float, reid_distance: float) -> None:
        self._track_iou, self._max_age_s = track_iou, max_age_s
        self._reid_within_s, self._reid_distance = reid_within_s, reid_distance
        self._tracks: list[_Seen] = []
        self._next_id = 1

    @classmethod
    def from_settings(cls, settings: PolicySettings) -> Tracker:
        return cls(settings.track_iou, settings.track_max_age_s, settings.reid_within_s, settings.reid_distance)

    def reset(self) -> None:
        """Forget every track (ids are not reused)."""
        self._tracks = []

    def update(self, now: float, faces: list[Detection]) -> list[Detection]:
        """The faces of the frame at ``now``, in the same order, each with its track id."""
        alive = [t for t in self._tracks if now - t.at <= self._max_age_s]
        index = {t.id: i for i, t in enumerate(alive)}
        matched = {o: index[f.track_id] for o, f in enumerate(faces) if f.track_id in index}
        if len(set(matched.values())) < len(matched):
            raise ValueError(f"two faces carry one track id: {sorted(f.track_id for f in faces if f.track_id is not None)}")
        free = [t for t in range(len(alive)) if t not in set(matched.values())]
        rest = [o for o in range(len(faces)) if o not in matched]
        if free and rest:
            overlaps = iou(np.array([alive[t].box.corners for t in free])[:, None], np.array([faces[o].box.corners for o in rest])[None])
            pairs = [(-overlaps[i, j], free[i], rest[j]) for i, j in zip(*np.nonzero(overlaps >= self._track_iou)) if overlaps[i, j] > 0.0]
            matched.update(assign(pairs))
        taken = set(matched.values())
        lost = [t for t in range(len(alive)) if t not in taken and now - alive[t].at <= self._reid_within_s]
        distances = ((reid_distance(alive[t].box, faces[o].box), t, o) for t in lost for o in range(len(faces)) if o not in matched)
        refound = assign([pair for pair in distances if pair[0] <= self._reid_distance])
        tracked = []
        for o, face in enumerate(faces):
            if o in matched or o in refound:
                track_id = alive[matched.get(o, refound.get(o))].id
            else:
                track_id, self._next_id = self._next_id, self._next_id + 1
            tracked.append(replace(face, track_id=track_id, reidentified=o in refound))
        seen = {face.track_id for face in tracked}
        self._tracks = [t for t in alive if t.id not in seen] + [_Seen(f.track_id, f.box, now) for f in tracked]
        return tracked
