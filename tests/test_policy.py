"""DecisionPolicy as tables: a sequence of frames at 30 fps in → the decisions that must come out."""

from __future__ import annotations

import pytest

from gate.policy import Decision, DecisionPolicy, FaceObservation
from gate.errors import ConfigError
from gate.settings import PolicySettings, parse_settings
from gate.types import Box, Classification, Detection
from gate.vision.tracker import Tracker

FPS = 30
LEFT = (100, 100, 80, 80)
RIGHT = (400, 100, 80, 80)
SPOTS = [(40 + 150 * i, 120, 72, 72) for i in range(4)]
# Where LEFT / RIGHT are re-found after being lost, walking away: too far for the boxes to overlap
# (IoU 0.14 < track_iou), near enough to be them again (0.75 face widths < reid_distance).
LEFT_ON, RIGHT_ON = (160, 100, 80, 80), (460, 100, 80, 80)
M, W, I = "with_mask", "without_mask", "incorrect_mask"
SURE, UNSURE = 0.95, 0.45
CONTRACT_FLOOR = 0.6  # the model contract's min_confidence; below the policy's decide_confidence (0.8)


def observation(box: tuple[float, float, float, float], label: str, confidence: float, score: float = 0.9) -> FaceObservation:
    others = [name for name in (M, W, I) if name != label]
    rest = (1.0 - confidence) / len(others)
    scores = {label: confidence, **{name: rest for name in others}}
    return FaceObservation(Detection(Box(*box), score), Classification(label, scores))


def frames(start: int, count: int, *faces: tuple) -> list[tuple[int, list[tuple]]]:
    """``count`` frames from frame number ``start``, each showing ``faces`` (box, label, confidence)."""
    return [(start + i, list(faces)) for i in range(count)]


def walking_out(start: int, count: int, *faces: tuple[tuple, str]) -> list[tuple[int, list[tuple]]]:
    """Faces (box, label) walking right 40 px a frame (IoU 0.33 with the last box), missed every
    4th frame (a real-time demo dropping frames): after each miss, no box overlaps the last one."""
    return [(start + i, [] if i % 4 == 3 else [((x + 40 * i, y, w, h), label, SURE) for (x, y, w, h), label in faces])
            for i in range(count)]


