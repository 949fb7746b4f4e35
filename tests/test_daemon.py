"""The gate loop: decisions reach the relay, the outbox and the journal; faults keep the door locked.

The first tests drive :class:`gate.daemon.Gate` with a scripted camera, detector and classifier
(passed in, nothing patched) and the real relay code on gpiozero's MockFactory. The last ones run
the whole pipeline — real BlazeFace, the shipped int8 model, a real video file — through serve().
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from gate.actuators import Door
from gate.camera import CameraStatus
from gate.daemon import Gate, serve
from gate.errors import ImageError
from gate.journal import Journal
from gate.models import default_model_path
from gate.outbox import Outbox
from gate.policy import DecisionPolicy
from gate.settings import DoorSettings, OutboxSettings, PolicySettings, Settings, parse_settings
from gate.types import Box, Classification, Detection, Frame
from gate.vision.tracker import Tracker

REPO = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = default_model_path()
RELAY = 17


class ScriptedCamera:
    """Plays a list of frames; ``None`` entries are moments when the camera has failed."""

    def __init__(self, script: list[np.ndarray | None]) -> None:
        self.script = list(script)
        self.index = 0
        self._state = "starting"

    def read(self, timeout: float) -> Frame | None:
        if self.index >= len(self.script):
            self._state = "ended"
            return None
        image = self.script[self.index]
        self.index += 1
        if image is None:
            self._state = "failed"
            return None
        self._state = "ok"
        return Frame(image=image, timestamp=self.index / 10.0, index=self.index)

    @property
    def status(self) -> CameraStatus:
        return CameraStatus(self._state, "scripted failure" if self._state == "failed" else "", self.index, 0, 0, 0, 10.0)

    def close(self) -> None:
        pass


class OneFaceDetector:
    """Finds one face in any frame whose top-left pixel is not zero; raises on a poisoned frame.
    Its faces get their track ids from the real tracker, as the real detector's do."""

    def __init__(self) -> None:
        self.tracker = Tracker.from_settings(PolicySettings())

    def detect(self, image: np.ndarray, now: float) -> list[Detection]:
        if image[0, 0, 1] == 99:
            raise ImageError("poisoned frame")
        return self.tracker.update(now, [Detection(Box(10, 10, 40, 40), 0.9)] if image[0, 0, 0] else [])

    def reset(self) -> None:
        self.tracker.reset()


@dataclass
class LabelByPixel:
    """Reads the label from the frame's top-left pixel: 1 with_mask, 2 without_mask."""

    model_sha256: str = "0" * 64
    min_confidence: float = 0.5
    contract: object = field(default=None)

    def classify(self, image: np.ndarray, box: Box | None = None) -> Classification:
        label = {1: "with_mask", 2: "without_mask"}[int(image[0, 0, 0])]
        other = "without_mask" if label == "with_mask" else "with_mask"
        return Classification(label, {label: 0.95, other: 0.05})


def frame(code: int, poison: bool = False) -> np.ndarray:
    image = np.zeros((60, 60, 3), np.uint8)
    image[0, 0, 0] = code
    if poison:
        image[0, 0, 1] = 99
    return image


@pytest.fixture()
def parts(tmp_path):
    factory = MockFactory()
    door = Door(DoorSettings(unlock_s=0.3, deny_indication_s=0.2), pin_factory=factory)
    outbox = Outbox(tmp_path / "outbox.sqlite3", OutboxSettings())
    journal = Journal(tmp_path / "decisions.jsonl", 100_000)
    yield factory, door, outbox, journal
    door.close()
    outbox.close()


def make_gate(camera, door, outbox, journal, decisions=None, snapshots=None) -> Gate:
    policy = DecisionPolicy(PolicySettings(), 0.5)
    return Gate(
        gate_id="test-door", camera=camera, detector=OneFaceDetector(), classifier=LabelByPixel(), policy=policy,
        door=door, outbox=outbox, journal=journal, snapshots=snapshots,
        on_decision=(lambda d, e, f: decisions.append((d, e))) if decisions is not None else None,
    )


def run_script(gate: Gate) -> None:
    while gate.camera.status.state != "ended":
        gate.step()


def test_masked_visitor_is_granted_once_and_recorded_before_the_relay_acts(parts, tmp_path):
    factory, door, outbox, journal = parts
    decisions: list = []
    gate = make_gate(ScriptedCamera([frame(1)] * 12), door, outbox, journal, decisions)
    run_script(gate)
    assert [d.verdict for d, _ in decisions] == ["grant"]  # twelve frames, one visitor, one decision
    event = decisions[0][1]
    assert outbox.pending()[0].event_id == event.event_id and event.seq == 1
    assert json.loads((tmp_path / "decisions.jsonl").read_text())["event_id"] == event.event_id
    assert factory.pin(RELAY).state is True
    time.sleep(0.5)
    factory.pin(RELAY).assert_states([False, True, False])  # energised for unlock_s, then released


def test_unmasked_visitor_is_denied_and_the_relay_never_moves(parts):
    factory, door, outbox, journal = parts
    decisions: list = []
    run_script(make_gate(ScriptedCamera([frame(2)] * 6), door, outbox, journal, decisions))
    assert [(d.verdict, d.reason) for d, _ in decisions] == [("deny", "no_mask")]
    factory.pin(RELAY).assert_states([False])


def test_camera_failure_faults_the_door_and_recovery_clears_it(parts):
    factory, door, outbox, journal = parts
    gate = make_gate(ScriptedCamera([frame(1), frame(1), None, None, frame(0)]), door, outbox, journal)
    gate.step(), gate.step(), gate.step()
    assert door.state == "fault"
    assert door.grant() is False  # nothing opens a faulted door
    gate.step()
    assert door.state == "fault"
    gate.step()  # frames are processed again
    assert door.state == "locked"
    factory.pin(RELAY).assert_states([False])


