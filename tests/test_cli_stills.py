"""gate-cli test-image treats every file as a still photo: its answer never depends on the files
before it (the detector's video memory is not used), and a group photo shows every face.

Scenes are built from our own synthetic faces (tests/door_scenes.py), never third-party photos.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from gate.cli import main
from gate.types import Box

SEED = 90210
GROUP_SIZE = 6
CLEARLY_SEEN = 0.6  # confirmation score of a face alone; 0.5 is the detector's margin case


def _write(path: Path, image: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, object]:
    """A one-person door photo, a different one, and a group of six (masked and bare, 60-140 px faces: the small ones need the tiles).

    The group's people are faces the detector sees clearly in the same photo with nobody else in
    it (as the door clip draws its visitors): what is tested is that a group and a batch lose none.
    """
    from gate.vision.detector import BlazeFaceDetector
    from gate.settings import DetectorSettings
    from tests.door_scenes import door_background, paste, synthetic_faces

    faces = synthetic_faces(GROUP_SIZE + 10, seed=SEED)
    detector = BlazeFaceDetector(DetectorSettings())
    folder = tmp_path_factory.mktemp("stills")
    single = door_background(seed=3)
    paste(single, faces[-1].bare, faces[-1].box, face_height=140, x=250, y=120)
    other = door_background(seed=4)
    paste(other, faces[-2].placements["over_nose"], faces[-2].box, face_height=120, x=120, y=100)
    background = cv2.resize(door_background(seed=5), (1280, 720))
    group = background.copy()
    truth: list[Box] = []
    for face in faces[:-2]:
        if len(truth) == GROUP_SIZE:
            break
        i = len(truth)
        picture, height = (face.bare if i % 2 else face.placements["over_nose"]), 60 + 16 * i
        place = {"face_height": height, "x": 80 + (i % 3) * 400, "y": 60 + (i // 3) * 330}
        alone = background.copy()  # the same photo with only this person in it
        paste(alone, picture, face.box, **place)
        detector.reset()
        seen = detector.detect_still(alone)
        if len(seen) == 1 and seen[0].score >= CLEARLY_SEEN:
            truth.append(paste(group, picture, face.box, **place))
    assert len(truth) == GROUP_SIZE, f"only {len(truth)} synthetic faces are found on their own"
    return {
        "single": _write(folder / "single.png", single),
        "other": _write(folder / "other.png", other),
        "group": _write(folder / "group.png", group),
        "truth": truth,
    }


def results(paths: list[Path], capsys) -> list[dict]:
    assert main(["test-image", "--json", *map(str, paths)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def answer(result: dict) -> tuple:
    """Everything test-image says about an image except its name."""
    return json.dumps(result["faces"], sort_keys=True), json.dumps(result["decision"], sort_keys=True)


def test_the_same_photo_gets_the_same_answer_alone_twice_and_after_another(photos, capsys):
    alone = results([photos["single"]], capsys)
    twice = results([photos["single"], photos["single"]], capsys)
    after = results([photos["other"], photos["single"]], capsys)
    after_group = results([photos["group"], photos["single"]], capsys)
    assert len(alone[0]["faces"]) == 1
    assert answer(alone[0]) == answer(twice[0]) == answer(twice[1]) == answer(after[1]) == answer(after_group[1])


def _iou(a: list[float], b: Box) -> float:
    ax, ay, aw, ah = a
    ix = max(0.0, min(ax + aw, b.x + b.w) - max(ax, b.x))
    iy = max(0.0, min(ay + ah, b.y + b.h) - max(ay, b.y))
    return ix * iy / (aw * ah + b.w * b.h - ix * iy)


def test_a_group_photo_shows_every_face_alone_and_in_a_batch(photos, capsys):
    alone = results([photos["group"]], capsys)[0]
    batch = results([photos["single"], photos["group"], photos["other"], photos["group"]], capsys)
    for result in (alone, batch[1], batch[3]):
        boxes = [face["box"] for face in result["faces"]]
        assert len(boxes) == GROUP_SIZE, boxes
        for true_box in photos["truth"]:
            assert max(_iou(box, true_box) for box in boxes) > 0.4, (true_box, boxes)
    assert answer(alone) == answer(batch[1]) == answer(batch[3])