def lingering_with_dropouts(seconds: int, label: str) -> list[tuple[int, list[tuple]]]:
    """One visitor for ``seconds``: every 2 s the face is lost for 6 frames and re-found with a box
    that does not overlap the last one enough (IoU 0.22), alternately at LEFT and beside it."""
    beside = (150, 100, 84, 84)
    return [frame for cycle in range(seconds // 2)
            for frame in frames(cycle * 60, 54, (beside if cycle % 2 else LEFT, label, SURE)) + frames(cycle * 60 + 54, 6)]


def alternating(start: int, count: int, box: tuple, first: str, second: str) -> list[tuple[int, list[tuple]]]:
    return [(start + i, [(box, first if i % 2 == 0 else second, SURE)]) for i in range(count)]


class TrackedPolicy:
    """The policy behind the one tracker, as the gate runs them: the tracker gives each face its id."""

    def __init__(self, settings: PolicySettings, min_confidence: float, door_open_s: float | None = None) -> None:
        self.policy = DecisionPolicy(settings, min_confidence, door_open_s)
        self.tracker = Tracker.from_settings(settings)

    def update(self, now: float, observations: list[FaceObservation]) -> Decision | None:
        tracked = self.tracker.update(now, [o.detection for o in observations])
        return self.policy.update(now, [FaceObservation(d, o.classification) for d, o in zip(tracked, observations)])

    def reset(self) -> None:
        self.policy.reset()
        self.tracker.reset()


def run(frame_list: list[tuple[int, list[tuple]]], floor: float = CONTRACT_FLOOR, **settings: object) -> list[Decision]:
    policy = TrackedPolicy(PolicySettings(**settings), min_confidence=floor)
    decisions = []
    for number, faces in frame_list:
        decision = policy.update(number / FPS, [observation(*face) for face in faces])
        if decision is not None:
            decisions.append(decision)
    return decisions


def summary(decisions: list[Decision]) -> list[tuple[int, str, str, tuple[int, ...]]]:
    """(frame number of the decision, verdict, reason, track ids)."""
    return [(round(d.at * FPS), d.verdict, d.reason, d.track_ids) for d in decisions]


CASES = {
    # -- evidence, one face ---------------------------------------------------------------------
    "clean masked face: grant on its 3rd frame": (frames(0, 10, (LEFT, M, SURE)), {}, [(2, "grant", "all_masked", (1,))]),
    "clean bare face: deny on its 3rd frame": (frames(0, 10, (LEFT, W, SURE)), {}, [(2, "deny", "no_mask", (1,))]),
    "incorrect mask: deny with its own reason": (frames(0, 10, (LEFT, I, SURE)), {}, [(2, "deny", "incorrect_mask", (1,))]),
    "two frames are not enough": (frames(0, 2, (LEFT, M, SURE)), {}, []),
    "one flicker on the 1st frame adds ≤ 2 frames": (
        frames(0, 1, (LEFT, W, SURE)) + frames(1, 10, (LEFT, M, SURE)), {}, [(3, "grant", "all_masked", (1,))]),
    "one flicker on the 2nd frame adds ≤ 2 frames": (
        frames(0, 1, (LEFT, M, SURE)) + frames(1, 1, (LEFT, W, SURE)) + frames(2, 10, (LEFT, M, SURE)),
        {}, [(4, "grant", "all_masked", (1,))]),
    "one flicker on the 3rd frame adds ≤ 2 frames": (
        frames(0, 2, (LEFT, M, SURE)) + frames(2, 1, (LEFT, W, SURE)) + frames(3, 10, (LEFT, M, SURE)),
        {}, [(4, "grant", "all_masked", (1,))]),
    "one uncertain frame adds ≤ 2 frames": (
        frames(0, 2, (LEFT, M, SURE)) + frames(2, 1, (LEFT, M, UNSURE)) + frames(3, 10, (LEFT, M, SURE)),
        {}, [(3, "grant", "all_masked", (1,))]),
    "alternating masked/bare never grants: undecided after decide_within_s": (
        alternating(0, 120, LEFT, M, W), {}, [(30, "deny", "undecided", (1,))]),
    "alternating bare/masked never grants either": (
        alternating(0, 120, LEFT, W, M), {}, [(30, "deny", "undecided", (1,))]),
    "a doubtful face never grants": (frames(0, 120, (LEFT, M, 0.7)), {}, [(30, "deny", "undecided", (1,))]),
    "the contract's threshold is the mask bar's floor": (
        frames(0, 120, (LEFT, M, 0.9)), {"floor": 0.93}, [(30, "deny", "undecided", (1,))]),
    "a doubtful detection counts less: its flicker costs nothing": (
        frames(0, 1, (LEFT, M, SURE)) + [(1, [(LEFT, W, SURE, 0.1)])] + frames(2, 10, (LEFT, M, SURE)),
        {}, [(2, "grant", "all_masked", (1,))]),
    "torn between no mask and incorrect mask: the graver reason": (
        frames(0, 5, (LEFT, I, 0.6)), {}, [(2, "deny", "no_mask", (1,))]),
    "unknown label counts as no mask": (frames(0, 5, (LEFT, "scarf", SURE)), {}, [(2, "deny", "no_mask", (1,))]),
    # -- groups -----------------------------------------------------------------------------------
    "masked pair: one grant": (
        frames(0, 60, (LEFT, M, SURE), (RIGHT, M, SURE)), {}, [(2, "grant", "all_masked", (1, 2))]),
    "masked pair, one settles later: still one grant, when both are read": (
        frames(0, 4, (LEFT, M, SURE), (RIGHT, M, UNSURE)) + frames(4, 60, (LEFT, M, SURE), (RIGHT, M, SURE)),
        {}, [(6, "grant", "all_masked", (1, 2))]),
    "mixed pair: one deny": (
        frames(0, 60, (LEFT, M, SURE), (RIGHT, W, SURE)), {}, [(2, "deny", "no_mask", (1, 2))]),
    "mixed pair, masked face read first: one deny, not a grant first": (
        frames(0, 4, (LEFT, M, SURE), (RIGHT, W, UNSURE)) + frames(4, 60, (LEFT, M, SURE), (RIGHT, W, SURE)),
        {}, [(4, "deny", "no_mask", (1, 2))]),
    "mixed pair, bare face read first: deny at once, no second decision when the other is read": (
        frames(0, 6, (LEFT, M, UNSURE), (RIGHT, W, SURE)) + frames(6, 30, (LEFT, M, SURE), (RIGHT, W, SURE)),
        {}, [(2, "deny", "no_mask", (1, 2))]),
    "an incorrect mask waits for the others (they might be bare)": (
        frames(0, 6, (LEFT, I, SURE), (RIGHT, W, UNSURE)) + frames(6, 30, (LEFT, I, SURE), (RIGHT, W, SURE)),
        {}, [(6, "deny", "no_mask", (1, 2))]),
    "a bare companion leaves: the masked visitor is let in": (
        frames(0, 30, (LEFT, M, SURE), (RIGHT, W, SURE)) + frames(30, 40, (LEFT, M, SURE)),
        {}, [(2, "deny", "no_mask", (1, 2)), (60, "grant", "all_masked", (1,))]),
    "no mask outranks incorrect mask": (
        frames(0, 5, (LEFT, I, SURE), (RIGHT, W, SURE)), {}, [(2, "deny", "no_mask", (1, 2))]),
    "an unreadable second face: deny as undecided after decide_within_s": (
        frames(0, 60, (LEFT, M, SURE), (RIGHT, M, UNSURE)), {}, [(30, "deny", "undecided", (1, 2))]),
    "a face missed for a few frames still blocks the others": (
        frames(0, 2, (LEFT, M, SURE), (RIGHT, W, UNSURE)) + frames(2, 10, (LEFT, M, SURE)), {}, []),
    "group of four: one decision within 0.5 s": (
        frames(0, 30, *[(box, M, SURE) for box in SPOTS[:3]], (SPOTS[3], M, UNSURE))
        + frames(30, 30, *[(box, M, SURE) for box in SPOTS]),
        {"decide_within_s": 0.5}, [(15, "deny", "undecided", (1, 2, 3, 4)), (32, "grant", "all_masked", (1, 2, 3, 4))]),
    "group of four, clean: read on the 3rd frame": (
        frames(0, 30, *[(box, M, SURE) for box in SPOTS]), {}, [(2, "grant", "all_masked", (1, 2, 3, 4))]),
    # -- one decision per visitor -----------------------------------------------------------------
    "lingering 60 s: one decision": (frames(0, 60 * FPS, (LEFT, M, SURE)), {}, [(2, "grant", "all_masked", (1,))]),
    "lingering bare face 60 s: one deny": (frames(0, 60 * FPS, (LEFT, W, SURE)), {}, [(2, "deny", "no_mask", (1,))]),
    "mask pulled up after a deny: grant": (
        frames(0, 30, (LEFT, W, SURE)) + frames(30, 30, (LEFT, M, SURE)),
        {}, [(2, "deny", "no_mask", (1,)), (33, "grant", "all_masked", (1,))]),
    "mask pulled down after a grant: deny": (
        frames(0, 30, (LEFT, M, SURE)) + frames(30, 30, (LEFT, W, SURE)),
        {}, [(2, "grant", "all_masked", (1,)), (33, "deny", "no_mask", (1,))]),
    "no_mask → incorrect_mask on one visitor: still a deny, not repeated": (
        frames(0, 30, (LEFT, W, SURE)) + frames(30, 30, (LEFT, I, SURE)), {}, [(2, "deny", "no_mask", (1,))]),
    "one flicker while lingering: no new decision": (
        frames(0, 30, (LEFT, M, SURE)) + frames(30, 1, (LEFT, W, SURE)) + frames(31, 30, (LEFT, M, SURE)),
        {}, [(2, "grant", "all_masked", (1,))]),
    "undecided, then read masked: grant": (
        frames(0, 40, (LEFT, M, UNSURE)) + frames(40, 10, (LEFT, M, SURE)),
        {}, [(30, "deny", "undecided", (1,)), (42, "grant", "all_masked", (1,))]),
    "newcomer joining: new decision about both": (
        frames(0, 30, (LEFT, M, SURE)) + frames(30, 30, (LEFT, M, SURE), (RIGHT, W, SURE)),
        {}, [(2, "grant", "all_masked", (1,)), (32, "deny", "no_mask", (1, 2))]),
    "next visitor at the same spot after the first left: second decision": (
        frames(0, 30, (LEFT, M, SURE)) + frames(30, 40) + frames(70, 10, (LEFT, W, SURE)),
        {"track_max_age_s": 1.0}, [(2, "grant", "all_masked", (1,)), (72, "deny", "no_mask", (2,))]),
    "a visitor walking out fast (a new box each frame) decides nothing more": (
        frames(0, 30, (LEFT, W, SURE)) + [(30, [((250, 100, 80, 80), W, SURE)]), (31, [((400, 100, 80, 80), I, SURE)])]
        + frames(32, 90), {}, [(2, "deny", "no_mask", (1,))]),
    "short detector gap: same track, no second decision": (
        frames(0, 30, (LEFT, M, SURE)) + frames(30, 10) + frames(40, 30, (LEFT, M, SURE)),
        {"track_max_age_s": 1.0}, [(2, "grant", "all_masked", (1,))]),
    # -- re-identification: a lost face re-found near where it was lost is the same visitor -------
    "masked pair lost for 5 frames, re-found further on: one grant": (
        frames(0, 30, (LEFT, M, SURE), (RIGHT, M, SURE)) + frames(30, 5) + frames(35, 30, (LEFT_ON, M, SURE), (RIGHT_ON, M, SURE)),
        {}, [(2, "grant", "all_masked", (1, 2))]),
    "masked pair walking out, every 4th frame missed: one grant": (
        frames(0, 30, (LEFT, M, SURE), (RIGHT, M, SURE)) + walking_out(30, 16, (LEFT, M), (RIGHT, M)) + frames(46, 60),
        {}, [(2, "grant", "all_masked", (1, 2))]),
    "lingering 60 s with dropouts: one decision": (
        lingering_with_dropouts(60, M), {}, [(2, "grant", "all_masked", (1,))]),
    "lingering bare face 60 s with dropouts: one deny": (
        lingering_with_dropouts(60, W), {}, [(2, "deny", "no_mask", (1,))]),
    "re-found face now unmasked: deny": (
        frames(0, 30, (LEFT, M, SURE)) + frames(30, 5) + frames(35, 30, (LEFT_ON, W, SURE)),
        {}, [(2, "grant", "all_masked", (1,)), (37, "deny", "no_mask", (1,))]),
    "re-found denied face now masked: grant": (
        frames(0, 30, (LEFT, W, SURE)) + frames(30, 5) + frames(35, 30, (LEFT_ON, M, SURE)),
        {}, [(2, "deny", "no_mask", (1,)), (37, "grant", "all_masked", (1,))]),
    "granted face lost, a different face appearing elsewhere: new decision": (
        frames(0, 30, (LEFT, M, SURE)) + frames(30, 3) + frames(33, 30, (RIGHT, W, SURE)),
        {}, [(2, "grant", "all_masked", (1,)), (35, "deny", "no_mask", (1, 2))]),
    "granted face lost, a face twice its size at the same spot: new decision": (
        frames(0, 30, (LEFT, M, SURE)) + frames(30, 3) + frames(33, 30, ((90, 90, 170, 170), M, SURE)),
        {}, [(2, "grant", "all_masked", (1,)), (35, "grant", "all_masked", (1, 2))]),
    "lost longer than reid_within_s: a newcomer": (
        frames(0, 30, (LEFT, M, SURE)) + frames(30, 20) + frames(50, 30, (LEFT_ON, M, SURE)),
        {}, [(2, "grant", "all_masked", (1,)), (52, "grant", "all_masked", (1, 2))]),
    "reid_within_s = 0 turns re-identification off": (
        frames(0, 30, (LEFT, M, SURE)) + frames(30, 5) + frames(35, 30, (LEFT_ON, M, SURE)),
        {"reid_within_s": 0.0}, [(2, "grant", "all_masked", (1,)), (37, "grant", "all_masked", (1, 2))]),
    "a bare face re-found where a granted one was lost cannot ride on it with a masked newcomer": (
        frames(0, 30, (LEFT, M, SURE)) + frames(30, 3)
        + frames(33, 4, (LEFT_ON, W, UNSURE), (RIGHT, M, SURE)) + frames(37, 30, (LEFT_ON, W, SURE), (RIGHT, M, SURE)),
        {}, [(2, "grant", "all_masked", (1,)), (37, "deny", "no_mask", (1, 2))]),
    # -- a late companion: found by the detector some frames after the first face ----------------
    "late masked companion within join_within_s: joins the grant, no second decision": (
        frames(0, 6, (LEFT, M, SURE)) + frames(6, 60, (LEFT, M, SURE), (RIGHT, M, SURE)), {}, [(2, "grant", "all_masked", (1,))]),
    "late bare companion within the window: deny at once": (
        frames(0, 6, (LEFT, M, SURE)) + frames(6, 60, (LEFT, M, SURE), (RIGHT, W, SURE)),
        {}, [(2, "grant", "all_masked", (1,)), (8, "deny", "no_mask", (1, 2))]),
    "late nose-exposed companion within the window: deny at once": (
        frames(0, 6, (LEFT, M, SURE)) + frames(6, 60, (LEFT, M, SURE), (RIGHT, I, SURE)),
        {}, [(2, "grant", "all_masked", (1,)), (8, "deny", "incorrect_mask", (1, 2))]),
    "late unreadable companion: deny as undecided, no ride on the grant": (
        frames(0, 6, (LEFT, M, SURE)) + frames(6, 60, (LEFT, M, SURE), (RIGHT, M, UNSURE)),
        {}, [(2, "grant", "all_masked", (1,)), (36, "deny", "undecided", (1, 2))]),
    "a companion who joined pulls the mask down: deny": (
        frames(0, 6, (LEFT, M, SURE)) + frames(6, 24, (LEFT, M, SURE), (RIGHT, M, SURE)) + frames(30, 30, (LEFT, M, SURE), (RIGHT, W, SURE)),
        {}, [(2, "grant", "all_masked", (1,)), (33, "deny", "no_mask", (1, 2))]),
    "masked newcomer after the window: its own grant": (
        frames(0, 40, (LEFT, M, SURE)) + frames(40, 30, (LEFT, M, SURE), (RIGHT, M, SURE)),
        {}, [(2, "grant", "all_masked", (1,)), (42, "grant", "all_masked", (1, 2))]),
    "masked newcomer within the window but the granted face left: its own grant": (
        frames(0, 10, (LEFT, M, SURE)) + frames(10, 30, (RIGHT, M, SURE)),
        {}, [(2, "grant", "all_masked", (1,)), (12, "grant", "all_masked", (1, 2))]),
    "any_masked: a late bare companion changes nothing either: joins the grant": (
        frames(0, 6, (LEFT, M, SURE)) + frames(6, 60, (LEFT, M, SURE), (RIGHT, W, SURE)), {"rule": "any_masked"},
        [(2, "grant", "any_masked", (1,))]),
    "join_within_s = 0 turns joining off": (
        frames(0, 6, (LEFT, M, SURE)) + frames(6, 60, (LEFT, M, SURE), (RIGHT, M, SURE)),
        {"join_within_s": 0.0}, [(2, "grant", "all_masked", (1,)), (8, "grant", "all_masked", (1, 2))]),
    "a deny ends the fresh grant: mask down and up again within the window, grant again": (
        frames(0, 6, (LEFT, M, SURE)) + frames(6, 6, (LEFT, W, SURE)) + frames(12, 20, (LEFT, M, SURE)),
        {}, [(2, "grant", "all_masked", (1,)), (9, "deny", "no_mask", (1,)), (15, "grant", "all_masked", (1,))]),
    # -- a grant needs someone in view --------------------------------------------------------------
    "last unread face forgotten with nobody in view: no grant": (
        frames(0, 4, (LEFT, M, SURE), (RIGHT, M, UNSURE)) + frames(4, 2, (LEFT, M, SURE)) + frames(6, 60), {}, []),
    "...then the read face back in view: grant on that frame": (
        frames(0, 4, (LEFT, M, SURE), (RIGHT, M, UNSURE)) + frames(4, 2, (LEFT, M, SURE)) + frames(6, 29) + frames(35, 10, (LEFT, M, SURE)),
        {}, [(35, "grant", "all_masked", (1,))]),
    "a deny is never held back: any_masked, the masked face forgotten first with nobody in view": (
        frames(0, 10, (LEFT, M, SURE), (RIGHT, W, SURE)) + frames(10, 3, (RIGHT, W, SURE)) + frames(13, 60),
        {"rule": "any_masked"}, [(2, "grant", "any_masked", (1, 2)), (40, "deny", "no_mask", (2,))]),
    # -- rules ------------------------------------------------------------------------------------
    "any_masked: one masked face is enough": (
        frames(0, 5, (LEFT, M, SURE), (RIGHT, W, SURE)), {"rule": "any_masked"}, [(2, "grant", "any_masked", (1, 2))]),
    "any_masked: nobody masked": (
        frames(0, 5, (LEFT, I, SURE), (RIGHT, W, SURE)), {"rule": "any_masked"}, [(2, "deny", "no_mask", (1, 2))]),
    "observe: never grants, reports what it saw": (
        frames(0, 30, (LEFT, M, SURE)) + frames(30, 40) + frames(70, 5, (LEFT, I, SURE)) + frames(75, 40)
        + frames(115, 40, (LEFT, M, UNSURE)),
        {"rule": "observe"},
        [(2, "deny", "observed_all_masked", (1,)), (72, "deny", "observed_incorrect_mask", (2,)),
         (146, "deny", "observed_undecided", (3,))]),
}


@pytest.mark.parametrize(("frame_list", "settings", "expected"), CASES.values(), ids=CASES.keys())
def test_decision_table(frame_list: list, settings: dict, expected: list) -> None:
    assert summary(run(frame_list, **settings)) == expected


def test_table_meets_the_frame_budgets() -> None:
    """The issue's budgets, checked on the table itself: clean ≤ 4 frames, one flicker ≤ 2 more."""
    clean = summary(run(frames(0, 10, (LEFT, M, SURE))))[0][0] + 1
    assert clean <= 4
    for position in range(6):
        flicker = [(n, [(LEFT, W if n == position else M, SURE)]) for n in range(30)]
        (frame, verdict, _, _), *_ = summary(run(flicker))
        assert verdict == "grant" and frame + 1 <= clean + 2, f"flicker on frame {position}"


def test_alternating_face_never_grants_whatever_the_settings() -> None:
    """The settings' bounds (decay ≥ 0.5, confidence ≥ 0.7) make it impossible: see PolicySettings."""
    for decay in (0.5, 0.6, 0.9):
        for confidence in (0.7, 0.8, 0.95):
            decisions = run(alternating(0, 300, LEFT, M, W), evidence_decay=decay, decide_confidence=confidence)
            assert all(d.verdict == "deny" for d in decisions), (decay, confidence)


def test_decision_carries_latest_observations_and_first_seen() -> None:
    moving = [(n, [((100 + 4 * n, 100, 80, 80), M, SURE)]) for n in range(1, 4)]
    [decision] = run([(0, [])] + moving)
    assert decision.first_seen == 1 / FPS and decision.at == 3 / FPS
    assert decision.faces[0].detection.box == Box(112, 100, 80, 80)


def test_moving_face_stays_one_track_and_crossing_faces_keep_their_ids() -> None:
    policy = TrackedPolicy(PolicySettings(), min_confidence=CONTRACT_FLOOR)
    decision = None
    for n in range(3):
        # LEFT face drifts right; RIGHT face stays: greedy IoU must keep each on its own track.
        decision = policy.update(n / FPS, [observation(RIGHT, W, SURE), observation((100 + 10 * n, 100, 80, 80), M, SURE)])
    assert decision is not None and decision.track_ids == (1, 2)
    assert [f.classification.label for f in decision.faces] == [W, M]


def test_reset_forgets_tracks() -> None:
    policy = TrackedPolicy(PolicySettings(), min_confidence=CONTRACT_FLOOR)
    decided = [policy.update(n / FPS, [observation(LEFT, M, SURE)]) for n in range(3)]
    assert decided[-1] is not None
    policy.reset()
    again = [policy.update((3 + n) / FPS, [observation(LEFT, M, SURE)]) for n in range(3)]
    assert again[:2] == [None, None] and again[2] is not None and again[2].track_ids == (2,)


def test_min_confidence_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="min_confidence"):
        DecisionPolicy(PolicySettings(), min_confidence=1.5)


