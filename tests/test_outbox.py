"""Event model and the SQLite outbox: durability across reopen, seq, order, bounds, corrupt files."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gate import events
from gate.errors import StateError
from gate.events import Event, EventDraft
from gate.outbox import Outbox
from gate.settings import OutboxSettings
from gate.types import Box, Classification, Detection

SETTINGS = OutboxSettings(max_events=100, max_age_days=30)


def draft(n: int = 0, **overrides: object) -> EventDraft:
    return EventDraft(**{"gate_id": "front-door", "verdict": "grant" if n % 2 == 0 else "deny", "reason": "all_masked" if n % 2 == 0 else "no_mask", **overrides})


# -- the event model -----------------------------------------------------------------------------

def test_committed_schema_is_current() -> None:
    committed = (Path(events.__file__).parent / "event.schema.json").read_text(encoding="utf-8")
    assert committed == events.json_schema(), "regenerate: python -m gate.events > gate/event.schema.json"
    assert json.loads(committed)["properties"]["schema_version"]["const"] == "maskgate.event/1"


def test_event_round_trips_with_utc_z_time() -> None:
    local = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    event = draft(time=local).numbered(7)
    wire = json.loads(event.to_json())
    assert wire["time"] == "2024-05-01T12:00:00.000Z"
    assert wire["seq"] == 7 and wire["schema_version"] == "maskgate.event/1"
    assert Event.model_validate_json(event.to_json()) == event


def test_naive_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="time zone"):
        draft(time=datetime(2024, 5, 1, 12, 0))


def test_draft_from_decision() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Face:  # the shape of gate.policy.FaceObservation
        detection: Detection
        classification: Classification

    @dataclass(frozen=True)
    class Decision:  # the shape of gate.policy.Decision
        verdict: str
        reason: str
        faces: tuple
        track_ids: tuple
        at: float
        first_seen: float

    face = Face(Detection(Box(10.4, 20, 50, 60), 0.9), Classification("with_mask", {"with_mask": 0.91, "without_mask": 0.09}))
    decision = Decision("grant", "all_masked", (face,), (3,), at=101.0, first_seen=100.0)
    made = EventDraft.from_decision(decision, gate_id="front-door", model_sha256="a" * 64, now=101.25)
    assert made.latency_ms == 1250.0
    assert made.faces[0].box == [10, 20, 50, 60] and made.faces[0].track_id == 3
    assert made.source == "camera" and made.verdict == "grant"


# -- the outbox ----------------------------------------------------------------------------------

def test_events_survive_reopen_in_seq_order(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.sqlite3"
    with Outbox(path, SETTINGS) as outbox:
        recorded = [outbox.record(draft(i)) for i in range(5)]
    assert [e.seq for e in recorded] == [1, 2, 3, 4, 5]
    with Outbox(path, SETTINGS) as outbox:
        assert outbox.pending() == recorded
        assert outbox.pending(limit=2) == recorded[:2]


def test_seq_keeps_growing_across_reopen_even_when_all_sent(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path, SETTINGS) as outbox:
        for e in [outbox.record(draft(i)) for i in range(3)]:
            assert outbox.mark_sent(e.event_id)
    with Outbox(path, SETTINGS) as outbox:
        assert outbox.record(draft()).seq == 4
        assert outbox.stats()["sent_total"] == 3


def test_mark_sent_removes_only_that_event_and_is_idempotent(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", SETTINGS) as outbox:
        a, b, c = (outbox.record(draft(i)) for i in range(3))
        assert outbox.mark_sent(b.event_id) is True
        assert outbox.mark_sent(b.event_id) is False
        assert outbox.pending() == [a, c]
        stats = outbox.stats()
        assert stats["pending"] == 2 and stats["sent_total"] == 1 and stats["dropped"] == 0
        assert stats["oldest_pending_age_s"] is not None


def test_overflow_drops_the_oldest_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path, SETTINGS) as outbox:
        recorded = [outbox.record(draft(i)) for i in range(100)]
        with caplog.at_level(logging.WARNING, logger="gate.outbox"):
            newest = [outbox.record(draft(i)) for i in range(3)]
        assert outbox.pending(limit=1000) == recorded[3:] + newest
    assert "dropped the 1 oldest" in caplog.text
    with Outbox(path, SETTINGS) as outbox:
        assert outbox.stats()["dropped"] == 3  # persisted


def test_too_old_events_are_dropped(tmp_path: Path) -> None:
    old = datetime.now(timezone.utc) - timedelta(days=31)
    with Outbox(tmp_path / "o.sqlite3", SETTINGS) as outbox:
        outbox.record(draft(time=old))
        fresh = outbox.record(draft())
        assert outbox.pending() == [fresh]
        assert outbox.stats()["dropped"] == 1


def test_garbage_file_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not a database, but it might be someone's data" * 100)
    before = path.read_bytes()
    with pytest.raises(StateError, match="outbox.sqlite3.*not a usable outbox"):
        Outbox(path, SETTINGS)
    assert path.read_bytes() == before


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(StateError, match="not a maskgate outbox"):
        Outbox(path, SETTINGS)


def test_truncated_outbox_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path, SETTINGS) as outbox:
        for i in range(100):
            outbox.record(draft(i, sender="x" * 128, request_id="y" * 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    (tmp_path / "o.sqlite3-wal").unlink(missing_ok=True)
    with pytest.raises(StateError, match="o.sqlite3"):
        Outbox(path, SETTINGS)


def test_concurrent_writer_and_acker(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", OutboxSettings(max_events=10_000)) as outbox:
        acked: list[int] = []
        done = threading.Event()

        def acker() -> None:
            while not (done.is_set() and not outbox.pending()):
                for event in outbox.pending(limit=10):
                    if outbox.mark_sent(event.event_id):
                        acked.append(event.seq)

        thread = threading.Thread(target=acker)
        thread.start()
        for i in range(200):
            outbox.record(draft(i))
        done.set()
        thread.join(timeout=30)
        assert sorted(acked) == list(range(1, 201))
        assert outbox.stats()["sent_total"] == 200
