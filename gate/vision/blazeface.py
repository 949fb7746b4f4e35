"""MediaPipe's BlazeFace-architecture detectors run by LiteRT (no MediaPipe runtime needed).

The SSD anchors, box decoding and weighted non-maximum suppression follow MediaPipe's
``SsdAnchorsCalculator``, ``TensorsToDetectionsCalculator`` and ``NonMaxSuppressionCalculator`` with
the options of ``face_detection_{short,full}_range.pbtxt`` and ``pose_detection.pbtxt``. A model run
gives face records (:class:`gate.types.Detection`) in the pixels of the image it was given.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gate.assets import FACE_DETECTION_FULL, FACE_DETECTION_SHORT, POSE_DETECTION, Asset, require
from gate.errors import ModelError
from gate.litert import load_interpreter
from gate.types import Box, Detection, Source
from gate.vision.geometry import iou
from gate.vision.imageops import letterbox

#: Keypoints of the face models: eyes, nose tip, mouth, ear tragions.
NUM_KEYPOINTS = 6
#: Raw scores are clipped to ±this before the sigmoid, as MediaPipe does (no overflow in exp).
_SCORE_CLIP = 100.0


@dataclass(frozen=True)
class BlazeFaceModel:
    """What differs between the BlazeFace-architecture detectors: asset, input side, anchors, keypoints."""

    asset: Asset
    input_size: int
    strides: tuple[int, ...]
    anchors_per_layer: int  # len(aspect_ratios) + 1 with interpolated_scale_aspect_ratio > 0
    source: Source
    keypoints: int = NUM_KEYPOINTS


SHORT_RANGE = BlazeFaceModel(FACE_DETECTION_SHORT, 128, (8, 16, 16, 16), 2, "short_range")
FULL_RANGE = BlazeFaceModel(FACE_DETECTION_FULL, 192, (4,), 1, "full_range")
#: MediaPipe's pose_detection.pbtxt: its box is the person's head; its 4 keypoints are body points (unused).
HEAD_RANGE = BlazeFaceModel(POSE_DETECTION, 224, (8, 16, 32, 32, 32), 2, "pose", keypoints=4)


def ssd_anchors(input_size: int, strides: tuple[int, ...], anchors_per_layer: int) -> np.ndarray:
    """Anchor centres (N×2, normalised x, y) as MediaPipe's SsdAnchorsCalculator lays them out.

    Consecutive layers with the same stride share one grid, their anchors interleaved per cell;
    with ``fixed_anchor_size`` (all three models) every anchor is 1×1, so only centres matter.
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


def output_indices(output_details: list[dict[str, Any]], num_anchors: int, name: str, coords: int = 4 + 2 * NUM_KEYPOINTS) -> tuple[int, int]:
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
    """Raw outputs → (rows K×coords: normalised x0, y0, x1, y1 then the keypoints' x, y; scores K)."""
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