def test_mask_bar_reads_the_contract_floor() -> None:
    assert DecisionPolicy(PolicySettings(decide_confidence=0.8), min_confidence=0.5).mask_bar == 0.8
    assert DecisionPolicy(PolicySettings(decide_confidence=0.8), min_confidence=0.9).mask_bar == 0.9


def test_latency_is_the_newcomers_not_a_lingering_decided_track() -> None:
    """A visitor already decided and still in view must not make a newcomer's decision look slow
    (the newcomer comes after join_within_s, so it makes a decision of its own)."""
    decisions = run(frames(0, 40, (LEFT, M, SURE)) + frames(40, 5, (LEFT, M, SURE), (RIGHT, M, SURE)))
    assert [d.track_ids for d in decisions] == [(1,), (1, 2)]
    assert decisions[1].first_seen == 40 / FPS


def test_a_decision_shows_each_face_as_its_evidence_read_it():
    """The deciding frame may disagree with the evidence (a flicker on the last frame): the decision,
    and so the event and the log, carry the evidence's label and averaged probabilities."""
    [decision] = run(frames(0, 2, (LEFT, M, SURE)) + frames(2, 1, (LEFT, M, 0.7)))
    [face] = decision.faces
    assert decision.verdict == "grant"
    assert face.classification.label == M
    assert face.classification.scores[M] >= 0.8 and face.classification.scores[M] < SURE
    assert sum(face.classification.scores.values()) == pytest.approx(1.0)


