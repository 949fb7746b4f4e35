"""Years at the door (issue 19): a state folder that fills up, a clock that jumps.

Disk full: the outbox on a real 1 MB tmpfs filled to the last byte (needs root for the mount,
skipped otherwise), and the gate against an in-memory outbox whose disk is full or not (passed in,
nothing patched): no grant that cannot be recorded, the fault in the state and health the daemon
publishes, recovery by itself when space returns, nothing recorded lost.

Clock: a wall clock passed in (:class:`FakeClock`) that boots months in the past unsynchronised,
is then stepped forward by NTP, or steps backwards: events are flagged and keep their order
(``seq``), none is dropped as "too old" because the clock jumped, and remote unlock is refused
until the clock is synchronised (one log line), expiry checked on the stepped clock.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from gate.actuators import Door
from gate.daemon import STORAGE_RETRY_S, Gate
from gate.dashboard import Dashboard
from gate.errors import StorageFullError
from gate.events import Event, EventDraft
from gate.health import format_status
from gate.mqtt import MqttLink, RemoteRequest
from gate.outbox import Outbox
from gate.policy import DecisionPolicy
from gate.settings import DoorSettings, OutboxSettings, PolicySettings
from tests.broker import GATE_ID, HAVE_MOSQUITTO, Broker, Subscriber
from tests.test_door_safety import BARE, MASKED, RELAY, SceneCamera, SceneClassifier, SceneDetector, levels, scene

# -- a state folder that fills up ------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 1 MB tmpfs: the state folder of a Pi whose SD card filled up."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a file until the disk refuses another byte."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as file:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    file.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


def draft(verdict: str = "deny", **fields: object) -> EventDraft:
    return EventDraft(gate_id="test-door", verdict=verdict, reason="all_masked" if verdict == "grant" else "no_mask", **fields)


def test_a_full_disk_refuses_the_record_keeps_what_was_recorded_and_recovers(tiny_disk: Path) -> None:
    with Outbox(tiny_disk / "outbox.sqlite3", OutboxSettings()) as outbox:
        kept = [outbox.record(draft()) for _ in range(3)]
        filler = fill(tiny_disk)
        with pytest.raises(StorageFullError, match="disk refused a write"):
            for _ in range(50):  # the WAL may still have room for a page or two
                kept.append(outbox.record(draft()))
        assert not outbox.writable()
        assert [e.event_id for e in outbox.pending()] == [e.event_id for e in kept]  # nothing half-written, nothing lost
        filler.unlink()
        assert outbox.writable()
        after = outbox.record(draft())
        assert after.seq == kept[-1].seq + 1  # the refused record used no number
    with Outbox(tiny_disk / "outbox.sqlite3", OutboxSettings()) as reopened:
        assert [e.seq for e in reopened.pending()] == [e.seq for e in kept] + [after.seq]


class FullableOutbox:
    """The outbox's interface in memory, on a disk that can be full (the filesystem boundary, passed in)."""

    def __init__(self) -> None:
        self.full = False
        self.events: list[Event] = []

    def record(self, draft: EventDraft) -> Event:
        if self.full:
            raise StorageFullError("outbox memory: the disk refused a write (database or disk is full)")
        self.events.append(draft.numbered(len(self.events) + 1))
        return self.events[-1]

    def writable(self) -> bool:
        return not self.full

    def stats(self) -> dict[str, int]:
        return {"pending": len(self.events), "sent_total": 0, "dropped": 0, "last_seq": len(self.events)}