def clusters(corners: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[np.ndarray]:
    """MediaPipe's clustering for WEIGHTED suppression: best box first, each cluster = the boxes not yet
    taken that overlap it (IoU > threshold). Returns each cluster's member indices, its leader first."""
    if len(scores) <= 1:
        return [np.arange(len(scores))] if len(scores) else []
    order = np.argsort(-scores, kind="stable")
    overlapping = iou(corners[order][:, None, :4], corners[order][None, :, :4]) > iou_threshold
    remaining = np.ones(len(scores), bool)
    groups = []
    for i in range(len(scores)):
        if remaining[i]:
            members = remaining & overlapping[i]
            members[i] = False
            groups.append(order[np.concatenate([[i], np.flatnonzero(members)])])
            remaining &= ~members
            remaining[i] = False
    return groups


def weighted_nms(rows: np.ndarray, scores: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Each cluster (:func:`clusters`) becomes the score-weighted mean of its members' rows (box and
    keypoints), keeping its best score; best first."""
    groups = clusters(rows, scores, iou_threshold)
    if not groups:
        return np.zeros((0, rows.shape[1]), np.float32), np.zeros(0, np.float32)
    merged = [rows[g[0]] if len(g) == 1 else (rows[g] * scores[g, None]).sum(axis=0) / scores[g].sum() for g in groups]
    return np.array(merged, np.float32), np.array([scores[g[0]] for g in groups], np.float32)


def merge_faces(faces: list[Detection], iou_threshold: float) -> tuple[list[Detection], list[int]]:
    """Duplicate face records merged like :func:`weighted_nms`: box and keypoints are the members'
    score-weighted mean, the score is the best; everything else (source, track id) is the best
    member's, except that a cluster holding a tracked face keeps that track. Returns the merged faces,
    best first, and the index of each one's best member in ``faces``."""
    if len(faces) <= 1:
        return list(faces), list(range(len(faces)))
    corners = np.array([face.box.corners for face in faces])
    scores = np.array([face.score for face in faces], np.float64)
    merged, leaders = [], []
    for group in clusters(corners, scores, iou_threshold):
        leader = faces[group[0]]
        if len(group) > 1:
            weights = scores[group] / scores[group].sum()
            box = Box.from_corners(*(corners[group] * weights[:, None]).sum(axis=0))
            keypoints = leader.keypoints
            if all(len(faces[g].keypoints) == len(leader.keypoints) for g in group):
                points = np.array([faces[g].keypoints for g in group], np.float64).reshape(len(group), -1, 2)
                keypoints = tuple((float(x), float(y)) for x, y in (points * weights[:, None, None]).sum(axis=0))
            track = next((faces[g].track_id for g in group if faces[g].track_id is not None), None)
            leader = replace(leader, box=box, keypoints=keypoints, track_id=track)
        merged.append(leader)
        leaders.append(int(group[0]))
    return merged, leaders


def to_faces(rows: np.ndarray, scores: np.ndarray, source: Source) -> list[Detection]:
    """Rows of corners + keypoints (frame pixels) as face records."""
    return [Detection(Box.from_corners(*row[:4]), float(score), tuple((float(x), float(y)) for x, y in row[4:].reshape(-1, 2)), source)
            for row, score in zip(rows, scores)]


class BlazeFace:
    """One BlazeFace-architecture model: RGB uint8 image of any size (letterboxed) → faces in its pixels."""

    def __init__(self, model: BlazeFaceModel, assets_dir: Path, threads: int) -> None:
        path = require(model.asset, assets_dir)
        self._interpreter = load_interpreter(path, threads)
        self._model = model
        self._size = model.input_size
        self._anchors = ssd_anchors(model.input_size, model.strides, model.anchors_per_layer)
        detail = self._interpreter.get_input_details()[0]
        if tuple(detail["shape"]) != (1, self._size, self._size, 3):
            raise ModelError(f"{path}: input shape {tuple(detail['shape'])}, expected (1, {self._size}, {self._size}, 3)")
        self._input = detail["index"]
        self._outputs = output_indices(self._interpreter.get_output_details(), len(self._anchors), str(path), 4 + 2 * model.keypoints)

    def rows(self, image: np.ndarray, threshold: float, nms_iou: float) -> tuple[np.ndarray, np.ndarray]:
        """Detections scoring ``threshold`` or more, merged: rows of x0, y0, x1, y1 + keypoints in
        ``image``'s pixels, and their scores (best first)."""
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

    def run(self, image: np.ndarray, threshold: float, nms_iou: float, origin: tuple[float, float] = (0.0, 0.0)) -> list[Detection]:
        """:meth:`rows` as face records, moved by ``origin`` (where ``image`` sits in the frame)."""
        rows, scores = self.rows(image, threshold, nms_iou)
        rows[:, 0::2] += origin[0]
        rows[:, 1::2] += origin[1]
        return to_faces(rows, scores, self._model.source)