def test_reid_window_cannot_outlast_the_track() -> None:
    """A lost track is forgotten after track_max_age_s: a longer re-identification window is refused, by key."""
    with pytest.raises(ConfigError, match=r"policy\.reid_within_s \(1\.5\) must be at most policy\.track_max_age_s \(1\.0\)"):
        parse_settings({"policy": {"reid_within_s": 1.5}}, environ={})
    assert parse_settings({"policy": {"reid_within_s": 2.0, "track_max_age_s": 2.0}}, environ={}).policy.reid_within_s == 2.0


def test_join_window_leaves_the_companion_time_to_walk_through() -> None:
    """A companion who joins a grant makes none of its own: the gate joins them for at most half
    the door's open time, so the door is still open long enough for them."""
    late = frames(0, 9, (LEFT, M, SURE)) + frames(9, 20, (LEFT, M, SURE), (RIGHT, M, SURE))  # read 0.3 s after the grant
    for door_open_s, expected in ((None, [(1,)]), (5.0, [(1,)]), (0.5, [(1,), (1, 2)])):
        policy = TrackedPolicy(PolicySettings(), min_confidence=CONTRACT_FLOOR, door_open_s=door_open_s)
        decided = [policy.update(n / FPS, [observation(*face) for face in faces]) for n, faces in late]
        assert [d.track_ids for d in decided if d is not None] == expected, door_open_s
    assert DecisionPolicy(PolicySettings(join_within_s=2.0), CONTRACT_FLOOR, door_open_s=3.0).join_within_s == 1.5
    with pytest.raises(ValueError, match="door_open_s"):
        DecisionPolicy(PolicySettings(), CONTRACT_FLOOR, door_open_s=0.0)
    with pytest.raises(ConfigError, match=r"policy\.join_within_s: Input should be greater than or equal to 0"):
        parse_settings({"policy": {"join_within_s": -0.5}}, environ={})


