"""The stateless face search: proposals → confirmation → second opinion → tiles.

Propose, then confirm, because masks hide half of what BlazeFace looks for:

1. the *full-range* model (192×192) looks at the whole frame, letterboxed, with a threshold far
   below MediaPipe's 0.6 (``detector.score_threshold``): masked faces at door distances often score
   0.1–0.4 there, and so does about one patch of wall per frame;
2. each proposal is *confirmed* by the *short-range* model (128×128) on a square crop
   ``CONFIRM_CROP_SCALE`` times the face's size, where the face fills enough of the input for that
   model to be sure of a masked face too. It is kept when the confirmation score plus
   ``PROPOSAL_WEIGHT`` × the proposal's score reaches ``detector.confirm_threshold`` (two
   independent opinions: a confident proposal needs less confirmation), with the confirmation's
   tighter box;
3. a proposal the short-range model rejects but that scored at least ``SECOND_OPINION_MIN`` gets a
   *second opinion* from MediaPipe's *pose* detector, which finds people by their heads and still
   sees masked heads both face models doubt (a mask hides the nose and mouth they look for). It is
   kept when a head box holds its centre and the head's score plus the same share of the proposal's
   reaches the same bar; its face box is placed in the head box (``HEAD_TO_FACE``);
4. the *tile search*: the short-range model looks at overlapping tiles of about half the frame
   (:func:`gate.vision.geometry.tiles`), where a 48-96 px face is big enough for it; its proposals
   are confirmed the same way.

Proposals are confirmed best first, and confirming may stop after a number of rejections (the
stream's ``detector.max_rejections``): true faces rank first or second among the full-range
proposals, the wall patches after them. A still photo (:meth:`FaceSearch.still`) gets all four
steps with no cap. Benchmarks: ``benchmarks/results/detector.md``; how the constants were chosen:
``benchmarks/results/detector-history.md``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gate.settings import DetectorSettings
from gate.types import Box, Detection
from gate.vision.blazeface import FULL_RANGE, HEAD_RANGE, SHORT_RANGE, BlazeFace, merge_faces
from gate.vision.geometry import inside, iou, tiles
from gate.vision.imageops import square_crop

#: Side of the square crop a proposal is confirmed on, in multiples of its box's longer side.
CONFIRM_CROP_SCALE = 4.0
#: Weight of the proposing model's own score in the confirmation score (the confirming model's
#: score counts fully).
PROPOSAL_WEIGHT = 0.5
#: The lowest full-range score of a proposal the short-range model rejected that still gets the pose
#: detector's second opinion (a pose run costs 3.7 full-range runs: lower values ask it more often).
SECOND_OPINION_MIN = 0.3
#: Where the face sits in the pose detector's head box, in head-box sides: its centre this much lower
#: than the head box's, and its width and height (measured on masked faces, the ones that need it).
HEAD_TO_FACE = (0.24, 0.87, 0.94)
#: A confirming face must overlap its proposal this much (the crop may hold a neighbour's face too).
CONFIRM_MIN_IOU = 0.2


class Confirmed(NamedTuple):
    """A face a second model vouched for, and the score of the proposal it confirmed: a later
    re-confirmation of the same face must clear the same bar."""

    face: Detection
    proposal: float


class FrameHeads:
    """The pose detector's heads in one frame, found once, when a proposal first asks: every proposal
    of the frame asks the same heads, so the pose detector runs at most once per frame."""

    def __init__(self, model: BlazeFace, image: np.ndarray, floor: float, nms_iou: float) -> None:
        self._model, self._image, self._floor, self._nms_iou = model, image, floor, nms_iou
        self._heads: tuple[np.ndarray, np.ndarray] | None = None

    def holding(self, centre: tuple[float, float], needed: float) -> tuple[Box, float] | None:
        """The best head box holding ``centre`` and scoring at least ``needed``, and its score."""
        if self._heads is None:
            self._heads = self._model.rows(self._image, self._floor, self._nms_iou)
        boxes, scores = self._heads
        holding = inside(boxes, *centre) & (scores >= needed)
        if not holding.any():
            return None
        best = np.flatnonzero(holding)[np.argmax(scores[holding])]
        return Box.from_corners(*boxes[best, :4]), float(scores[best])


def is_face(proposal: Detection, faces: list[Detection]) -> bool:
    """Whether the proposal is one of ``faces``: it overlaps it by CONFIRM_MIN_IOU, or its centre lies
    in it (for a masked face the full-range model may propose only the eyes)."""
    corners = np.array([face.box.corners for face in faces])
    return bool(((iou(proposal.box.corners, corners) >= CONFIRM_MIN_IOU) | inside(corners, *proposal.box.center)).any())


def face_in_head(head: Box) -> Box:
    """The face box inside the pose detector's head box (``HEAD_TO_FACE``)."""
    shift, width, height = HEAD_TO_FACE
    side = head.w
    cx, cy = head.x + side / 2, head.y + head.h / 2 + shift * side
    return Box(cx - width * side / 2, cy - height * side / 2, width * side, height * side)


