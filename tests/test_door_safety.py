"""Door safety (issue 9): a deny locks the door, a grant event means the relay moved, and the
strike is released however the daemon dies.

The gate-level tests drive :class:`gate.daemon.Gate` and the real policy with a scripted scene
(a fake detector and classifier read the faces from the frame, nothing patched) and watch the
relay pin's whole history on gpiozero's MockFactory, passed in.

Fail-secure after a kill is shown in three honest parts, because a MockFactory pin lives in one
process and cannot carry its level from the killed daemon to the stop hook (on a Pi the kernel
does): (1) the unit runs exactly `gate-cli … door release` after every stop; (2) the daemon,
SIGKILLed mid-grant, left its relay energised by its own record (the journal's last relay event
is a grant whose time has not run out); (3) that command, in a fresh process, drives the relay pin
inactive (and tests/test_actuators.py shows the same code driving a pin *left active* to
inactive, both polarities).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from gate.actuators import Door
from gate.camera import CameraStatus
from gate.daemon import Gate, record_and_act, serve
from gate.events import Event, EventDraft
from gate.journal import Journal
from gate.models import default_model_path
from gate.outbox import Outbox
from gate.policy import DecisionPolicy
from gate.settings import DoorSettings, OutboxSettings, PolicySettings, parse_settings
from gate.types import Box, Classification, Detection, Frame
from gate.vision.tracker import Tracker
from tests.broker import GATE_ID, HAVE_MOSQUITTO, Broker, Subscriber

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "maskgate.service"
MODEL = default_model_path()
RELAY, GREEN, RED = 17, 27, 22
LABELS = {1: "with_mask", 2: "without_mask", 3: "incorrect_mask"}
MASKED, BARE, NOSE_OUT = 1, 2, 3
SLOTS = 3


# -- a scripted scene: up to three faces, each in a fixed place, its label written in the frame --


def scene(*faces: int) -> np.ndarray:
    """A frame whose top row says which face stands in each slot (0 = nobody)."""
    image = np.zeros((120, 240, 3), np.uint8)
    for slot, code in enumerate(faces):
        image[0, slot, 0] = code
    return image


def slot_box(slot: int) -> Box:
    return Box(10 + 75 * slot, 30, 64, 64)


class SceneCamera:
    """Hands out the frames it is given, 10 per second of frame time."""

    def __init__(self) -> None:
        self.index = 0
        self.next: np.ndarray | None = None

    def read(self, timeout: float) -> Frame | None:
        image, self.next = self.next, None
        if image is None:
            return None
        self.index += 1
        return Frame(image=image, timestamp=self.index / 10.0, index=self.index)

    @property
    def status(self) -> CameraStatus:
        return CameraStatus("ok", "", self.index, 0, 0, 0, 10.0)

    def close(self) -> None:
        pass


class SceneDetector:
    """The scene's faces, tracked by the real tracker as the real detector's are."""

    def __init__(self) -> None:
        self.tracker = Tracker.from_settings(PolicySettings())

    def detect(self, image: np.ndarray, now: float) -> list[Detection]:
        return self.tracker.update(now, [Detection(slot_box(slot), 0.95) for slot in range(SLOTS) if image[0, slot, 0]])

    def reset(self) -> None:
        self.tracker.reset()


class SceneClassifier:
    model_sha256 = "0" * 64
    min_confidence = 0.5
    contract = None

    def classify(self, image: np.ndarray, box: Box | None = None) -> Classification:
        assert box is not None
        label = LABELS[int(image[0, (box.x - 10) // 75, 0])]
        return Classification(label, {name: 0.96 if name == label else 0.02 for name in LABELS.values()})


@pytest.fixture
def factory() -> MockFactory:
    return MockFactory()


@pytest.fixture
def door(factory: MockFactory):
    with Door(DoorSettings(unlock_s=30.0, deny_indication_s=0.2), pin_factory=factory) as door:
        yield door


@pytest.fixture
def outbox(tmp_path: Path):
    with Outbox(tmp_path / "outbox.sqlite3", OutboxSettings()) as box:
        yield box


def make_gate(door: Door, outbox: Outbox, journal: Journal, rule: str = "all_masked") -> Gate:
    return Gate(gate_id="test-door", camera=SceneCamera(), detector=SceneDetector(), classifier=SceneClassifier(),
                policy=DecisionPolicy(PolicySettings(rule=rule), SceneClassifier.min_confidence), door=door, outbox=outbox, journal=journal)


def levels(factory: MockFactory, pin: int) -> list[bool]:
    return [change.state for change in factory.pin(pin).states]


def show_until_decided(gate: Gate, image: np.ndarray, frames: int = 50):
    """Show the same scene frame after frame until the gate decides; returns the decision."""
    for _ in range(frames):
        gate.camera.next = image
        decision = gate.step()
        if decision is not None:
            return decision
    raise AssertionError(f"no decision in {frames} frames")


# -- 1. a deny locks the door ----------------------------------------------------------------


@pytest.mark.parametrize(("newcomer", "reason"), [(BARE, "no_mask"), (NOSE_OUT, "incorrect_mask")])
def test_a_deny_relocks_a_door_opened_for_someone_else(factory, door, outbox, tmp_path, newcomer, reason) -> None:
    """Masked visitor granted; a newcomer without a mask (or with the nose out) steps in while the door is open."""
    gate = make_gate(door, outbox, Journal(tmp_path / "decisions.jsonl", 100_000))
    granted = show_until_decided(gate, scene(MASKED))
    assert granted.verdict == "grant" and factory.pin(RELAY).state is True
    for _ in range(2):  # the open door's grant runs (unlock_s = 30 s)
        gate.camera.next = scene(MASKED)
        assert gate.step() is None
    assert factory.pin(RELAY).state is True
    denied = show_until_decided(gate, scene(MASKED, newcomer))
    assert (denied.verdict, denied.reason) == ("deny", reason)
    assert factory.pin(RELAY).state is False  # locked on the very frame of the deny, not unlock_s later
    assert levels(factory, RELAY) == [False, True, False] and door.state == "locked"
    assert factory.pin(GREEN).state is False and factory.pin(RED).state is True
    grant_event, deny_event = outbox.pending()
    assert (grant_event.verdict, grant_event.relay, grant_event.unlock_s) == ("grant", "energised", 30.0)
    assert (deny_event.verdict, deny_event.reason, deny_event.relay) == ("deny", reason, "released")
    journal = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [(j["verdict"], j["relay"]) for j in journal] == [("grant", "energised"), ("deny", "released")]
    assert gate.stats.verdicts == {"grant": 1, "deny": 1}


def test_a_deny_on_a_locked_door_says_the_relay_did_not_move(factory, door, outbox, tmp_path) -> None:
    gate = make_gate(door, outbox, Journal(tmp_path / "decisions.jsonl", 100_000))
    assert show_until_decided(gate, scene(BARE)).verdict == "deny"
    assert levels(factory, RELAY) == [False]
    assert outbox.pending()[0].relay == "unchanged"


def test_observe_mode_never_moves_the_relay(factory, door, outbox, tmp_path) -> None:
    gate = make_gate(door, outbox, Journal(tmp_path / "decisions.jsonl", 100_000), rule="observe")
    reports = [show_until_decided(gate, scene(MASKED)), show_until_decided(gate, scene(MASKED, BARE))]
    for _ in range(15):  # both leave; their tracks are forgotten
        gate.camera.next = scene()
        gate.step()
    reports.append(show_until_decided(gate, scene(0, 0, NOSE_OUT)))
    assert [d.reason for d in reports] == ["observed_all_masked", "observed_no_mask", "observed_incorrect_mask"]
    assert levels(factory, RELAY) == [False]
    assert levels(factory, GREEN) == [False] and levels(factory, RED) == [False]  # reports, never signals
    assert {e.relay for e in outbox.pending()} == {"unchanged"}


# -- a grant event means the relay moved -------------------------------------------------------


def test_a_grant_the_door_refuses_is_recorded_as_a_deny_with_the_refusal(factory, door, outbox) -> None:
    door.fault("camera: unplugged")
    event = record_and_act(door, outbox, EventDraft(gate_id="test-door", verdict="grant", reason="all_masked"))
    assert (event.verdict, event.reason, event.relay) == ("deny", "camera_refused_fault", "unchanged")
    door.clear_fault()
    event = record_and_act(door, outbox, EventDraft(gate_id="test-door", verdict="grant", reason="exit_button", source="exit_button"), seconds=2.0)
    assert (event.verdict, event.relay, event.unlock_s) == ("grant", "energised", 2.0)
    door.close()
    event = record_and_act(door, outbox, EventDraft(gate_id="test-door", verdict="grant", reason="remote", source="remote"))
    assert (event.verdict, event.reason) == ("deny", "remote_refused_closed")
    assert levels(factory, RELAY) == [False, True, False]
    assert [e.seq for e in outbox.pending()] == [1, 2, 3]  # every attempt recorded


# -- 2. hardware-level fail-secure: the stop hook --------------------------------------------------


def unit_commands(key: str) -> list[list[str]]:
    return [shlex.split(line.split("=", 1)[1]) for line in UNIT.read_text().splitlines() if line.startswith(f"{key}=")]


def test_the_unit_releases_the_relay_after_every_stop() -> None:
    from gate.cli import build_parser

    [start] = unit_commands("ExecStart")
    [stop_post] = unit_commands("ExecStopPost")
    assert stop_post[:3] == start[:3]  # the same gate-cli and the same settings file as the daemon
    args = build_parser().parse_args(stop_post[1:])
    assert (args.command, args.action) == ("door", "release")


def stop_hook(settings_file: Path) -> list[str]:
    """The unit's ExecStopPost= command line, run from this checkout on a test settings file."""
    [argv] = unit_commands("ExecStopPost")
    argv = [sys.executable, "-m", "gate.cli", *argv[1:]]
    argv[argv.index("--settings") + 1] = str(settings_file)
    return argv


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MASKGATE__") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}