def test_a_companion_joining_is_logged(caplog) -> None:
    with caplog.at_level("INFO", logger="gate.policy"):
        run(frames(0, 6, (LEFT, M, SURE)) + frames(6, 10, (LEFT, M, SURE), (RIGHT, M, SURE)))
    assert "track 2 (with_mask) read 0.20 s after the grant to tracks [1]: joined it, no new decision" in caplog.text


def test_reset_ends_a_fresh_grant() -> None:
    """After the camera was lost, a masked face is a new visitor, even within join_within_s."""
    policy = TrackedPolicy(PolicySettings(), min_confidence=CONTRACT_FLOOR)
    first = [policy.update(n / FPS, [observation(LEFT, M, SURE)]) for n in range(3)]
    policy.reset()
    again = [policy.update((3 + n) / FPS, [observation(LEFT, M, SURE), observation(RIGHT, M, SURE)]) for n in range(3)]
    assert first[2] is not None and again[2] is not None and again[2].track_ids == (2, 3)


STILLS = {
    "one masked face": ([(LEFT, M, SURE)], {}, ("grant", "all_masked")),
    "one bare face": ([(LEFT, W, SURE)], {}, ("deny", "no_mask")),
    "a mask worn wrongly": ([(LEFT, I, SURE)], {}, ("deny", "incorrect_mask")),
    "a doubtful face alone: no decision": ([(LEFT, M, UNSURE)], {}, None),
    "a doubtful face beside a bare one: the bare one decides": ([(LEFT, M, UNSURE), (RIGHT, W, SURE)], {}, ("deny", "no_mask")),
    "masked pair": ([(LEFT, M, SURE), (RIGHT, M, SURE)], {}, ("grant", "all_masked")),
    "any_masked: one of two is enough": ([(LEFT, M, SURE), (RIGHT, W, SURE)], {"rule": "any_masked"}, ("grant", "any_masked")),
    "observe never grants": ([(LEFT, M, SURE)], {"rule": "observe"}, ("deny", "observed_all_masked")),
    "masked below the contract's floor is not read masked": ([(LEFT, M, 0.7)], {"decide_confidence": 0.7}, None),
    "nobody": ([], {}, None),
}


