"""The streaming search: the stateless search (:mod:`gate.vision.search`) run only where a frame of a
camera stream changed, known faces followed between model runs, and a schedule for the rest.

At 30 fps a face is where it was 33 ms ago: re-finding it there costs one short-range run, while the
full pass costs a full-range run plus confirmations, and following it costs none:

* *motion gate*: motion is measured on a 1/``MOTION_SCALE`` grey copy of the frame
  (``detector.motion_threshold`` grey levels; camera noise averages out at that size): what did not
  change since the models last looked at it would get the same answer, so it is not looked at again;
* *keep*: a known face whose region (its box × ``FACE_MOTION_SCALE``) did not change since its last
  confirmation is kept as it is, without any model run (a visitor standing still);
* *follow*: one that changed is first looked for on the grey frame by template matching against its
  :class:`Look` (``detector.follow_correlation``, within ``FOLLOW_REACH`` of its size): a face that
  only shifted (a visitor swaying) is followed there without a model run. Following never drifts: it
  always compares with the look a model confirmed;
* *re-confirm*: one that changed otherwise (turned, came closer, left), or that has been followed for
  ``detector.full_scan_every`` frames (a fresh box for the classifier and a fresh look), is confirmed
  again on a crop around its last box, with the bar of its first confirmation. A face the pose
  detector vouched for is confirmed again only when it changed (a pose run is dear);
* *full pass* (full-range proposals away from the known faces, confirmed; a proposal overlapping a
  known face, or centred in it, is that face): when the region of interest changed since the last
  full pass away from the known people (someone may have come; an empty, unchanged scene costs no
  model run), when a known face was lost, and at least every ``detector.full_scan_every`` frames while
  faces are known, so a newcomer next to a known face waits at most that long; once faces are
  known, change the last full pass looked at waits for that schedule too (a face the models cannot
  see, swaying beside the others, would cost a full pass on every frame). With faces known, or
  once one is confirmed, one rejection ends the search for a newcomer (one missed is looked for on the
  next pass), and a proposal on a face confirmed in the same pass is that face. Change inside
  the confirmation crops the last pass rejected waits for that schedule too, so something face-like
  that moves but is never confirmed (a face the models cannot see, a swaying plant) costs a full pass
  every ``full_scan_every`` frames instead of one every few frames;
* *tile search*: on the first full pass without a face, then on every ``detector.tile_every``-th.

Faces get their track ids from the one tracker (:class:`gate.vision.tracker.Tracker`) at the end of
each frame; known faces are kept per track id.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from gate.types import Detection
from gate.vision.blazeface import merge_faces
from gate.vision.geometry import inside, iou, scaled_square
from gate.vision.imageops import small_grey
from gate.vision.search import CONFIRM_CROP_SCALE, CONFIRM_MIN_IOU, Confirmed, FaceSearch, FrameHeads
from gate.vision.tracker import Tracker

#: Motion is measured on the frame shrunk this many times, in grey.
MOTION_SCALE = 4
#: A known face counts as changed when the square of its box's side × this changed (a head turning,
#: stepping closer).
FACE_MOTION_SCALE = 1.5
#: Changed pixels of the small grey frame (``MOTION_SCALE``² frame pixels each) that make a region count as changed…
MIN_CHANGED_PX = 4
#: …and, for a known face, the share of its region that must have changed (a box a few pixels stale
#: still frames the face: the classifier's crop has a margin).
MOVED_SHARE = 0.1
#: A face is followed at most this far (a fraction of its box side) from where it was confirmed.
FOLLOW_REACH = 0.25
#: Grey-level standard deviation below which a face's look is too flat to follow (confirmed instead).
MIN_FOLLOW_CONTRAST = 4.0
#: Once faces are known, the change a full pass looked at, grown by this many pixels of the small grey
#: frame (a sway between two frames a Pi 4 takes), waits for the schedule like a rejected crop.
QUIET_GROWTH = 8
#: Width of a known person's region (its face's side × this, from just above the face to the bottom of
#: the frame), where change is theirs and calls for no full pass: head, shoulders, arms.
PERSON_WIDTH = CONFIRM_CROP_SCALE


@dataclass(frozen=True)
class Look:
    """A known face as a model last confirmed it: the small grey frame then, the face then, when, and
    the score of the proposal that confirmation cleared the bar with."""

    small: np.ndarray
    face: Detection
    frame: int
    proposal: float


@dataclass(frozen=True)
class Known:
    """A face of the last frame: where it is, its look, and the proposal score its next confirmation
    is held to (its look's, raised by the full pass when a better proposal overlaps it)."""

    face: Detection
    look: Look
    proposal: float


class StreamSearch:
    """Faces in consecutive frames of one camera (see the module docstring). Not thread-safe."""

    def __init__(self, search: FaceSearch, tracker: Tracker) -> None:
        self.search, self.settings, self.tracker = search, search.settings, tracker
        self.reset()

    def reset(self) -> None:
        """Forget earlier frames: the next :meth:`find` runs the full pass, tile search included."""
        self.known: list[Known] = []
        self.scene_ref: np.ndarray | None = None  # the small grey frame the last full pass looked at
        self.rejected: list[Detection] = []  # proposals the last full pass rejected: their crops were looked at
        self.quiet: np.ndarray | None = None  # change the last full pass looked at, once faces are known
        self.frames_since_full_pass = 0
        self.frames_without_face = 0
        self.frame = 0  # frames seen since the reset: when each look was taken
        self.tracker.reset()

    def find(self, image: np.ndarray, now: float) -> list[Detection]:
        """The faces of the next frame (taken at ``now``), tracked, best score first."""
        settings, search = self.settings, self.search
        small = small_grey(image, MOTION_SCALE)
        gated = settings.motion_threshold > 0 and self.scene_ref is not None and self.scene_ref.shape == small.shape
        self.frame += 1
        heads = search.frame_heads(image)
        kept: list[Known] = []
        stale: list[Known] = []
        for known in self.known:
            look = known.look
            # A face followed away from where it was confirmed is matched again on every frame: its look's
            # frame no longer shows where it is (it may have swayed back).
            if gated and known.face.box == look.face.box and not self._moved(small, look.small, known.face):
                kept.append(known)
            elif gated and (self.frame - look.frame < settings.full_scan_every or look.face.source == "pose") \
                    and (followed := self._follow(small, known)) is not None:
                kept.append(followed)
            else:
                stale.append(known)  # changed otherwise, or followed long enough: a model looks again
        proposals = [replace(k.face, score=k.proposal) for k in stale]
        confirmed = search.confirm(image, proposals, heads=heads)
        lost = len(confirmed) < len(stale)
        candidates = kept + [self._known(small, c) for c in confirmed]
        self.frames_since_full_pass += 1
        due = self.frames_since_full_pass >= settings.full_scan_every
        scheduled = not gated or lost or bool(self.known and due)
        change = None if scheduled else self._change(small, [k.face for k in kept + stale], due)
        if scheduled or change is not None:
            candidates = self._full_pass(image, small, candidates, heads)
            # A face the models cannot see, swaying beside found ones, would cost a full pass every frame.
            quiet = change is not None and candidates
            self.quiet = cv2.dilate(change.astype(np.uint8), np.ones((2 * QUIET_GROWTH + 1,) * 2, np.uint8)).astype(bool) if quiet else None
        # Two hits on one face confirm the same face twice: merge them like any duplicate.
        merged, leaders = merge_faces([k.face for k in candidates], settings.nms_iou)
        tracked = self.tracker.update(now, merged)
        # A merged face keeps its best member's look: next frame it is followed from that look, so it
        # takes that confirmation's box again (a model's box, not a mean of two models' boxes).
        self.known = [Known(face, candidates[leader].look, candidates[leader].proposal) for face, leader in zip(tracked, leaders)]
        return tracked

    def _known(self, small: np.ndarray, confirmed: Confirmed) -> Known:
        return Known(confirmed.face, Look(small, confirmed.face, self.frame, confirmed.proposal), confirmed.proposal)

    def _full_pass(self, image: np.ndarray, small: np.ndarray, candidates: list[Known], heads: FrameHeads) -> list[Known]:
        """Full-range proposals away from the known faces confirmed, then the tile search when due."""
        settings, search = self.settings, self.search
        self.frames_since_full_pass = 0
        self.scene_ref = small
        self.rejected = []
        proposals = search.proposals(image)
        newcomers = [True] * len(proposals)
        if proposals:
            corners = np.array([p.box.corners for p in proposals])
            scores = np.array([p.score for p in proposals])
            centres = (corners[:, 0] + corners[:, 2]) / 2, (corners[:, 1] + corners[:, 3]) / 2
            for k, known in enumerate(candidates):  # a known face keeps its best proposal score
                box = np.array(known.face.box.corners)
                overlapping = (iou(box, corners) >= CONFIRM_MIN_IOU) | inside(box, *centres)
                candidates[k] = replace(known, proposal=max(known.proposal, float(scores[overlapping].max(initial=0.0))))
                newcomers = [n and not o for n, o in zip(newcomers, overlapping)]
        # With faces known, a newcomer is the best proposal left: one rejection ends the search.
        rejections = settings.max_rejections if not candidates else 1
        fresh = search.confirm(image, [p for p, n in zip(proposals, newcomers) if n], rejections, self.rejected, heads, rejections_after_a_face=1)
        candidates = candidates + [self._known(small, c) for c in fresh]
        if not candidates and settings.tile_search and self.frames_without_face % settings.tile_every == 0:
            tiled = search.confirm(image, search.tile_proposals(image), settings.max_rejections, self.rejected, rejections_after_a_face=1)
            candidates = [self._known(small, c) for c in tiled]
        self.frames_without_face = 0 if candidates else self.frames_without_face + 1
        return candidates

    def _follow(self, small: np.ndarray, known: Known) -> Known | None:
        """The face moved to where its look matches the small frame best, or None when no place within
        FOLLOW_REACH matches well enough (``follow_correlation``) or the best is at the edge of the
        search (it may have gone further)."""
        look = known.look
        x0, y0, x1, y1 = scaled_square(look.face.box.corners, 1.0, MOTION_SCALE, small.shape)
        template = look.small[y0:y1, x0:x1]
        if template.size == 0 or float(cv2.meanStdDev(template)[1][0, 0]) < MIN_FOLLOW_CONTRAST:
            return None
        reach = max(1, round(FOLLOW_REACH * max(x1 - x0, y1 - y0)))
        height, width = small.shape
        sx0, sy0, sx1, sy1 = max(0, x0 - reach), max(0, y0 - reach), min(width, x1 + reach), min(height, y1 + reach)
        match = cv2.matchTemplate(small[sy0:sy1, sx0:sx1], template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(match)
        at_edge = (bx in (0, match.shape[1] - 1) and match.shape[1] > 1) or (by in (0, match.shape[0] - 1) and match.shape[0] > 1)
        if best < self.settings.follow_correlation or at_edge:
            return None
        moved = look.face.moved((sx0 + bx - x0) * MOTION_SCALE, (sy0 + by - y0) * MOTION_SCALE)
        return Known(replace(known.face, box=moved.box, keypoints=moved.keypoints), look, look.proposal)

    def _moved(self, small: np.ndarray, ref: np.ndarray, face: Detection) -> bool:
        """Whether the face (a little more than its box) changed since its reference frame."""
        x0, y0, x1, y1 = scaled_square(face.box.corners, FACE_MOTION_SCALE, MOTION_SCALE, small.shape)
        now, then = small[y0:y1, x0:x1], ref[y0:y1, x0:x1]
        changed = np.count_nonzero(cv2.absdiff(now, then) > self.settings.motion_threshold)
        return now.size == 0 or changed > max(MIN_CHANGED_PX, MOVED_SHARE * now.size)

    def _change(self, small: np.ndarray, known: list[Detection], due: bool) -> np.ndarray | None:
        """Where the region of interest changed since the last full pass away from the known people
        (each face's column, PERSON_WIDTH wide, from just above the face to the bottom of the frame)
        and, until the scheduled pass is ``due``, away from the crops that pass rejected and from the
        change it looked at (``quiet``); None when fewer than MIN_CHANGED_PX changed."""
        assert self.scene_ref is not None
        mask = cv2.absdiff(small, self.scene_ref) > self.settings.motion_threshold
        for face in known:
            x0, y0, x1, _ = scaled_square(face.box.corners, PERSON_WIDTH, MOTION_SCALE, small.shape)
            mask[y0:, x0:x1] = False
        if not due:
            for proposal in self.rejected:
                x0, y0, x1, y1 = scaled_square(proposal.box.corners, CONFIRM_CROP_SCALE, MOTION_SCALE, small.shape)
                mask[y0:y1, x0:x1] = False
            if self.quiet is not None and self.quiet.shape == mask.shape:
                mask &= ~self.quiet
        height, width = small.shape
        rx0, ry0, rx1, ry1 = self.settings.roi
        roi = np.zeros_like(mask)
        roi[int(ry0 * height) : int(np.ceil(ry1 * height)), int(rx0 * width) : int(np.ceil(rx1 * width))] = True
        mask &= roi
        return mask if np.count_nonzero(mask) >= MIN_CHANGED_PX else None