def test_a_frame_that_cannot_be_processed_faults_then_recovers(parts):
    _, door, outbox, journal = parts
    gate = make_gate(ScriptedCamera([frame(1, poison=True), frame(0)]), door, outbox, journal)
    assert gate.step() is None and door.state == "fault"
    gate.step()
    assert door.state == "locked"


# -- the whole pipeline ----------------------------------------------------------------------

needs_model = pytest.mark.skipif(not SHIPPED_MODEL.exists(), reason="the shipped model is not in models/")


@pytest.fixture(scope="session")
def door_clip(tmp_path_factory) -> tuple[Path, dict]:
    from training.door_clip import make_door_clip

    path = tmp_path_factory.mktemp("clip") / "door.mp4"
    return path, make_door_clip(path, fps=10)


def clip_settings(tmp_path: Path, clip: Path, **sections) -> Settings:
    data = {
        "gate": {"state_dir": str(tmp_path / "var")},
        "camera": {"source": str(clip), "kind": "file", "realtime": False, "fps": 10},
        "classifier": {"model": str(SHIPPED_MODEL)},
        "policy": {"evidence_frames": 3},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_settings(data, environ={})


@needs_model
@pytest.mark.slow
def test_each_visitor_of_the_door_clip_gets_the_right_decision(tmp_path, door_clip):
    clip, script = door_clip
    decided: list = []
    health = serve(clip_settings(tmp_path, clip), until_camera_ends=True, on_decision=lambda d, e, f: decided.append((f.index / 10.0, d, e)))
    for segment in script["segments"]:
        expected = "grant" if all(label == "with_mask" for label in segment["labels"]) else "deny"
        verdicts = [d.verdict for t, d, _ in decided if segment["start"] <= t <= segment["end"]]
        assert verdicts == [expected], (segment, verdicts)  # one decision per visitor (or pair)
    assert health["frames"] == script["frames"]  # every frame of the clip, the last one included
    assert health["decisions"] == {v: sum(d.verdict == v for _, d, _ in decided) for v in {d.verdict for _, d, _ in decided}}
    journal = [json.loads(line) for line in (tmp_path / "var" / "decisions.jsonl").read_text().splitlines()]
    assert [j["seq"] for j in journal] == list(range(1, len(decided) + 1))
    assert json.loads((tmp_path / "var" / "status.json").read_text())["frames"] == health["frames"]


@needs_model
def test_a_broken_model_keeps_the_door_locked_until_a_good_one_arrives(tmp_path, door_clip, caplog):
    clip, _ = door_clip
    caplog.set_level(logging.INFO)
    model = tmp_path / "model.tflite"
    model.write_text("this is not a model")
    settings = clip_settings(tmp_path, clip, classifier={"model": str(model)}, camera={"loop": True})
    stop = threading.Event()
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(serve(settings, stop=stop)))
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while "not a TFLite model" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "door held locked" in caplog.text
        shutil.copy(SHIPPED_MODEL.with_suffix(".json"), model.with_suffix(".json"))
        shutil.copy(SHIPPED_MODEL, model)
        while "running" not in caplog.text and time.monotonic() < deadline + 10:
            time.sleep(0.1)
        assert "gate front-door running" in caplog.text
        status = tmp_path / "var" / "status.json"
        while time.monotonic() < deadline + 20 and (not status.exists() or json.loads(status.read_text())["state"] != "running"):
            time.sleep(0.1)  # the status shows the fault from start-up on, then the running loop's
        assert json.loads(status.read_text())["door"] == "locked"  # the model fault is cleared
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()
    assert result["frames"] > 0


def test_face_crops_are_saved_only_when_privacy_allows(parts, tmp_path):
    from gate.snapshots import FaceSnapshots

    _, door, outbox, journal = parts
    gate = make_gate(ScriptedCamera([frame(1)] * 6), door, outbox, journal)
    run_script(gate)
    assert not list(tmp_path.rglob("*.jpg"))  # the default: nothing written
    snapshots = FaceSnapshots(tmp_path / "faces", retention_days=1.0)
    run_script(make_gate(ScriptedCamera([frame(2)] * 6), door, outbox, journal, snapshots=snapshots))
    [event] = [e for e in outbox.pending() if e.verdict == "deny"]
    assert [p.name for p in (tmp_path / "faces").iterdir()] == [f"{event.event_id}-0.jpg"]


@needs_model
def test_systemd_hears_ready_watchdog_status_and_stopping_from_the_loop(tmp_path, door_clip, monkeypatch):
    import socket
    import tempfile

    clip, _ = door_clip
    folder = tempfile.mkdtemp(prefix="notify-", dir="/tmp")  # AF_UNIX paths must be short
    address = f"{folder}/notify.sock"
    messages: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(0.2)
        done = threading.Event()

        def systemd() -> None:  # reads as the service manager does, while the gate runs
            while not done.is_set():
                try:
                    messages.append(listener.recv(4096).decode())
                except TimeoutError:
                    pass

        reader = threading.Thread(target=systemd)
        reader.start()
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        monkeypatch.setenv("WATCHDOG_USEC", "2000000")
        try:
            serve(clip_settings(tmp_path, clip, camera={"realtime": True, "fps": 30}), until_camera_ends=True)
            time.sleep(0.5)
        finally:
            done.set()
            reader.join()
    shutil.rmtree(folder)
    assert messages[0] == "READY=1" and messages[-1] == "STOPPING=1"
    assert messages.count("WATCHDOG=1") >= 3  # the clip plays for several seconds; pinged every second
    assert any(m.startswith("STATUS=") and "fps" in m for m in messages)