@pytest.mark.parametrize(("active_high", "inactive"), [(True, "low"), (False, "high")])
def test_door_release_drives_the_relay_pin_to_its_inactive_level(tmp_path: Path, active_high: bool, inactive: str) -> None:
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(f'[door]\npin_factory = "mock"\nrelay_pin = "5"\nrelay_active_high = {str(active_high).lower()}\n')
    result = subprocess.run(stop_hook(settings_file), cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    polarity = f"relay active {'high' if active_high else 'low'}"
    assert result.stdout.strip() == f'mock pins: nothing physical moved (door.pin_factory = "mock"; relay pin 5 set {inactive}, {polarity})'


def test_door_release_needs_only_the_relay_keys_of_an_otherwise_broken_file(tmp_path: Path) -> None:
    """A bad edit to [mqtt] (or anywhere but the relay's keys) must not keep the strike powered
    after a crash: the daemon refuses the file (78), the stop hook still releases."""
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text('[door]\npin_factory = "mock"\nrelay_pin = "5"\nunlock_s = -1\n'
                             '[mqtt]\nenabled = true\nport = 99999\nhost = ""\nremote_unlock = true\n[camera]\nsauce = "0"\n')
    refused = subprocess.run(run_argv(settings_file), cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert refused.returncode == 78 and "mqtt.port" in refused.stderr
    result = subprocess.run(stop_hook(settings_file), cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mock pins: nothing physical moved") and "relay pin 5 set low" in result.stdout
    [line] = result.stderr.splitlines()  # the dashboards' "locked" needs the whole file: said, not fatal
    assert line.startswith("door state not published to MQTT: ") and "mqtt.port" in line


def test_door_release_with_a_bad_settings_file_is_a_config_error(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text('[door]\npin_factory = "mock"\nrelay_pin = ""\n')
    result = subprocess.run(stop_hook(settings_file), cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 78 and "door.relay_pin" in result.stderr and "Traceback" not in result.stderr


def run_argv(settings_file: Path) -> list[str]:
    """`gate-cli run` on mock GPIO, which it only accepts when told so explicitly."""
    return [sys.executable, "-m", "gate.cli", "--settings", str(settings_file), "run", "--allow-mock-pins"]


@pytest.mark.slow
@pytest.mark.skipif(not MODEL.exists(), reason="the packaged model is missing")
@pytest.mark.timeout(240)
def test_sigkill_mid_grant_then_the_stop_hook_releases_the_relay(tmp_path: Path) -> None:
    from training.door_clip import make_door_clip

    clip = tmp_path / "door.mp4"
    make_door_clip(clip, fps=10)
    state = tmp_path / "var"
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(
        f'[gate]\nstate_dir = "{state}"\n'
        f'[camera]\nsource = "{clip}"\nkind = "file"\nfps = 10\nloop = true\nrealtime = true\n'
        '[door]\npin_factory = "mock"\nunlock_s = 60.0\n'
    )
    journal = state / "decisions.jsonl"

    def events() -> list[dict]:
        text = journal.read_text() if journal.exists() else ""
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    with (tmp_path / "gate.log").open("wb") as log:
        gate = subprocess.Popen(run_argv(settings_file), cwd=REPO, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 150
        while not (events() and events()[-1]["relay"] == "energised"):
            assert gate.poll() is None, (tmp_path / "gate.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no grant in time"
            time.sleep(0.05)
        gate.send_signal(signal.SIGKILL)  # no finally, no close(): on a Pi the strike would stay energised
        assert gate.wait(10) == -signal.SIGKILL
    finally:
        if gate.poll() is None:
            gate.kill()
            gate.wait()
    killed_at = datetime.now(timezone.utc)
    moved = [e for e in events() if e["relay"] != "unchanged"]
    last = moved[-1]
    granted_at = datetime.fromisoformat(last["time"].replace("Z", "+00:00"))
    assert last["verdict"] == "grant" and (killed_at - granted_at).total_seconds() < last["unlock_s"]  # it died mid-grant

    result = subprocess.run(stop_hook(settings_file), cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'mock pins: nothing physical moved (door.pin_factory = "mock"; relay pin 17 set low, relay active high)'


# -- 3. remote unlock an auditor accepts: through serve(), a real broker over TLS --------------------


class BlankCamera:
    """An empty doorway, 20 frames a second, until the gate stops."""

    def __init__(self) -> None:
        self.index = 0

    def read(self, timeout: float) -> Frame | None:
        time.sleep(0.05)
        self.index += 1
        return Frame(image=np.zeros((240, 320, 3), np.uint8), timestamp=time.monotonic(), index=self.index)

    @property
    def status(self) -> CameraStatus:
        return CameraStatus("ok", "", self.index, 0, 0, 0, 20.0)

    def close(self) -> None:
        pass

    def __enter__(self) -> BlankCamera:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


@pytest.mark.broker
@pytest.mark.skipif(not HAVE_MOSQUITTO, reason="needs mosquitto, mosquitto_passwd and openssl")
@pytest.mark.skipif(not MODEL.exists(), reason="the packaged model is missing")
def test_remote_commands_are_recorded_journaled_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    topic, events_topic = f"maskgate/{GATE_ID}/command", f"maskgate/{GATE_ID}/events"
    with Broker(tmp_path) as broker, Subscriber(broker, events_topic) as sub, Subscriber(broker, topic, user="operator") as operator:
        monkeypatch.setenv("MASKGATE_MQTT_PASSWORD", broker.users["gate"])
        mqtt = broker.settings(tls=True, remote_unlock=True).model_dump(mode="json", exclude_none=True)
        # trust_clock: a container cannot tell whether NTP set its clock (tests/test_durability.py refuses until it does)
        settings = parse_settings({"gate": {"id": GATE_ID, "state_dir": str(tmp_path / "var"), "trust_clock": "always"},
                                   "door": {"pin_factory": "mock", "unlock_s": 0.5}, "mqtt": mqtt}, environ={})
        camera, stop, health = BlankCamera(), threading.Event(), {}
        worker = threading.Thread(target=lambda: health.update(serve(settings, stop=stop, camera=camera)))
        worker.start()
        try:
            deadline = time.monotonic() + 60
            while camera.index < 3:  # the gate runs: the vision pipeline is built and frames flow
                assert worker.is_alive() and time.monotonic() < deadline
                time.sleep(0.05)
            soon = datetime.now(timezone.utc).timestamp() + 10
            expires = datetime.fromtimestamp(soon, timezone.utc).isoformat()
            fresh = json.dumps({"action": "unlock", "request_id": "req-00000001", "expires": expires, "seconds": 2, "by": "alice"})
            operator.publish(topic, fresh)
            operator.publish(topic, fresh)  # the same request again
            operator.publish(topic, json.dumps({"action": "unlock", "request_id": "req-00000002", "expires": "2020-01-01T00:00:00Z"}))
            sub.wait_for(lambda msgs: len(msgs) >= 3, timeout=30)
        finally:
            stop.set()
            worker.join(30)
    events = [Event.model_validate_json(m.payload) for m in sub.messages]
    assert [(e.verdict, e.reason, e.relay, e.request_id, e.sender) for e in events] == [
        ("grant", "remote", "energised", "req-00000001", "alice"),
        ("deny", "remote_refused_replayed", "unchanged", "req-00000001", "alice"),
        ("deny", "remote_refused_expired", "unchanged", "req-00000002", None),
    ]
    assert events[0].unlock_s == 2 and all(e.source == "remote" for e in events)
    journal = [json.loads(line) for line in (tmp_path / "var" / "decisions.jsonl").read_text().splitlines()]
    assert [j["event_id"] for j in journal] == [e.event_id for e in events]
    assert health["decisions"] == {"grant": 1, "deny": 2}
    assert health["last_decision"]["reason"] == "remote_refused_expired"


# -- 4. the reasons are a documented enum ---------------------------------------------------------


def test_every_reason_the_policy_gives_is_in_the_event_schema() -> None:
    from typing import get_args

    from gate.events import Reason, json_schema
    from gate.policy import OBSERVED_PREFIX, REASONS

    allowed = set(get_args(Reason))
    assert set(REASONS) <= allowed
    assert {OBSERVED_PREFIX + reason for reason in REASONS if reason != "any_masked"} <= allowed  # observe reports all_masked's view
    assert json.loads(json_schema())["properties"]["reason"]["enum"] == list(get_args(Reason))
    readme = (REPO / "README.md").read_text()
    assert all(f"`{reason}`" in readme for reason in allowed), "README: document every event reason"
