"""Face crops only when turned on, and never kept past the retention limit; the journal rotates."""

from __future__ import annotations

import json
import os

import numpy as np

from gate.journal import Journal
from gate.snapshots import FaceSnapshots
from gate.types import Box


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_crops_are_written_private_and_purged_after_retention(tmp_path):
    clock = Clock(1_000_000.0)
    folder = tmp_path / "faces"
    snapshots = FaceSnapshots(folder, retention_days=1.0, clock=clock)
    assert folder.stat().st_mode & 0o077 == 0  # only the gate's user can read them
    image = np.full((120, 160, 3), 90, np.uint8)
    snapshots.save(image, [Box(40, 30, 50, 50), Box(100, 40, 40, 40)], "evt-1")
    crops = sorted(p.name for p in folder.iterdir())
    assert crops == ["evt-1-0.jpg", "evt-1-1.jpg"]
    old = folder / "evt-1-0.jpg"
    os.utime(old, (clock.now - 2 * 86400, clock.now - 2 * 86400))
    assert snapshots.purge() == 1
    assert sorted(p.name for p in folder.iterdir()) == ["evt-1-1.jpg"]


def test_the_default_settings_write_no_face_image(tmp_path):
    from gate.settings import Settings

    assert Settings().privacy.save_faces is False


def test_journal_appends_lines_and_rotates_once_past_its_size(tmp_path):
    path = tmp_path / "decisions.jsonl"
    journal = Journal(path, max_bytes=10_000)
    for seq in range(1, 301):
        journal.append({"seq": seq, "verdict": "grant", "padding": "x" * 40})
    backup = path.with_name("decisions.jsonl.1")
    assert backup.exists() and path.stat().st_size <= 10_000
    lines = [json.loads(line) for line in backup.read_text().splitlines() + path.read_text().splitlines()]
    seqs = [line["seq"] for line in lines]
    assert seqs == sorted(seqs) and seqs[-1] == 300  # newest kept, in order
