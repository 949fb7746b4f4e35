"""DecisionPolicy as tables: a sequence of frames in → the decisions that must come out."""

from __future__ import annotations

import pytest

from gate.policy import Decision, DecisionPolicy, FaceObservation
from gate.settings import PolicySettings
from gate.types import Box, Classification, Detection

DT = 0.125  # 8 frames per second; exact in binary, so times compare exactly
LEFT = (100, 100, 80, 80)
RIGHT = (400, 100, 80, 80)
M, W, I = "with_mask", "without_mask", "incorrect_mask"
SURE, UNSURE = 0.95, 0.4  # min_confidence is 0.6 below


def observation(box: tuple[float, float, float, float], label: str, confidence: float) -> FaceObservation:
    others = [name for name in (M, W, I) if name != label]
    rest = (1.0 - confidence) / len(others)
    scores = {label: confidence, **{name: rest for name in others}}
    return FaceObservation(Detection(Box(*box), 0.9), Classification(label, scores))


def frames(start: int, count: int, *faces: tuple) -> list[tuple[float, list[tuple]]]:
    """``count`` frames from frame number ``start``, each showing ``faces`` (box, label, confidence)."""
    return [((start + i) * DT, list(faces)) for i in range(count)]


def run(frame_list: list[tuple[float, list[tuple]]], **settings: object) -> list[Decision]:
    policy = DecisionPolicy(PolicySettings(**{"consistent_frames": 3, **settings}), min_confidence=0.6)
    decisions = []
    for now, faces in frame_list:
        decision = policy.update(now, [observation(*face) for face in faces])
        if decision is not None:
            decisions.append(decision)
    return decisions


def summary(decisions: list[Decision]) -> list[tuple[float, str, str, tuple[int, ...]]]:
    return [(d.at, d.verdict, d.reason, d.track_ids) for d in decisions]


CASES = {
    "needs N consistent frames": (
        frames(0, 3, (LEFT, M, SURE)),
        {},
        [(2 * DT, "grant", "all_masked", (1,))],
    ),
    "N-1 frames are not enough": (
        frames(0, 2, (LEFT, M, SURE)),
        {},
        [],
    ),
    "a different label restarts the streak": (
        frames(0, 2, (LEFT, M, SURE)) + frames(2, 1, (LEFT, W, SURE)) + frames(3, 3, (LEFT, M, SURE)),
        {},
        [(5 * DT, "grant", "all_masked", (1,))],
    ),
    "an uncertain frame breaks the streak": (
        frames(0, 2, (LEFT, M, SURE)) + frames(2, 1, (LEFT, M, UNSURE)) + frames(3, 3, (LEFT, M, SURE)),
        {},
        [(5 * DT, "grant", "all_masked", (1,))],
    ),
    "low confidence never decides": (
        frames(0, 40, (LEFT, W, UNSURE)),
        {},
        [],
    ),
    "two faces, one unmasked: deny": (
        frames(0, 3, (LEFT, M, SURE), (RIGHT, W, SURE)),
        {},
        [(2 * DT, "deny", "no_mask", (1, 2))],
    ),
    "two faces, both masked: grant": (
        frames(0, 3, (LEFT, M, SURE), (RIGHT, M, SURE)),
        {},
        [(2 * DT, "grant", "all_masked", (1, 2))],
    ),
    "an unsettled second face holds the decision back": (
        frames(0, 6, (LEFT, M, SURE), (RIGHT, W, UNSURE)),
        {},
        [],
    ),
    "incorrect mask: deny with its own reason": (
        frames(0, 3, (LEFT, I, SURE)),
        {},
        [(2 * DT, "deny", "incorrect_mask", (1,))],
    ),
    "no mask outranks incorrect mask": (
        frames(0, 3, (LEFT, I, SURE), (RIGHT, W, SURE)),
        {},
        [(2 * DT, "deny", "no_mask", (1, 2))],
    ),
    "cooldown: one visitor over 5 s makes one decision": (
        frames(0, 40, (LEFT, M, SURE)),
        {"cooldown_s": 10.0},
        [(2 * DT, "grant", "all_masked", (1,))],
    ),
    "cooldown over while still there: decided again": (
        frames(0, 24, (LEFT, W, SURE)),
        {"cooldown_s": 2.0},
        [(2 * DT, "deny", "no_mask", (1,)), (18 * DT, "deny", "no_mask", (1,))],
    ),
    "label change during cooldown: new decision (mask pulled up)": (
        frames(0, 8, (LEFT, W, SURE)) + frames(8, 8, (LEFT, M, SURE)),
        {"cooldown_s": 10.0},
        [(2 * DT, "deny", "no_mask", (1,)), (10 * DT, "grant", "all_masked", (1,))],
    ),
    "newcomer joining: new decision about both": (
        frames(0, 8, (LEFT, M, SURE)) + frames(8, 8, (LEFT, M, SURE), (RIGHT, W, SURE)),
        {"cooldown_s": 10.0},
        [(2 * DT, "grant", "all_masked", (1,)), (10 * DT, "deny", "no_mask", (1, 2))],
    ),
    "next visitor at the same spot after the first left: second decision": (
        frames(0, 8, (LEFT, M, SURE)) + frames(8, 16) + frames(24, 8, (LEFT, W, SURE)),
        {"cooldown_s": 10.0, "track_max_age_s": 1.0},
        [(2 * DT, "grant", "all_masked", (1,)), (26 * DT, "deny", "no_mask", (2,))],
    ),
    "short detector gap: same track, no second decision": (
        frames(0, 8, (LEFT, M, SURE)) + frames(8, 4) + frames(12, 8, (LEFT, M, SURE)),
        {"cooldown_s": 10.0, "track_max_age_s": 1.0},
        [(2 * DT, "grant", "all_masked", (1,))],
    ),
    "track expired after the gap: new track, new decision": (
        frames(0, 8, (LEFT, M, SURE)) + frames(8, 12) + frames(20, 8, (LEFT, M, SURE)),
        {"cooldown_s": 10.0, "track_max_age_s": 1.0},
        [(2 * DT, "grant", "all_masked", (1,)), (22 * DT, "grant", "all_masked", (2,))],
    ),
    "a face missed for a frame still blocks the others": (
        frames(0, 2, (LEFT, M, SURE), (RIGHT, W, UNSURE)) + frames(2, 3, (LEFT, M, SURE)),
        {"track_max_age_s": 1.0},
        [],
    ),
    "any_masked: one masked face is enough": (
        frames(0, 3, (LEFT, M, SURE), (RIGHT, W, SURE)),
        {"rule": "any_masked"},
        [(2 * DT, "grant", "any_masked", (1, 2))],
    ),
    "any_masked: nobody masked": (
        frames(0, 3, (LEFT, I, SURE), (RIGHT, W, SURE)),
        {"rule": "any_masked"},
        [(2 * DT, "deny", "no_mask", (1, 2))],
    ),
    "observe: never grants, reports what it saw": (
        frames(0, 8, (LEFT, M, SURE)) + frames(8, 16) + frames(24, 3, (LEFT, I, SURE)),
        {"rule": "observe"},
        [(2 * DT, "deny", "observed_all_masked", (1,)), (26 * DT, "deny", "observed_incorrect_mask", (2,))],
    ),
    "unknown label counts as no mask": (
        frames(0, 3, (LEFT, "scarf", SURE)),
        {},
        [(2 * DT, "deny", "no_mask", (1,))],
    ),
}


