"""The demo's summary hides no wrong answer: one visitor, one decision, none with nobody in view."""

from __future__ import annotations

import json

import pytest

from gate.cli import EXIT_USAGE, main
from gate.demo import ClipDoor, Visitor, print_visitors

# The demo clip's visitor 4: a masked pair in view from 17.1 s to 20.8 s; the next one from 22.3 s.
PAIR = {"start": 17.1, "end": 20.8, "labels": ["with_mask", "with_mask"]}
BARE = {"start": 22.3, "end": 26.0, "labels": ["without_mask"]}
GRANT, DENY = ("grant", "all_masked"), ("deny", "no_mask")

CASES = {
    "one right decision each: ok": ([(18.6, *GRANT), (23.0, *DENY)], 0, ["[ok]"] * 2),
    # the demo before re-identification: the pair re-found as new tracks as they walk away
    "the pair granted twice in view: REPEAT": (
        [(18.6, *GRANT), (20.5, *GRANT), (23.0, *DENY)], 1,
        ["[REPEAT] visitor 1: expected grant (all_masked) once, got 18.6 s grant (all_masked); 20.5 s grant (all_masked)"]),
    "a grant after the pair left: EXTRA": (
        [(18.6, *GRANT), (21.5, *GRANT), (23.0, *DENY)], 1, ["[EXTRA] 21.5 s: grant (all_masked) with nobody at the door"]),
    "a decision before anyone came: EXTRA": ([(0.4, *DENY), (18.6, *GRANT), (23.0, *DENY)], 1, ["[EXTRA] 0.4 s: deny (no_mask)"]),
    "a right and a wrong decision: MISMATCH, not REPEAT": (
        [(18.6, *GRANT), (20.0, *DENY), (23.0, *DENY)], 1,
        ["[MISMATCH] visitor 1: expected grant (all_masked), got 18.6 s grant (all_masked); 20.0 s deny (no_mask)"]),
    "a decision on the frame the visitor leaves still counts as theirs": ([(20.8, *GRANT), (22.3, *DENY)], 0, ["[ok]"] * 2),
    "every problem counts": (
        [(1.0, *GRANT), (18.0, *GRANT), (19.0, *GRANT), (21.0, *GRANT), (24.0, *GRANT)], 4,
        ["[EXTRA] 1.0 s", "[REPEAT] visitor 1", "[EXTRA] 21.0 s", "[MISMATCH] visitor 2", "0 of 2 visitors right; 2 decision(s) with nobody at the door"]),
}


@pytest.mark.parametrize(("decided", "problems", "lines"), CASES.values(), ids=CASES.keys())
def test_summary_marks_and_counts_every_wrong_answer(decided: list, problems: int, lines: list[str], capsys) -> None:
    assert print_visitors([Visitor(**PAIR), Visitor(**BARE)], decided, "all_masked") == problems
    out = capsys.readouterr().out
    for line in lines:
        assert line in out
    assert sum(line.startswith("  [") for line in out.splitlines()) == problems  # one marked line per problem


BAD_SCRIPTS = {
    "a visitor without end": ({"segments": [{"start": 1.5, "labels": ["with_mask"]}]}, "segments.0.end: Field required"),
    "a visitor without start": ({"segments": [PAIR, {"end": 5.2, "labels": ["with_mask"]}]}, "segments.1.start: Field required"),
    "a visitor without labels": ({"segments": [{"start": 1.5, "end": 5.2}]}, "segments.0.labels: Field required"),
    "labels not a list": ({"segments": [{"start": 1.5, "end": 5.2, "labels": "with_mask"}]}, "segments.0.labels: Input should be a valid list"),
    "no labels at all": ({"segments": [{"start": 1.5, "end": 5.2, "labels": []}]}, "segments.0.labels: List should have at least 1 item after validation, not 0"),
    "leaving before arriving": ({"segments": [{"start": 5.2, "end": 1.5, "labels": ["with_mask"]}]}, "segments.0: end (1.5) is before start (5.2)"),
    "a visitor that is not an object": ({"segments": [PAIR, 3]}, "segments.1: must be a JSON object"),
    "a list, not an object": ([PAIR], "the file: must be a JSON object"),
    "a zero frame rate": ({"fps": 0, "segments": [PAIR]}, "fps: Input should be greater than 0"),
}


@pytest.mark.parametrize(("script", "why"), BAD_SCRIPTS.values(), ids=BAD_SCRIPTS.keys())
def test_a_malformed_clip_script_is_a_one_line_usage_error_before_the_clip_plays(script, why: str, tmp_path, capsys) -> None:
    """The clip is never opened (an empty file stands in for it): the script is checked first."""
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    clip.with_suffix(".json").write_text(json.dumps(script), encoding="utf-8")
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[gate]\nstate_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    assert main(["--settings", str(settings), "demo", "--clip", str(clip), "--fast"]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"gate-cli: error: {clip.with_suffix('.json')}: not the clip's ground-truth JSON ({why})"]
    assert "maskgate demo:" not in out and not (tmp_path / "var").exists()


DOOR_CASES = {
    "a deny 5 s after a 5 s grant: the door had locked itself": ([(2.0, "grant", "energised"), (7.0, "deny", "unchanged")],
                                                                 ["door UNLOCKED", "door stays locked"]),
    "a deny within the grant re-locks it": ([(2.0, "grant", "energised"), (6.9, "deny", "released")], ["door UNLOCKED", "door LOCKED again"]),
    "whatever the mock relay said, on the clip's clock": ([(2.0, "grant", "energised"), (12.0, "deny", "released")],
                                                         ["door UNLOCKED", "door stays locked"]),
    "a second deny after a re-lock": ([(2.0, "grant", "energised"), (3.0, "deny", "released"), (4.0, "deny", "unchanged")],
                                      ["door UNLOCKED", "door LOCKED again", "door stays locked"]),
    "a grant refused by a fault": ([(1.0, "grant", "unchanged")], ["door stays locked (refused)"]),
}


@pytest.mark.parametrize(("decisions", "said"), DOOR_CASES.values(), ids=DOOR_CASES.keys())
def test_the_demos_door_column_follows_the_clip_not_the_computers_clock(decisions, said):
    """`demo --fast` plays a 22 s clip in about 2 s: the door column must say what real time says."""
    door = ClipDoor(unlock_s=5.0)
    assert [door.after(t, verdict, relay, "refused") for t, verdict, relay in decisions] == said