class FaceSearch:
    """The three models and the steps of the search; no memory of earlier frames."""

    def __init__(self, settings: DetectorSettings, assets_dir: Path) -> None:
        self.settings = settings
        self.full = BlazeFace(FULL_RANGE, assets_dir, settings.threads)
        self.short = BlazeFace(SHORT_RANGE, assets_dir, settings.threads) if settings.confirm else None
        self.heads = BlazeFace(HEAD_RANGE, assets_dir, settings.threads) if settings.confirm else None

    def proposals(self, image: np.ndarray) -> list[Detection]:
        """The full-range model's faces on the whole frame, at the proposal threshold (best first)."""
        return self.full.run(image, self.settings.score_threshold, self.settings.nms_iou)

    def tile_proposals(self, image: np.ndarray, model: BlazeFace | None = None, threshold: float | None = None) -> list[Detection]:
        """Faces on overlapping tiles (short-range by default), in frame pixels, duplicates from overlaps merged."""
        model = model or self.short
        assert model is not None
        threshold = self.settings.tile_threshold if threshold is None else threshold
        found = [face for x0, y0, side in tiles(image.shape[1], image.shape[0])
                 for face in model.run(image[y0 : y0 + side, x0 : x0 + side], threshold, self.settings.nms_iou, (x0, y0))]
        return merge_faces(found, self.settings.nms_iou)[0]

    def frame_heads(self, image: np.ndarray) -> FrameHeads:
        """The second opinion's heads for this frame; what the best possible proposal needs is the floor."""
        assert self.heads is not None
        floor = max(self.settings.confirm_threshold - PROPOSAL_WEIGHT, 0.0)
        return FrameHeads(self.heads, image, floor, self.settings.nms_iou)

    def confirm(self, image: np.ndarray, proposals: list[Detection], max_rejections: int | None = None,
                rejected: list[Detection] | None = None, heads: FrameHeads | None = None,
                rejections_after_a_face: int | None = None) -> list[Confirmed]:
        """Keep the proposals the short-range model also sees on a crop around them, with its (tighter)
        box, or, failing that, those the pose detector's ``heads`` hold (none asked when None).

        A proposal's ``score`` is its proposing model's (for a known face: the one it was first
        confirmed on). Tried best first; after ``max_rejections`` rejections the rest are dropped. A
        search for new faces gives ``rejections_after_a_face``: once a face is confirmed, that many more
        rejections end it (true faces rank before the wall patches), and a proposal on a face confirmed
        before it (overlapping it, or centred in it) is that face, at no model run. The proposals tried
        and rejected (and, in a search for new faces that found one, those set aside) are appended to
        ``rejected`` when given. Not merged.
        """
        assert self.short is not None
        settings, confirmed, rejections = self.settings, [], 0
        ordered = sorted(proposals, key=lambda p: -p.score)
        for index, proposal in enumerate(ordered):
            if max_rejections is not None and rejections >= max_rejections:
                if rejected is not None and confirmed and rejections_after_a_face is not None:
                    rejected.extend(ordered[index:])  # set aside after a face: counted as looked at
                break
            if rejections_after_a_face is not None and confirmed and is_face(proposal, [c.face for c in confirmed]):
                continue
            (cx, cy), side = proposal.box.center, CONFIRM_CROP_SCALE * max(proposal.box.w, proposal.box.h)
            crop, ox, oy = square_crop(image, cx, cy, side)
            needed = settings.confirm_threshold - PROPOSAL_WEIGHT * proposal.score
            rows, scores = self.short.rows(crop, max(needed, 0.0), settings.nms_iou)
            rows[:, 0::2] += ox
            rows[:, 1::2] += oy
            # The crop may hold a neighbour's face too: confirm with the best face on *this* proposal.
            candidates = np.flatnonzero(iou(proposal.box.corners, rows[:, :4]) >= CONFIRM_MIN_IOU)
            head = None
            if len(candidates):
                best = candidates[np.argmax(scores[candidates])]
                keypoints = tuple((float(x), float(y)) for x, y in rows[best, 4:].reshape(-1, 2))
                face = Detection(Box.from_corners(*rows[best, :4]), float(scores[best]), keypoints, "short_range", proposal.track_id)
                confirmed.append(Confirmed(face, proposal.score))
            elif heads is not None and proposal.score >= SECOND_OPINION_MIN and (head := heads.holding((cx, cy), needed)) is not None:
                confirmed.append(Confirmed(replace(proposal, box=face_in_head(head[0]), score=head[1], source="pose"), proposal.score))
            else:
                rejections += 1
                if rejected is not None:
                    rejected.append(proposal)
            if len(confirmed) == 1 and rejections_after_a_face is not None and max_rejections is not None:
                max_rejections = min(max_rejections, rejections + rejections_after_a_face)
        return confirmed

    def still(self, image: np.ndarray) -> list[Detection]:
        """Faces in one photo on its own: the whole frame *and* the tiles (a photo's faces may be small:
        both models look at the tiles too), every proposal confirmed (a group has many faces)."""
        if self.short is None:
            return self.proposals(image)
        found = self.proposals(image)
        if self.settings.tile_search:
            found += self.tile_proposals(image, self.full, self.settings.score_threshold) + self.tile_proposals(image)
        confirmed = self.confirm(image, found, heads=self.frame_heads(image))
        return merge_faces([c.face for c in confirmed], self.settings.nms_iou)[0]
