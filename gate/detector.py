"""Face detection with MediaPipe's BlazeFace models run by LiteRT (no MediaPipe runtime needed).

Propose, then confirm, because masks hide half of what BlazeFace looks for:

1. the *full-range* model (192×192) looks at the whole frame, letterboxed, with a threshold
   far below MediaPipe's 0.6 (``score_threshold``, default 0.1): masked faces at door distances
   often score 0.1–0.4 there, and so does about one patch of wall per frame;
2. each proposal is *confirmed* by the *short-range* model (128×128) on a square crop four
   times the face's size, where the face fills enough of the input for that model to be sure
   of a masked face too. A face is kept when the confirmation score plus half the proposal's
   score reaches ``confirm_threshold``: two independent opinions, so a confident proposal
   needs less confirmation. The confirmation also gives the tighter box that is kept;
   a full-range proposal the short-range model rejects but that scored at least
   ``SECOND_OPINION_MIN`` gets a second opinion from MediaPipe's *pose* detector (224×224, the whole
   frame, at most one run per frame): it finds people by their heads and still sees masked heads
   that both face models score low (a mask hides the nose and mouth they look for). The proposal is
   kept when a head box holds its centre and the head's score plus half the proposal's reaches the
   same ``confirm_threshold``; its face box is placed in the head box (``HEAD_TO_FACE``). A still
   (``detect_still``) asks it for the tile search's proposals too;
3. only when nothing is confirmed (``tile_search``), the short-range model looks again at
   overlapping tiles of about half the frame, where a 48-96 px face is big enough for it;
   its proposals are confirmed the same way.

Proposals are confirmed best first, and confirming stops after ``max_rejections`` rejections:
true faces rank first or second among the full-range proposals, the wall patches after them.
While faces are known, their proposals are set aside and one rejection ends the search for a
newcomer (one missed this way is looked for again on the next full pass).

The detector is **stateful across consecutive frames of one camera** (``detect`` is called once
per frame, in order), because at 30 fps a face is where it was 33 ms ago and re-finding it there
costs one short-range run, while the full pass costs a full-range run plus confirmations:

* motion is measured on a 1/4-size grey copy of the frame (``motion_threshold`` grey levels;
  camera noise averages out at that size): what did not change since the models last looked at
  it would get the same answer, so it is not looked at again;
* a known face whose region (its box × 1.5) did not change since its last confirmation is kept
  as it is, without any model run (a visitor standing still); one that changed is first looked
  for on the small grey frame by template matching against its look at that confirmation
  (``follow_correlation``, within a quarter of its size): a face that only shifted (a visitor
  swaying) is followed there without a model run; one that changed otherwise (turned, came
  closer, left), or that has been followed for ``full_scan_every`` frames, is confirmed again on
  a crop around its last box, with the same bar as its first confirmation (the proposal score is
  remembered). Following never drifts: it always compares with the look a model confirmed, and
  that look (and the box the classifier crops) is renewed on that schedule, except for a face kept
  on the pose detector's second opinion: it is confirmed again only when it changed, as a pose run
  costs as much as 3.7 full-range runs;
* the full-frame pass (full-range + confirmation of the proposals away from known faces) runs
  when the region of interest changed since the last full pass away from the known faces and
  their bodies (someone may have come; an empty, unchanged scene costs no model run), when a
  known face was not re-found, and at least every ``full_scan_every`` frames while faces are
  known, so a newcomer right next to a known face waits at most that many frames. What the last
  full pass rejected was looked at too (the confirmation crop around each rejected proposal):
  change inside those crops waits for the same schedule, so something face-like that moves but
  is never confirmed (a face the models cannot see, a swaying plant) costs a full pass every
  ``full_scan_every`` frames instead of one every few frames;
* the tile search runs on the first full pass without a face and then on every
  ``tile_every``-th full pass while none is found.

``reset()`` forgets the earlier frames (after a camera failure, or between unrelated images):
the next ``detect`` is then exactly the full per-frame pass. ``motion_threshold = 0`` gives the
full pass on every frame (``tile_every = 1``: with the tile search on every empty frame). Per-frame recall of the full pass is measured on synthetic
door scenes in ``benchmarks/results/detector.md``, the stream in ``benchmarks/results/gate.md``.

The SSD anchors, box decoding and weighted non-maximum suppression follow MediaPipe's
``SsdAnchorsCalculator``, ``TensorsToDetectionsCalculator`` and ``NonMaxSuppressionCalculator``
with the options of ``face_detection_{short,full}_range.pbtxt``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from gate.assets import DEFAULT_ASSETS_DIR, FACE_DETECTION_FULL, FACE_DETECTION_SHORT, POSE_DETECTION, Asset, require
from gate.errors import ImageError, ModelError
from gate.litert import load_interpreter
from gate.settings import DetectorSettings
from gate.types import Box, Detection

log = logging.getLogger(__name__)

NUM_KEYPOINTS = 6
_NUM_COORDS = 4 + 2 * NUM_KEYPOINTS
_SCORE_CLIP = 100.0
#: Side of the square crop used for confirmation, in multiples of the face box's longer side
#: (4 beat 2.5, 3, 5 and 6 on the door scenes: fewer false faces at the same recall).
CONFIRM_CROP_SCALE = 4.0
#: Weight of the proposing model's own score in the confirmation score.
PROPOSAL_WEIGHT = 0.5
#: A full-range proposal the short-range model rejected gets the pose detector's second opinion from
#: this score up. A pose run costs 430 M MACs (3.7× a full-range run), at most one a frame. 0.2 found
#: 2 more of bench_detector's 76 masked 96 px faces (a head at 0.68-0.75 over a proposal at 0.2-0.26),
#: no more wall patches, but ran the pose detector 2-3× as often on bench_gate's clips: its Pi 4
#: estimate for one face fell to 27.9 fps (goal 30; 35.2 with 0.3).
SECOND_OPINION_MIN = 0.3
#: The face box inside the pose detector's head box, in head-box sides: centre lower by 0.24, width
#: 0.87, height 0.94 (medians over 46 masked 96-120 px faces of another seed than the benchmarks';
#: on bare faces the head box sits lower, centre 0.03 above the face's, but they rarely need it).
HEAD_TO_FACE = (0.24, 0.87, 0.94)
#: Side of the tiles of the second look, as a fraction of the frame's shorter side
#: (256 px on 640×480: 3×2 tiles, so a face 1/10 of the frame is 3/16 of a tile).
TILE_FRACTION = 8 / 15
#: A short-range face must overlap the full-range hit this much to confirm it; a full-range
#: proposal overlapping a known face this much, or centred inside it, is that face (for a masked
#: face kept on the pose detector's opinion, the full-range model may propose only the eyes).
_CONFIRM_MIN_IOU = 0.2
#: Confirmed rows carry, after the box and keypoints, the score of the proposal they confirmed.
_PROPOSAL_SCORE = _NUM_COORDS
#: …and 1 when the pose detector's second opinion confirmed it (0: the short-range model did).
_BY_HEAD = _NUM_COORDS + 1
_ROW = _NUM_COORDS + 2
#: Motion is measured on the frame shrunk this many times, in grey.
MOTION_SCALE = 4
#: A known face is re-found when its box grown this much changed (a head turning, stepping closer).
FACE_MOTION_SCALE = 1.5
#: Changed pixels (of the small image: 16 frame pixels each) that make a region count as changed…
MIN_CHANGED_PX = 4
#: …and, for a known face, the share of its region that must have changed before it is re-found
#: (a box a few pixels stale still frames the face: the classifier's crop has a margin).
MOVED_SHARE = 0.1
#: A followed face is searched this far (fraction of its box side) from where it was confirmed.
FOLLOW_REACH = 0.25
#: Grey-level standard deviation below which a face's look is too flat to follow (re-found instead).
MIN_FOLLOW_CONTRAST = 4.0
#: Width of a known person's region (its face's side × this, from the face down to the bottom of
#: the frame), where motion is theirs and does not call for a full pass: head, shoulders, arms.
PERSON_WIDTH = CONFIRM_CROP_SCALE


@dataclass(frozen=True)
class BlazeFaceModel:
    """What differs between the BlazeFace-architecture detectors: asset, input side, anchors, keypoints."""

    asset: Asset
    input_size: int
    strides: tuple[int, ...]
    anchors_per_layer: int  # len(aspect_ratios) + 1 with interpolated_scale_aspect_ratio > 0
    keypoints: int = NUM_KEYPOINTS


SHORT_RANGE = BlazeFaceModel(FACE_DETECTION_SHORT, 128, (8, 16, 16, 16), 2)
FULL_RANGE = BlazeFaceModel(FACE_DETECTION_FULL, 192, (4,), 1)
#: MediaPipe's pose_detection.pbtxt: its box is the person's head; its 4 keypoints are body points (unused).
HEAD_RANGE = BlazeFaceModel(POSE_DETECTION, 224, (8, 16, 32, 32, 32), 2, keypoints=4)


@dataclass(frozen=True)
class _Look:
    """A known face as a model last confirmed it: the small grey frame then, its row then, and when."""

    small: np.ndarray
    row: np.ndarray
    frame: int


#: Why a face the detector found is not passed on (``BlazeFaceDetector.ignored``; a face both too small and
#: outside the region is counted as too small).
TOO_SMALL, OUTSIDE_ROI = "under_min_size", "outside_roi"


class FaceDetector(Protocol):
    def detect(self, image: np.ndarray) -> list[Detection]: ...

    def reset(self) -> None: ...


def ssd_anchors(input_size: int, strides: tuple[int, ...], anchors_per_layer: int) -> np.ndarray:
    """Anchor centres (N×2, normalised x, y) as MediaPipe's SsdAnchorsCalculator lays them out.

    Consecutive layers with the same stride share one grid, their anchors interleaved per cell;
    with ``fixed_anchor_size`` (both face models) every anchor is 1×1, so only centres matter.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = 1
        while layer + same < len(strides) and strides[layer + same] == stride:
            same += 1
        grid = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid((np.arange(grid) + 0.5) / grid, (np.arange(grid) + 0.5) / grid, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cells, same * anchors_per_layer, axis=0))
        layer += same
    return np.concatenate(centres).astype(np.float32)


def shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` resized to ``width``×``height``: halved by area averaging while it is at least twice
    as large, then bilinear. Close to an area resize (no aliasing) at a fraction of its cost: OpenCV's
    INTER_AREA is fast only for integer factors (6× slower than this for 640×480 → 192×144)."""
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Fit ``image`` into a black ``size``×``size`` square without stretching.

    Returns the square and the mapping back: frame pixel = (square pixel − pad) / scale.
    """
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = shrink(image, new_w, new_h)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    square = np.zeros((size, size, 3), np.uint8)
    square[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return square, scale, float(pad_x), float(pad_y)


def output_indices(output_details: list[dict[str, Any]], num_anchors: int, name: str, coords: int = _NUM_COORDS) -> tuple[int, int]:
    """Tensor indices of (regressors N×coords, scores N×1), told apart by shape, never by position."""
    regressors = scores = None
    for detail in output_details:
        shape = tuple(int(d) for d in detail["shape"])
        if shape[-2:] == (num_anchors, coords):
            regressors = detail["index"]
        elif shape[-2:] == (num_anchors, 1):
            scores = detail["index"]
    if regressors is None or scores is None:
        shapes = [tuple(int(d) for d in detail["shape"]) for detail in output_details]
        raise ModelError(f"{name}: expected outputs of shape (1, {num_anchors}, {coords}) and (1, {num_anchors}, 1), got {shapes}")
    return regressors, scores


def decode(regressors: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, input_size: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs → (boxes K×4 as normalised x0, y0, x1, y1 plus the keypoint coords, scores K)."""
    scores = (1.0 / (1.0 + np.exp(-np.clip(raw_scores.reshape(-1).astype(np.float64), -_SCORE_CLIP, _SCORE_CLIP)))).astype(np.float32)
    keep = scores >= threshold
    coords = regressors.shape[-1]
    raw = regressors.reshape(-1, coords)[keep] / input_size
    centres = anchors[keep]
    cx, cy = raw[:, 0] + centres[:, 0], raw[:, 1] + centres[:, 1]
    half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
    keypoints = raw[:, 4:].reshape(-1, (coords - 4) // 2, 2) + centres[:, None, :]
    boxes = np.concatenate([np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1), keypoints.reshape(-1, coords - 4)], axis=1)
    return boxes, scores[keep]


def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    # np.maximum, not np.clip: called for every known face on every frame, where np.clip's overhead dominated.
    ix = np.maximum(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0)
    iy = np.maximum(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0)
    inter = ix * iy
    area = max(float(box[2] - box[0]), 0.0) * max(float(box[3] - box[1]), 0.0)
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _inside(boxes: np.ndarray, x: Any, y: Any) -> np.ndarray:
    """Whether each point lies in the box, or in each box (x0, y0, x1, y1 first; broadcasts)."""
    return (boxes[..., 0] <= x) & (x <= boxes[..., 2]) & (boxes[..., 1] <= y) & (y <= boxes[..., 3])


def _pairwise_iou(boxes: np.ndarray) -> np.ndarray:
    """IoU of every box with every box (N×N), in one vectorised step."""
    x0, y0, x1, y1 = (boxes[:, k] for k in range(4))
    ix = np.maximum(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0)
    iy = np.maximum(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0)
    inter = ix * iy
    areas = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    union = areas[:, None] + areas[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED suppression: each cluster (IoU > threshold with its best box) becomes the
    score-weighted mean of its members (box and keypoints), keeping the best score."""
    merged_boxes, merged_scores, _ = _weighted_nms(boxes, scores, iou_threshold)
    return merged_boxes, merged_scores


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """:func:`weighted_nms`, also returning the index (into ``boxes``) of each cluster's best member."""
    if len(boxes) == 1:  # a lone known face, on most frames: nothing to merge
        return boxes.astype(np.float32), scores.astype(np.float32), [0]
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    overlapping = _pairwise_iou(boxes) > iou_threshold
    merged_boxes, merged_scores, leaders = [], [], []
    remaining = np.ones(len(scores), bool)
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        cluster = remaining & overlapping[i]
        cluster[i] = True
        if cluster.sum() == 1:
            merged_boxes.append(boxes[i])
        else:
            weights = scores[cluster]
            merged_boxes.append((boxes[cluster] * weights[:, None]).sum(axis=0) / weights.sum())
        merged_scores.append(scores[i])
        leaders.append(int(order[i]))
        remaining &= ~cluster
    if not merged_boxes:
        return np.zeros((0, boxes.shape[1]), np.float32), np.zeros(0, np.float32), []
    return np.array(merged_boxes, np.float32), np.array(merged_scores, np.float32), leaders


class _BlazeFace:
    """One BlazeFace model: square RGB uint8 image → faces in that image's pixels."""

    def __init__(self, model: BlazeFaceModel, assets_dir: Path, threads: int) -> None:
        path = require(model.asset, assets_dir)
        self._interpreter = load_interpreter(path, threads)
        self._size = model.input_size
        self._anchors = ssd_anchors(model.input_size, model.strides, model.anchors_per_layer)
        detail = self._interpreter.get_input_details()[0]
        if tuple(detail["shape"]) != (1, self._size, self._size, 3):
            raise ModelError(f"{path}: input shape {tuple(detail['shape'])}, expected (1, {self._size}, {self._size}, 3)")
        self._input = detail["index"]
        self._outputs = output_indices(self._interpreter.get_output_details(), len(self._anchors), str(path), 4 + 2 * model.keypoints)

    def run(self, image: np.ndarray, threshold: float, nms_iou: float) -> tuple[np.ndarray, np.ndarray]:
        """Faces in ``image`` (any size, letterboxed): rows of x0, y0, x1, y1 + keypoints, in its pixels."""
        square, scale, pad_x, pad_y = letterbox(image, self._size)
        tensor = (square.astype(np.float32) / 127.5 - 1.0)[None]  # the models want RGB in [-1, 1]
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()
        regressors = self._interpreter.get_tensor(self._outputs[0])
        raw_scores = self._interpreter.get_tensor(self._outputs[1])
        boxes, scores = decode(regressors, raw_scores, self._anchors, self._size, threshold)
        boxes, scores = weighted_nms(boxes, scores, nms_iou)
        pixels = boxes * self._size
        pixels[:, 0::2] = (pixels[:, 0::2] - pad_x) / scale
        pixels[:, 1::2] = (pixels[:, 1::2] - pad_y) / scale
        return pixels, scores


def tiles(width: int, height: int) -> list[tuple[int, int, int]]:
    """Overlapping square tiles (x0, y0, side) covering a ``width``×``height`` frame, evenly spread."""
    side = max(1, round(min(width, height) * TILE_FRACTION))

    def starts(length: int) -> list[int]:
        count = -(-length // side)
        return [round(i * (length - side) / (count - 1)) for i in range(count)] if count > 1 else [0]

    return [(x, y, side) for y in starts(height) for x in starts(width)]


def _detection(row: np.ndarray, score: float) -> Detection:
    x0, y0, x1, y1 = (float(v) for v in row[:4])
    keypoints = tuple((float(row[4 + 2 * k]), float(row[5 + 2 * k])) for k in range(NUM_KEYPOINTS))
    return Detection(Box(x0, y0, x1 - x0, y1 - y0), float(score), keypoints)


def _square_crop(image: np.ndarray, cx: float, cy: float, side: float) -> tuple[np.ndarray, float, float]:
    """A ``side``-pixel square centred on (cx, cy), black outside the frame; returns it and its origin."""
    side_px = max(1, round(side))
    x0, y0 = round(cx - side_px / 2), round(cy - side_px / 2)
    height, width = image.shape[:2]
    crop = np.zeros((side_px, side_px, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(width, x0 + side_px), min(height, y0 + side_px)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return crop, float(x0), float(y0)


def _small_grey(image: np.ndarray) -> np.ndarray:
    """The frame at 1/MOTION_SCALE, grey: where motion is measured (cheap, and sensor noise averages out).
    Grey first, then shrunk: the same image within a grey level (both steps are averages), a third less time."""
    height, width = image.shape[:2]
    return shrink(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), max(1, width // MOTION_SCALE), max(1, height // MOTION_SCALE))


def _small_region(row: np.ndarray, scale: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The square of ``scale`` × the longer side of ``row``'s box, around its centre, in small-image pixels."""
    x0, y0, x1, y1 = (float(v) for v in row[:4])
    half = scale * max(x1 - x0, y1 - y0) / 2 / MOTION_SCALE
    cx, cy = (x0 + x1) / 2 / MOTION_SCALE, (y0 + y1) / 2 / MOTION_SCALE
    height, width = shape[:2]
    clamp = lambda v, high: min(max(v, 0), high)  # noqa: E731 - plain floats: np.clip costs more than the rest
    return (int(clamp(cx - half, width)), int(clamp(cy - half, height)),
            int(clamp(math.ceil(cx + half), width)), int(clamp(math.ceil(cy + half), height)))


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise ImageError(f"detector needs an RGB uint8 H×W×3 image, got {image.dtype} of shape {image.shape}")


class BlazeFaceDetector:
    """Full-range BlazeFace proposals, short-range confirmation around each, a tiled second look
    when nothing is confirmed, then the size and region filters; faces of the previous frame are
    re-found on crops between full passes (see the module docstring)."""

    def __init__(self, settings: DetectorSettings, assets_dir: Path | None = None) -> None:
        folder = Path(assets_dir or settings.assets_dir or DEFAULT_ASSETS_DIR)
        self._settings = settings
        self._full = _BlazeFace(FULL_RANGE, folder, settings.threads)
        self._short = _BlazeFace(SHORT_RANGE, folder, settings.threads) if settings.confirm else None
        self._heads = _BlazeFace(HEAD_RANGE, folder, settings.threads) if settings.confirm else None
        self.reset()

    def reset(self) -> None:
        """Forget earlier frames: the next ``detect`` runs the full pass, tile search included."""
        self._known = np.zeros((0, _ROW), np.float32)
        self._known_scores = np.zeros(0, np.float32)
        self._known_looks: list[_Look] = []  # per known face: how it looked at its last confirmation
        self._scene_ref: np.ndarray | None = None  # the small grey frame the last full pass looked at
        self._rejected: list[np.ndarray] = []  # rows the last full pass rejected: their confirmation crops were looked at
        self._frames_since_full_pass = 0
        self._frames_without_face = 0
        self._frame = 0  # frames seen since the reset: when each known face was last confirmed
        self._heads_seen: tuple[int, np.ndarray, np.ndarray] | None = None  # (frame, head boxes, scores): one pose run a frame
        self.ignored: list[tuple[Detection, str]] = []  # the last frame's faces dropped by the size or region filter, with why

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 frame (the next frame of the stream), in frame pixels, best score first."""
        _check_image(image)
        if self._short is None:
            rows, scores = self._full.run(image, self._settings.score_threshold, self._settings.nms_iou)
        else:
            rows, scores = self._find(image)
        return self._filtered(rows, scores, image)

    def detect_still(self, image: np.ndarray) -> list[Detection]:
        """Faces in one photo on its own (``gate-cli test-image``): the same answer whatever was seen
        before. Forgets earlier frames, then runs the full-frame pass *and* the tile search (a photo's
        faces may be small: both models look at the tiles too) and confirms every proposal (no rejection
        cap: a group has many faces)."""
        _check_image(image)
        self.reset()
        if self._short is None:
            return self.detect(image)
        settings = self._settings
        found = [self._full.run(image, settings.score_threshold, settings.nms_iou)]
        if settings.tile_search:
            found += [self._tile_proposals(image, self._full, settings.score_threshold), self._tile_proposals(image)]
        rows, scores = np.concatenate([r for r, _ in found]), np.concatenate([s for _, s in found])
        rows, scores = weighted_nms(*self._confirm(image, rows, scores), settings.nms_iou)
        return self._filtered(rows, scores, image)

    def _filtered(self, rows: np.ndarray, scores: np.ndarray, image: np.ndarray) -> list[Detection]:
        """The faces passed on; the others, with why, are kept in ``ignored`` for the preview's tuning view."""
        found = [_detection(row, score) for row, score in zip(rows, scores)]
        reasons = [self._ignored_because(d, image.shape[1], image.shape[0]) for d in found]
        self.ignored = [(d, why) for d, why in zip(found, reasons) if why is not None]
        return [d for d, why in zip(found, reasons) if why is None]

    def _find(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Known faces kept where nothing moved, re-found on crops where something did; the full pass
        and the tile search when due (see the module docstring)."""
        settings = self._settings
        small = _small_grey(image)
        gated = settings.motion_threshold > 0 and self._scene_ref is not None and self._scene_ref.shape == small.shape
        known, known_scores, looks = self._known.copy(), self._known_scores, self._known_looks
        # A face followed away from where it was confirmed is matched again on every frame: its look's
        # frame no longer shows where it is (it may have swayed back).
        moved = np.array([not gated or not np.array_equal(row[:4], look.row[:4]) or self._moved(small, look.small, row)
                          for row, look in zip(known, looks)], bool)
        self._frame += 1
        for index in np.flatnonzero(moved) if gated else ():
            if self._frame - looks[index].frame >= settings.full_scan_every and not looks[index].row[_BY_HEAD]:
                continue  # followed long enough: the model looks again (a fresh box and look)
            followed = self._follow(small, looks[index])
            if followed is not None:
                known[index], moved[index] = followed, False
        rows, scores = self._confirm(image, known[moved, :_NUM_COORDS], known[moved, _PROPOSAL_SCORE])
        lost = len(scores) < int(moved.sum())
        refs = [look for look, m in zip(looks, moved) if not m] + [_Look(small, row, self._frame) for row in rows]
        rows, scores = np.concatenate([known[~moved], rows]), np.concatenate([known_scores[~moved], scores])
        self._frames_since_full_pass += 1
        due = self._frames_since_full_pass >= settings.full_scan_every
        if not gated or lost or (len(known) and due) or self._changed(small, known, due):
            self._frames_since_full_pass = 0
            self._scene_ref = small
            self._rejected = []
            proposals, proposal_scores = self._full.run(image, settings.score_threshold, settings.nms_iou)
            centres = (proposals[:, 0] + proposals[:, 2]) / 2, (proposals[:, 1] + proposals[:, 3]) / 2
            overlaps = np.array([(_iou_one_to_many(row, proposals) >= _CONFIRM_MIN_IOU) | _inside(row, *centres) for row in rows]).reshape(len(rows), len(proposals))
            for row, overlapping in zip(rows, overlaps):  # a known face keeps its best proposal score
                row[_PROPOSAL_SCORE] = max(row[_PROPOSAL_SCORE], proposal_scores[overlapping].max(initial=0.0))
            newcomers = ~overlaps.any(axis=0)
            # With faces known, a newcomer is the best proposal left: one rejection ends the search.
            rejections = settings.max_rejections if not len(rows) else 1
            new_rows, new_scores = self._confirm(image, proposals[newcomers], proposal_scores[newcomers], rejections, self._rejected)
            rows, scores = np.concatenate([rows, new_rows]), np.concatenate([scores, new_scores])
            refs += [_Look(small, row, self._frame) for row in new_rows]
            if not len(scores) and settings.tile_search and self._frames_without_face % settings.tile_every == 0:
                rows, scores = self._confirm(image, *self._tile_proposals(image), settings.max_rejections, self._rejected, second_opinion=False)
                refs = [_Look(small, row, self._frame) for row in rows]
            self._frames_without_face = 0 if len(scores) else self._frames_without_face + 1
        # Two hits on one face confirm the same face twice: merge them like any duplicate.
        merged, scores, leaders = _weighted_nms(rows, scores, settings.nms_iou)
        self._known_looks = [refs[i] for i in leaders]
        self._known, self._known_scores = merged, scores
        return merged, scores

    def _follow(self, small: np.ndarray, look: _Look) -> np.ndarray | None:
        """The face's row moved to where its confirmed look matches the small frame best, or None when
        no place within FOLLOW_REACH matches well enough (``follow_correlation``) or the best is at the
        edge of the search (it may have gone further)."""
        x0, y0, x1, y1 = _small_region(look.row, 1.0, small.shape)
        template = look.small[y0:y1, x0:x1]
        if template.size == 0 or float(cv2.meanStdDev(template)[1][0, 0]) < MIN_FOLLOW_CONTRAST:
            return None
        reach = max(1, round(FOLLOW_REACH * max(x1 - x0, y1 - y0)))
        height, width = small.shape
        sx0, sy0, sx1, sy1 = max(0, x0 - reach), max(0, y0 - reach), min(width, x1 + reach), min(height, y1 + reach)
        match = cv2.matchTemplate(small[sy0:sy1, sx0:sx1], template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(match)
        at_edge = (bx in (0, match.shape[1] - 1) and match.shape[1] > 1) or (by in (0, match.shape[0] - 1) and match.shape[0] > 1)
        if best < self._settings.follow_correlation or at_edge:
            return None
        row = look.row.copy()
        row[0:_NUM_COORDS:2] += (sx0 + bx - x0) * MOTION_SCALE
        row[1:_NUM_COORDS:2] += (sy0 + by - y0) * MOTION_SCALE
        return row

    def _moved(self, small: np.ndarray, ref: np.ndarray, row: np.ndarray) -> bool:
        """Whether the face of ``row`` (a little more than its box) changed since its reference frame."""
        x0, y0, x1, y1 = _small_region(row, FACE_MOTION_SCALE, small.shape)
        now, then = small[y0:y1, x0:x1], ref[y0:y1, x0:x1]
        changed = np.count_nonzero(cv2.absdiff(now, then) > self._settings.motion_threshold)
        return now.size == 0 or changed > max(MIN_CHANGED_PX, MOVED_SHARE * now.size)

    def _changed(self, small: np.ndarray, known: np.ndarray, due: bool) -> bool:
        """Whether the region of interest changed since the last full pass away from the known people
        (each face's column, PERSON_WIDTH wide, from just above the face to the bottom of the frame:
        a head turning, a walking body) and away from what that pass rejected (the confirmation crops
        of its rejected proposals): someone new may have come. Change inside the rejected crops
        counts once the scheduled full pass is ``due``; a newcomer inside a known person's region
        waits for that schedule too (``full_scan_every``)."""
        assert self._scene_ref is not None
        mask = cv2.absdiff(small, self._scene_ref) > self._settings.motion_threshold
        for row in known:
            x0, y0, x1, _ = _small_region(row, PERSON_WIDTH, small.shape)
            mask[y0:, x0:x1] = False
        if not due:
            for row in self._rejected:
                x0, y0, x1, y1 = _small_region(row, CONFIRM_CROP_SCALE, small.shape)
                mask[y0:y1, x0:x1] = False
        height, width = small.shape
        rx0, ry0, rx1, ry1 = self._settings.roi
        inside = mask[int(ry0 * height) : int(np.ceil(ry1 * height)), int(rx0 * width) : int(np.ceil(rx1 * width))]
        return np.count_nonzero(inside) >= MIN_CHANGED_PX

    def _tile_proposals(self, image: np.ndarray, model: _BlazeFace | None = None, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Faces on overlapping tiles (short-range by default), in frame pixels, duplicates from overlaps merged."""
        model = model or self._short
        assert model is not None
        threshold = self._settings.tile_threshold if threshold is None else threshold
        all_rows, all_scores = [], []
        for x0, y0, side in tiles(image.shape[1], image.shape[0]):
            rows, scores = model.run(image[y0 : y0 + side, x0 : x0 + side], threshold, self._settings.nms_iou)
            rows[:, 0::2] += x0
            rows[:, 1::2] += y0
            all_rows.append(rows)
            all_scores.append(scores)
        return weighted_nms(np.concatenate(all_rows), np.concatenate(all_scores), self._settings.nms_iou)

    def _confirm(self, image: np.ndarray, rows: np.ndarray, scores: np.ndarray, max_rejections: int | None = None,
                 rejected_rows: list[np.ndarray] | None = None, second_opinion: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Keep proposals the short-range model also sees on a crop around them, with its (tighter) box,
        or, failing that, the pose detector's head (``second_opinion``, see :meth:`_second_opinion`).

        Kept when confirmation score + PROPOSAL_WEIGHT × proposal score ≥ confirm_threshold.
        Proposals are tried best first; after ``max_rejections`` rejections the rest are dropped.
        Returned rows end with the proposal's score (``_PROPOSAL_SCORE``) and whether the pose detector
        confirmed it (``_BY_HEAD``); not merged. The rows tried and rejected are appended to
        ``rejected_rows`` when given.
        """
        assert self._short is not None
        confirmed_rows, confirmed_scores = [], []
        rejected = 0
        for index in np.argsort(-scores, kind="stable"):
            if max_rejections is not None and rejected >= max_rejections:
                break
            row, score = rows[index], float(scores[index])
            width, height = row[2] - row[0], row[3] - row[1]
            side = CONFIRM_CROP_SCALE * max(width, height)
            crop, ox, oy = _square_crop(image, (row[0] + row[2]) / 2, (row[1] + row[3]) / 2, side)
            needed = self._settings.confirm_threshold - PROPOSAL_WEIGHT * score
            found, found_scores = self._short.run(crop, max(needed, 0.0), self._settings.nms_iou)
            found[:, 0::2] += ox
            found[:, 1::2] += oy
            # The crop may hold a neighbour's face too: confirm with the best face on *this* proposal.
            candidates = np.flatnonzero(_iou_one_to_many(row, found) >= _CONFIRM_MIN_IOU)
            if len(candidates):
                best = candidates[np.argmax(found_scores[candidates])]
                confirmed_rows.append(np.concatenate([found[best], (score, 0.0)]))
                confirmed_scores.append(found_scores[best])
            elif second_opinion and score >= SECOND_OPINION_MIN and (head := self._second_opinion(image, row, needed)) is not None:
                confirmed_rows.append(np.concatenate([head[0], (score, 1.0)]))
                confirmed_scores.append(head[1])
            else:
                rejected += 1
                if rejected_rows is not None:
                    rejected_rows.append(row)
        if not confirmed_rows:
            return np.zeros((0, _ROW), np.float32), np.zeros(0, np.float32)
        return np.array(confirmed_rows, np.float32), np.array(confirmed_scores, np.float32)

    def _second_opinion(self, image: np.ndarray, row: np.ndarray, needed: float) -> tuple[np.ndarray, float] | None:
        """``row`` with its face box placed in the best head the pose detector finds around its centre
        scoring at least ``needed``, and that score; None when there is none. The pose detector runs
        on the whole frame at most once per frame: every proposal of the frame asks the same heads."""
        assert self._heads is not None
        if self._heads_seen is None or self._heads_seen[0] != self._frame:
            floor = self._settings.confirm_threshold - PROPOSAL_WEIGHT  # what the best possible proposal needs
            self._heads_seen = (self._frame, *self._heads.run(image, max(floor, 0.0), self._settings.nms_iou))
        _, heads, head_scores = self._heads_seen
        holding = _inside(heads, (row[0] + row[2]) / 2, (row[1] + row[3]) / 2) & (head_scores >= needed)
        if not holding.any():
            return None
        best = np.flatnonzero(holding)[np.argmax(head_scores[holding])]
        x0, y0, x1, y1 = heads[best, :4]
        shift, width, height = HEAD_TO_FACE
        side = x1 - x0
        fx, fy = (x0 + x1) / 2, (y0 + y1) / 2 + shift * side
        face = row.copy()
        face[:4] = (fx - width * side / 2, fy - height * side / 2, fx + width * side / 2, fy + height * side / 2)
        return face, float(head_scores[best])

    def _ignored_because(self, detection: Detection, width: int, height: int) -> str | None:
        x0, y0, x1, y1 = self._settings.roi
        cx, cy = detection.box.center
        if detection.box.w < self._settings.min_face_px:
            return TOO_SMALL
        if not (x0 * width <= cx <= x1 * width and y0 * height <= cy <= y1 * height):
            return OUTSIDE_ROI
        return None
