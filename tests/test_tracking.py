"""The one tracker: its rules on their own, then one face through the real detector and the policy,
keeping its track id through following, re-confirmation, a short loss and re-identification."""

from __future__ import annotations

import pytest

from gate.policy import DecisionPolicy, FaceObservation
from gate.settings import DetectorSettings, PolicySettings
from gate.types import Box, Classification, Detection
from gate.vision.detector import BlazeFaceDetector
from gate.vision.tracker import Tracker
from tests.door_scenes import door_background, paste, synthetic_faces
from tests.test_detector import ModelRuns

FPS = 30


def face(x: float, y: float = 100, side: float = 80, track_id: int | None = None) -> Detection:
    return Detection(Box(x, y, side, side), 0.9, track_id=track_id)


def ids(tracked: list[Detection]) -> list[tuple[int | None, bool]]:
    return [(f.track_id, f.reidentified) for f in tracked]


# -- the rules ------------------------------------------------------------------------------------


def test_overlapping_faces_keep_their_ids_and_newcomers_get_new_ones_in_order() -> None:
    tracker = Tracker.from_settings(PolicySettings())
    assert ids(tracker.update(0.0, [face(100), face(400)])) == [(1, False), (2, False)]
    assert ids(tracker.update(1 / FPS, [face(410), face(110), face(250, side=40)])) == [(2, False), (1, False), (3, False)]


def test_a_face_the_detector_carried_keeps_its_id_even_without_overlap() -> None:
    """The stream followed or re-confirmed it: its id is already known, whatever its box did."""
    tracker = Tracker.from_settings(PolicySettings())
    [first] = tracker.update(0.0, [face(100)])
    assert ids(tracker.update(1 / FPS, [face(300, track_id=first.track_id)])) == [(1, False)]


def test_a_lost_face_is_re_identified_near_where_it_was_lost_and_only_within_reid_within_s() -> None:
    tracker = Tracker.from_settings(PolicySettings(reid_within_s=0.5, reid_distance=1.5))
    tracker.update(0.0, [face(100)])
    assert ids(tracker.update(5 / FPS, [face(200)])) == [(1, True)]  # 1.25 widths away, no overlap
    assert ids(tracker.update(6 / FPS, [face(205)])) == [(1, False)]  # then matched as usual
    tracker.update(7 / FPS, [])
    assert ids(tracker.update(7 / FPS + 0.6, [face(300)])) == [(2, False)]  # too late: someone new
    assert ids(tracker.update(8 / FPS + 0.6, [face(600)])) == [(3, False)]  # too far


def test_a_track_unseen_for_track_max_age_s_is_forgotten_and_ids_are_never_reused() -> None:
    tracker = Tracker.from_settings(PolicySettings(track_max_age_s=1.0, reid_within_s=0.5))
    tracker.update(0.0, [face(100)])
    assert ids(tracker.update(0.9, [face(100)])) == [(1, False)]  # missed for a while, same place: same track
    assert ids(tracker.update(2.0, [face(100)])) == [(2, False)]
    tracker.reset()
    assert ids(tracker.update(2.1, [face(100)])) == [(3, False)]


def test_two_faces_claiming_one_track_are_refused() -> None:
    tracker = Tracker.from_settings(PolicySettings())
    tracker.update(0.0, [face(100)])
    with pytest.raises(ValueError, match="two faces carry one track id"):
        tracker.update(1 / FPS, [face(100, track_id=1), face(400, track_id=1)])


def test_the_policy_refuses_untracked_faces() -> None:
    policy = DecisionPolicy(PolicySettings(), 0.6)
    with pytest.raises(ValueError, match="track id"):
        policy.update(0.0, [FaceObservation(face(100), Classification("with_mask", {"with_mask": 1.0}))])


# -- one face through the real detector and the policy ----------------------------------------------


def reading(label: str) -> Classification:
    return Classification(label, {"with_mask": 0.97 if label == "with_mask" else 0.01, "without_mask": 0.02 if label == "with_mask" else 0.98,
                                  "incorrect_mask": 0.01})


def test_a_face_keeps_its_track_id_through_follow_reconfirmation_loss_and_reidentification() -> None:
    person = synthetic_faces(12, seed=2024)[0]  # the face tests/test_detector.py follows
    detector = BlazeFaceDetector(DetectorSettings(full_scan_every=4))
    policy = DecisionPolicy(PolicySettings(), 0.6)
    runs = ModelRuns(detector)
    decisions = []
    frame_number = 0

    def show(x: int | None, label: str = "with_mask") -> list[Detection]:
        nonlocal frame_number
        scene = door_background(5)
        if x is not None:
            paste(scene, person.bare, person.box, 96, x, 150)
        now = frame_number / FPS
        frame_number += 1
        faces = detector.detect(scene, now)
        decision = policy.update(now, [FaceObservation(f, reading(label)) for f in faces])
        if decision is not None:
            decisions.append(decision)
        return faces

    [first] = show(200)
    track = first.track_id
    runs.take()
    for x in (208, 200, 208):  # swaying: followed on the grey frame, no model run
        [followed] = show(x)
        assert (followed.track_id, followed.reidentified, runs.take()) == (track, False, (0, 0))
    confirmed_before = detector.stream.known[0].look.frame
    [again] = show(200)  # followed for full_scan_every frames: the short-range model looks again
    assert runs.take()[1] >= 1 and detector.stream.known[0].look.frame > confirmed_before
    assert (again.track_id, again.source) == (track, "short_range")
    assert show(None) == [] and show(None) == []  # lost for two frames
    [back] = show(200)
    assert (back.track_id, back.reidentified) == (track, False)  # where it was: matched by overlap
    [jumped] = show(300)  # a step of about one face width: no overlap with its last box
    assert (jumped.track_id, jumped.reidentified) == (track, True)
    for _ in range(4):  # read afresh: now without a mask
        [later] = show(300, "without_mask")
        assert (later.track_id, later.reidentified) == (track, False)
    assert [(d.verdict, d.track_ids) for d in decisions] == [("grant", (track,)), ("deny", (track,))]