@pytest.mark.parametrize(("faces", "settings", "expected"), STILLS.values(), ids=STILLS.keys())
def test_a_still_gets_the_decision_the_stream_of_it_would_get(faces: list, settings: dict, expected: tuple | None) -> None:
    """decide_still (gate-cli test-image) agrees with the door fed the same photo for a second."""
    policy = TrackedPolicy(PolicySettings(**settings), min_confidence=0.75)
    still = policy.policy.decide_still([observation(*face) for face in faces])
    assert (None if still is None else (still.verdict, still.reason)) == expected
    streamed = [d for d in (policy.update(n / FPS, [observation(*face) for face in faces]) for n in range(FPS // 2)) if d is not None]
    assert [(d.verdict, d.reason) for d in streamed] == ([] if expected is None else [expected])


def test_night_frames_hold_a_face_to_the_night_floor() -> None:
    """Frames the classifier marked with a higher grant floor (greyscale: IR at night) must reach it."""
    def masked(floor: float) -> FaceObservation:
        obs = observation(LEFT, M, 0.9)
        return FaceObservation(obs.detection, Classification(M, obs.classification.scores, floor))

    for floor, verdict in ((0.6, "grant"), (0.95, None)):
        policy = TrackedPolicy(PolicySettings(decide_within_s=60), min_confidence=0.6)
        decisions = [policy.update(n / FPS, [masked(floor)]) for n in range(10)]
        taken = [d.verdict for d in decisions if d is not None]
        assert taken == ([verdict] if verdict else [])
    still = DecisionPolicy(PolicySettings(), min_confidence=0.6)
    assert still.decide_still([masked(0.6)]).verdict == "grant"
    assert still.decide_still([masked(0.95)]) is None