class Ticks:
    """The gate's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def visit(gate: Gate, face: int, frames: int = 30):
    """An empty door long enough to forget the last visitor, then ``face`` until the gate decides."""
    for _ in range(15):
        gate.camera.next = scene()
        gate.step()
    for _ in range(frames):
        gate.camera.next = scene(face)
        decision = gate.step()
        if decision is not None:
            return decision
    return None


def test_no_grant_that_cannot_be_recorded_fault_shown_and_recovery_by_itself(tmp_path: Path) -> None:
    factory, outbox, ticks, published = MockFactory(), FullableOutbox(), Ticks(), []
    dashboard = Dashboard(tmp_path, published.append)  # what the MQTT link would publish, retained, as `state`
    with Door(DoorSettings(unlock_s=0.05, deny_indication_s=0.05), pin_factory=factory) as door:
        door.on_change = dashboard.door_changed
        gate = Gate(gate_id="test-door", camera=SceneCamera(), detector=SceneDetector(), classifier=SceneClassifier(),
                    policy=DecisionPolicy(PolicySettings(), SceneClassifier.min_confidence), door=door, outbox=outbox, clock=ticks,
                    dashboard=dashboard)
        assert visit(gate, MASKED).verdict == "grant" and outbox.events[-1].relay == "energised"
        time.sleep(0.1)  # the grant runs out
        relay_before = levels(factory, RELAY)
        outbox.full = True
        assert visit(gate, MASKED).verdict == "grant"  # the policy would grant...
        time.sleep(0.1)
        assert levels(factory, RELAY) == relay_before  # ...but nothing recorded, so the relay never moved
        assert door.state == "fault" and published[-1]["door"] == "fault"
        assert published[-1]["fault"].startswith("state folder full: ")  # the retained MQTT state
        health = gate.health()
        assert health["state"] == "fault"
        assert "FAULT (door held locked): state folder full" in format_status({**health, "age_s": 0})  # gate-cli status
        visit(gate, MASKED)  # a frame processed fine does not clear a storage fault
        assert door.state == "fault" and len(outbox.events) == 1
        outbox.full = False  # space is back...
        visit(gate, MASKED)  # ...noticed at the next retry, not before: this grant is refused, and recorded
        assert door.state == "fault" and outbox.events[-1].reason == "camera_refused_fault"
        ticks.now += STORAGE_RETRY_S
        decision = visit(gate, MASKED)
        assert door.state != "fault" and gate.fault is None and published[-1]["fault"] is None
        assert decision is not None and decision.verdict == "grant" and outbox.events[-1].relay == "energised"
        assert [(e.seq, e.relay) for e in outbox.events] == [(1, "energised"), (2, "unchanged"), (3, "energised")]


def test_a_deny_that_cannot_be_recorded_still_locks() -> None:
    factory, outbox = MockFactory(), FullableOutbox()
    with Door(DoorSettings(unlock_s=30.0), pin_factory=factory) as door:
        gate = Gate(gate_id="test-door", camera=SceneCamera(), detector=SceneDetector(), classifier=SceneClassifier(),
                    policy=DecisionPolicy(PolicySettings(), SceneClassifier.min_confidence), door=door, outbox=outbox, clock=Ticks())
        visit(gate, MASKED)
        assert levels(factory, RELAY)[-1] is True
        outbox.full = True
        for _ in range(30):  # a bare face joins the masked one: the deny cannot be recorded
            gate.camera.next = scene(MASKED, BARE)
            if gate.step() is not None:
                break
        assert levels(factory, RELAY)[-1] is False and door.state == "fault"


# -- a clock that jumps ----------------------------------------------------------------------


class FakeClock:
    """A wall clock that starts where a Pi without RTC boots, unsynchronised, and is stepped by hand."""

    def __init__(self, start: datetime, synchronised: bool = False) -> None:
        self.at = start
        self.synced = synchronised

    def now(self) -> datetime:
        return self.at

    def synchronised(self) -> bool:
        return self.synced

    def step(self, **delta: float) -> None:
        self.at += timedelta(**delta)


BOOT = datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc)  # the last shutdown, months before the real date


def test_events_before_ntp_are_flagged_ordered_and_not_dropped_when_ntp_steps_the_clock_forward(tmp_path: Path) -> None:
    clock = FakeClock(BOOT)
    with Outbox(tmp_path / "outbox.sqlite3", OutboxSettings(max_age_days=30), clock=clock) as outbox:
        early = [outbox.record(draft(time=clock.now())) for _ in range(3)]
        assert [(e.seq, e.clock_synced) for e in early] == [(1, False), (2, False), (3, False)]
        clock.step(days=300)  # NTP answers: ten months later
        clock.synced = True
        synced = outbox.record(draft(time=clock.now()))
        assert (synced.seq, synced.clock_synced) == (4, True)
        assert [e.seq for e in outbox.pending()] == [1, 2, 3, 4]  # 300 "days old", yet not one dropped
        clock.step(days=31)  # the trusted event really is past max_age_days now: the bound still works
        outbox.record(draft(time=clock.now()))
        assert [e.seq for e in outbox.pending()] == [1, 2, 3, 5]
        assert outbox.stats()["dropped"] == 1


def test_a_backward_step_keeps_seq_order_and_ages_never_negative(tmp_path: Path) -> None:
    clock = FakeClock(BOOT, synchronised=True)
    with Outbox(tmp_path / "outbox.sqlite3", OutboxSettings(), clock=clock) as outbox:
        first = outbox.record(draft(time=clock.now()))
        clock.step(hours=-2)  # an RTC drifted ahead, corrected by NTP
        second = outbox.record(draft(time=clock.now()))
        assert second.seq == first.seq + 1 and second.time < first.time  # seq orders, time does not
        assert [e.seq for e in outbox.pending()] == [1, 2]
        assert outbox.stats()["oldest_pending_age_s"] >= 0


def command_at(clock: FakeClock, request_id: str, expires_in_s: float) -> str:
    """A command as an operator whose own clock is right would send it, expiring relative to ``clock``."""
    return json.dumps({"action": "unlock", "request_id": request_id, "expires": (clock.now() + timedelta(seconds=expires_in_s)).isoformat()})


@pytest.mark.broker
@pytest.mark.skipif(not HAVE_MOSQUITTO, reason="needs mosquitto, mosquitto_passwd and openssl")
def test_remote_unlock_is_refused_until_the_clock_is_synchronised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    real = FakeClock(datetime.now(timezone.utc), synchronised=True)  # the operator's (right) clock
    gate_clock = FakeClock(BOOT)  # the gate's: months behind, not synchronised
    topic = f"maskgate/{GATE_ID}/command"
    requests: list[RemoteRequest] = []
    caplog.set_level(logging.WARNING, logger="gate.mqtt")
    with Broker(tmp_path) as broker, Subscriber(broker, topic, user="operator") as operator, \
            Outbox(tmp_path / "outbox.sqlite3", OutboxSettings()) as outbox:
        link = MqttLink(broker.settings(tls=True, remote_unlock=True), GATE_ID, outbox, password="gate-secret",
                        on_command=requests.append, clock=gate_clock)
        link.start()
        try:
            deadline = time.monotonic() + 15
            while not link.status.connected:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.3)  # the subscription

            def send(request_id: str, expires_in_s: float) -> RemoteRequest:
                count = len(requests)
                operator.publish(topic, command_at(real, request_id, expires_in_s))
                deadline = time.monotonic() + 10
                while len(requests) == count:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                return requests[-1]

            assert send("before-ntp-0001", 10).refusal == "clock_unsynced"
            assert send("before-ntp-0002", 10).refusal == "clock_unsynced"
            gate_clock.at, gate_clock.synced = real.now(), True  # NTP steps the clock forward by months
            assert send("after-ntp-0001", 10).refusal is None
            gate_clock.step(minutes=5)  # a forward step: a fresh command now looks expired (refused, never let through)
            assert send("after-step-0001", 10).refusal == "expired"
            gate_clock.step(minutes=-10)  # a backward step: it looks valid for too long (refused too)
            assert send("after-step-0002", 10).refusal == "expiry_too_far"
        finally:
            link.stop()
    unsynced_lines = [r for r in caplog.records if "until the clock is synchronised" in r.getMessage()]
    assert len(unsynced_lines) == 1


# -- an SD card that lives: what changes every few seconds goes to RAM ------------------------


def test_the_status_file_goes_to_runtime_dir_and_status_reads_it_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gate.cli import main
    from gate.daemon import serve
    from gate.settings import parse_settings
    from tests.test_cli_status import _clip

    var, run = tmp_path / "var", tmp_path / "run"
    settings = parse_settings({"gate": {"state_dir": str(var), "runtime_dir": str(run)},
                               "camera": {"source": str(_clip(tmp_path)), "kind": "file", "realtime": False, "fps": 10},
                               "door": {"pin_factory": "mock"}}, environ={})
    serve(settings, until_camera_ends=True)
    assert (run / "status.json").exists() and not (var / "status.json").exists()
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(f'[gate]\nstate_dir = "{var}"\nruntime_dir = "{run}"\n')
    assert main(["--settings", str(settings_file), "status"]) == 0
    assert "not running since" in capsys.readouterr().out


def test_a_gate_restarted_on_a_full_disk_waits_locked_and_starts_when_space_returns(tiny_disk: Path, tmp_path: Path) -> None:
    import threading

    from gate.daemon import serve
    from gate.health import read_status
    from gate.settings import parse_settings
    from tests.test_door_safety import BlankCamera

    var, run = tiny_disk / "var", tmp_path / "run"
    with Outbox(var / "outbox.sqlite3", OutboxSettings()) as outbox:  # the gate ran before: one event not sent yet
        kept = outbox.record(draft())
    filler = fill(tiny_disk)
    settings = parse_settings({"gate": {"state_dir": str(var), "runtime_dir": str(run)}, "door": {"pin_factory": "mock"}}, environ={})
    stop = threading.Event()
    worker = threading.Thread(target=serve, args=(settings,), kwargs={"stop": stop, "camera": BlankCamera()})
    worker.start()
    try:
        def wait_for(state: str) -> dict:
            deadline = time.monotonic() + 30
            while (status := read_status(run)) is None or status.get("state") != state:
                assert worker.is_alive() and time.monotonic() < deadline, status
                time.sleep(0.1)
            return status

        status = wait_for("fault")  # no exit 78 (that would stop systemd restarting it): locked, and saying why
        assert status["door"] == "fault" and status["fault"].startswith("state folder full: ")
        filler.unlink()
        assert wait_for("running")["door"] == "locked"
    finally:
        stop.set()
        worker.join(30)
    with Outbox(var / "outbox.sqlite3", OutboxSettings()) as outbox:
        assert [e.event_id for e in outbox.pending()] == [kept.event_id]


def test_the_system_clock_takes_the_first_check_that_answers_and_asks_again_only_every_ten_seconds() -> None:
    from gate.clock import RECHECK_S, SystemClock

    answers: list[bool | None] = [None, None]  # the kernel refuses (ProtectClock), no timesyncd flag: timedatectl decides
    asked: list[str] = []

    def check(name: str, index: int):
        return lambda: (asked.append(name), answers[index])[1]

    ticks = Ticks()
    clock = SystemClock(checks=(check("kernel", 0), check("timedatectl", 1)), monotonic=ticks)
    assert not clock.synchronised() and asked == ["kernel", "timedatectl"]
    answers[1] = True
    assert not clock.synchronised() and len(asked) == 2  # not asked again within RECHECK_S
    ticks.now += RECHECK_S
    assert clock.synchronised() and len(asked) == 4
    answers[0] = False  # once synchronised it stays trusted: nothing is asked any more
    assert clock.synchronised() and len(asked) == 4
    assert SystemClock("always", checks=()).synchronised()