@pytest.mark.parametrize(("frame_list", "settings", "expected"), CASES.values(), ids=CASES.keys())
def test_decision_table(frame_list: list, settings: dict, expected: list) -> None:
    assert summary(run(frame_list, **settings)) == expected


def test_decision_carries_latest_observations_and_first_seen() -> None:
    moving = [(i * DT, [((100 + 4 * i, 100, 80, 80), M, SURE)]) for i in range(3)]
    [decision] = run([(-DT, [])] + moving)
    assert decision.first_seen == 0.0 and decision.at == 2 * DT
    assert decision.faces[0].detection.box == Box(108, 100, 80, 80)


def test_moving_face_stays_one_track_and_crossing_faces_keep_their_ids() -> None:
    policy = DecisionPolicy(PolicySettings(consistent_frames=3), min_confidence=0.6)
    decision = None
    for i in range(3):
        # LEFT face drifts right; RIGHT face stays: greedy IoU must keep each on its own track.
        decision = policy.update(i * DT, [observation(RIGHT, W, SURE), observation((100 + 10 * i, 100, 80, 80), M, SURE)])
    assert decision is not None and decision.track_ids == (1, 2)
    assert [f.classification.label for f in decision.faces] == [W, M]


def test_reset_forgets_tracks() -> None:
    policy = DecisionPolicy(PolicySettings(consistent_frames=3, cooldown_s=10.0), min_confidence=0.6)
    decided = [policy.update(i * DT, [observation(LEFT, M, SURE)]) for i in range(3)]
    assert decided[-1] is not None
    policy.reset()
    again = [policy.update((3 + i) * DT, [observation(LEFT, M, SURE)]) for i in range(3)]
    assert again[:2] == [None, None] and again[2] is not None and again[2].track_ids == (2,)


def test_min_confidence_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="min_confidence"):
        DecisionPolicy(PolicySettings(), min_confidence=1.5)


def test_latency_is_the_newcomers_not_a_lingering_decided_track() -> None:
    """A visitor already decided and still in view must not make a newcomer's decision look slow."""
    first = frames(0, 6, (LEFT, M, SURE))
    both = frames(6, 3, (LEFT, M, SURE), (RIGHT, M, SURE))
    decisions = run(first + both)
    assert [d.track_ids for d in decisions] == [(1,), (1, 2)]
    assert decisions[1].first_seen == 6 * DT


def test_a_deny_is_not_repeated_when_only_the_reason_changes() -> None:
    """Hysteresis: no_mask → incorrect_mask on the same visitor is still a deny, so no new decision."""
    decisions = run(frames(0, 4, (LEFT, W, SURE)) + frames(4, 4, (LEFT, I, SURE)) + frames(8, 4, (LEFT, M, SURE)))
    assert [(d.verdict, d.reason) for d in decisions] == [("deny", "no_mask"), ("grant", "all_masked")]
