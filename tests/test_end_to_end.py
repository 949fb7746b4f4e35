"""The whole gate as systemd runs it: `gate-cli run` in its own process, a real mosquitto, the
synthetic door clip as the camera, the shipped int8 model and the mock GPIO pin factory.

What is shown here is delivery, not accuracy (that is tests/test_daemon.py): every decision the
gate records reaches a subscriber exactly once after de-duplication by ``event_id``, in ``seq``
order, through a clean stop, a kill, a broker restart, a wrong password and TLS; availability
follows the process. The gate's journal (``decisions.jsonl``) and its outbox are the witnesses of
what was recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gate.events import Event
from gate.models import default_model_path
from gate.outbox import Outbox
from gate.settings import MqttSettings, OutboxSettings, load_settings
from tests.settings_files import to_toml
from tests.broker import GATE_ID, HAVE_MOSQUITTO, Broker, Subscriber

REPO = Path(__file__).resolve().parent.parent
MODEL = default_model_path()
EVENTS = f"maskgate/{GATE_ID}/events"
AVAILABILITY = f"maskgate/{GATE_ID}/availability"

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(not HAVE_MOSQUITTO, reason="needs mosquitto, mosquitto_passwd and openssl (apt-get install mosquitto mosquitto-clients openssl)"),
    pytest.mark.skipif(not (MODEL.exists() and MODEL.with_suffix(".json").exists()),
                       reason=f"the shipped model {MODEL} and its contract .json are not there (yet): train and convert mnv2-3c (scripts/train_all.sh)"),
    pytest.mark.timeout(180),
]


# -- helpers ---------------------------------------------------------------------------------


class GateProcess:
    """One `gate-cli --settings FILE run` process; its stderr (the log) goes to a file."""

    def __init__(self, settings_file: Path, log_file: Path, password: str | None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MASKGATE__") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env.pop("MASKGATE_MQTT_PASSWORD", None)
        if password is not None:
            env["MASKGATE_MQTT_PASSWORD"] = password
        self.log_file = log_file
        with log_file.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "gate.cli", "--settings", str(settings_file), "run", "--allow-mock-pins"],
                                            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit status."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the gate did not exit within {timeout:.0f} s of {sig.name}:\n{self.log()[-3000:]}") from None


class Site:
    """One installed gate: its settings file and state folder; :meth:`run` starts `gate-cli run` on them."""

    def __init__(self, folder: Path, clip: Path, mqtt: MqttSettings) -> None:
        self.folder = folder
        self.state_dir = folder / "var"
        self.settings_file = folder / "settings.toml"
        self.clip = clip
        self.mqtt = mqtt  # written to the settings file at each run
        self.runs = 0

    def _write_settings(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.settings_file.write_text(to_toml({
            "gate": {"id": GATE_ID, "state_dir": str(self.state_dir)},
            # real time at the clip's own rate: the policy's tracks see the visitors as a camera would,
            # so each visitor of each pass of the looping clip gives one decision
            "camera": {"source": str(self.clip), "kind": "file", "fps": 10, "loop": True, "realtime": True},
            "classifier": {"model": str(MODEL)},
            "policy": {"evidence_frames": 3},
            "door": {"pin_factory": "mock", "unlock_s": 0.5, "deny_indication_s": 0.3},
            "mqtt": self.mqtt.model_dump(mode="json", exclude_none=True),
        }))
        load_settings(self.settings_file, environ={})  # a typo here should fail here, not as a silent exit 78

    @contextmanager
    def run(self, password: str | None) -> Iterator[GateProcess]:
        """The gate process, killed on the way out whatever happened."""
        self._write_settings()
        self.runs += 1
        gate = GateProcess(self.settings_file, self.folder / f"gate-{self.runs}.log", password)
        try:
            yield gate
        finally:
            if gate.running:
                gate.process.kill()
            gate.process.wait(10)

    def journal(self) -> list[Event]:
        """Every decision the gate recorded, from its journal (complete lines only: it may be writing)."""
        path = self.state_dir / "decisions.jsonl"
        text = path.read_text() if path.exists() else ""
        return [Event.model_validate_json(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def outbox(self) -> dict[str, Any]:
        """Outbox counters and the ids still pending (only once the gate has stopped)."""
        with Outbox(self.state_dir / "outbox.sqlite3", OutboxSettings()) as outbox:
            return {**outbox.stats(), "pending_ids": [e.event_id for e in outbox.pending(limit=100_000)]}


def wait_until(condition: Callable[[], bool], timeout: float, what: str, gate: GateProcess | None = None) -> None:
    """Poll ``condition``; fail at the deadline, or at once with the gate's log if it died."""
    deadline = time.monotonic() + timeout
    while not condition():
        if gate is not None and not gate.running:
            raise AssertionError(f"the gate exited ({gate.process.returncode}) while waiting for {what}:\n{gate.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}" + (f":\n{gate.log()[-3000:]}" if gate else ""))
        time.sleep(0.1)


def received(sub: Subscriber) -> list[Event]:
    """Every event message, in arrival order, each parsed (and so validated) as maskgate.event/1."""
    return [Event.model_validate_json(m.payload) for m in sub.on(EVENTS)]


def first_copies(events: list[Event]) -> list[Event]:
    """De-duplicated by event_id, as a consumer of at-least-once delivery must."""
    seen: dict[str, Event] = {}
    for event in events:
        seen.setdefault(event.event_id, event)
    return list(seen.values())


def ids(events: list[Event]) -> list[str]:
    return [e.event_id for e in events]


def log_line(gate: GateProcess, text: str) -> str:
    """The first line of the gate's log containing ``text``."""
    return next(line for line in gate.log().splitlines() if text in line)


def availability(sub: Subscriber) -> list[bytes]:
    return [m.payload for m in sub.on(AVAILABILITY)]


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def door_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.door_clip import make_door_clip

    path = tmp_path_factory.mktemp("e2e-clip") / "door.mp4"
    make_door_clip(path, fps=10)
    return path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path) as running:
        yield running


@pytest.fixture
def site(tmp_path: Path, door_clip: Path, broker: Broker) -> Site:
    return Site(tmp_path / "gate", door_clip, broker.settings())


# -- the tests -------------------------------------------------------------------------------


def test_every_event_of_a_run_arrives_once_and_a_clean_stop_leaves_nothing_pending(broker: Broker, site: Site) -> None:
    with Subscriber(broker, f"maskgate/{GATE_ID}/#") as sub:
        with site.run(broker.users["gate"]) as gate:
            wait_until(lambda: len(sub.on(EVENTS)) >= 4, 60, "four events", gate)
            assert gate.stop(signal.SIGTERM) == 0, gate.log()[-3000:]
        recorded = site.journal()
        wait_until(lambda: len(sub.on(EVENTS)) >= len(recorded), 10, f"all {len(recorded)} recorded events")
        sub.wait_for(lambda msgs: availability(sub)[-1:] == [b"offline"])
    events = received(sub)
    assert [e.seq for e in events] == list(range(1, len(recorded) + 1))  # contiguous from 1, in order, no duplicate
    assert events == recorded  # the very events the gate recorded, field for field
    assert {e.gate_id for e in events} == {GATE_ID} and all(e.source == "camera" and e.faces for e in events)
    outbox = site.outbox()
    assert outbox["pending"] == 0 and outbox["sent_total"] == outbox["last_seq"] == len(recorded)
    with Subscriber(broker, AVAILABILITY) as late:  # what a dashboard starting now is told
        late.wait_for(lambda msgs: len(msgs) >= 1)
        assert late.messages[0].payload == b"offline" and late.messages[0].retain


def test_last_will_says_offline_when_the_gate_is_killed(broker: Broker, site: Site) -> None:
    with Subscriber(broker, AVAILABILITY) as sub, site.run(broker.users["gate"]) as gate:
        wait_until(lambda: availability(sub) == [b"online"], 30, "online", gate)
        gate.stop(signal.SIGKILL)
        sub.wait_for(lambda msgs: availability(sub) == [b"online", b"offline"], timeout=20)
    assert "MQTT link stopped" not in gate.log()  # no goodbye was said: the broker's last will spoke


def test_broker_restart_and_gate_kill_lose_nothing_and_seq_continues(broker: Broker, site: Site) -> None:
    password = broker.users["gate"]
    with Subscriber(broker, EVENTS) as sub:
        with site.run(password) as first:
            wait_until(lambda: len(sub.on(EVENTS)) >= 2, 60, "the first events", first)
            broker.stop()
            before = len(site.journal())
            wait_until(lambda: len(site.journal()) >= before + 2, 30, "events recorded while the broker is down", first)
            first.stop(signal.SIGKILL)  # with events waiting in the outbox (and maybe one recorded but not yet journaled)
        killed_at = site.journal()
        with site.run(password) as second:  # starts, and decides, without a broker
            wait_until(lambda: len(site.journal()) >= len(killed_at) + 2, 60, "decisions of the restarted gate", second)
            broker.start()
            wait_until(lambda: len(site.journal()) >= len(killed_at) + 4, 60, "decisions after the broker is back", second)
            assert second.stop(signal.SIGTERM) == 0, second.log()[-3000:]
        recorded = site.journal()
        wait_until(lambda: set(ids(recorded)) <= set(ids(received(sub))), 20, f"all {len(recorded)} recorded events")
    delivered = first_copies(received(sub))
    outbox = site.outbox()
    # A kill can land between recording an event and journaling it: the outbox's seq counter is the
    # complete record, so every seq up to it must have arrived, each once after de-duplication.
    assert [e.seq for e in delivered] == list(range(1, outbox["last_seq"] + 1))
    assert [e for e in delivered if e.event_id in set(ids(recorded))] == recorded
    assert min(e.seq for e in recorded[len(killed_at):]) > max(e.seq for e in killed_at)  # seq continues after the restart
    assert outbox["pending"] == 0
    log = second.log()
    assert log.index("is unreachable") < log.index("MQTT connected")  # started without the broker, connected during its run


def test_wrong_password_keeps_events_until_the_right_one_delivers_them(broker: Broker, site: Site) -> None:
    with Subscriber(broker, EVENTS) as sub:
        with site.run("not-the-password") as gate:
            refusal = f"MQTT broker 127.0.0.1:{broker.port} refused the login for user 'gate'"
            wait_until(lambda: refusal in gate.log(), 30, "the refused login in the log", gate)
            wait_until(lambda: len(site.journal()) >= 3, 60, "decisions while the broker refuses the gate", gate)
            assert gate.running  # a refused login is not a reason to stop guarding the door
            assert gate.stop(signal.SIGTERM) == 0
        assert " ERROR " in log_line(gate, refusal) and "not-the-password" not in gate.log()
        status = json.loads((site.state_dir / "status.json").read_text())
        assert status["mqtt"]["connected"] is False and status["mqtt"]["last_error"].startswith(refusal)
        assert status["door"] != "fault"  # being offline does not stop the door working
        offline = site.journal()
        outbox = site.outbox()
        assert outbox["pending_ids"] == ids(offline) and outbox["sent_total"] == 0  # all kept, none lost
        assert sub.on(EVENTS) == []

        with site.run(broker.users["gate"]) as gate:  # the password fixed
            wait_until(lambda: ids(first_copies(received(sub)))[: len(offline)] == ids(offline), 30, "the kept events, first", gate)
            assert gate.stop(signal.SIGTERM) == 0
        recorded = site.journal()
        wait_until(lambda: ids(first_copies(received(sub))) == ids(recorded), 10, f"all {len(recorded)} recorded events")
    assert [e.seq for e in first_copies(received(sub))] == list(range(1, len(recorded) + 1))
    assert site.outbox()["pending"] == 0


def test_tls_with_the_brokers_ca_delivers(broker: Broker, site: Site) -> None:
    site.mqtt = broker.settings(tls=True)
    with Subscriber(broker, EVENTS) as sub, site.run(broker.users["gate"]) as gate:
        wait_until(lambda: len(sub.on(EVENTS)) >= 2, 60, "events over TLS", gate)
        assert gate.stop(signal.SIGTERM) == 0
        recorded = site.journal()
        wait_until(lambda: len(sub.on(EVENTS)) >= len(recorded), 10, "all recorded events")
    assert received(sub) == recorded
    assert f"MQTT connected to 127.0.0.1:{broker.tls_port}" in gate.log()
    assert site.outbox()["pending"] == 0


def test_tls_with_a_wrong_ca_is_a_clear_error_and_loses_nothing(broker: Broker, site: Site) -> None:
    settings = broker.settings(tls=True)
    site.mqtt = settings.model_copy(update={"tls": settings.tls.model_copy(update={"ca_file": broker.certs.wrong_ca_file})})
    with Subscriber(broker, EVENTS) as sub, site.run(broker.users["gate"]) as gate:
        untrusted = f"MQTT broker 127.0.0.1:{broker.tls_port}: TLS certificate not trusted"
        wait_until(lambda: untrusted in gate.log(), 30, "the TLS error in the log", gate)
        wait_until(lambda: len(site.journal()) >= 2, 60, "decisions while TLS fails", gate)
        assert gate.stop(signal.SIGTERM) == 0
    line = log_line(gate, untrusted)
    assert " ERROR " in line and f"mqtt.tls.ca_file ({broker.certs.wrong_ca_file})" in line
    outbox = site.outbox()
    assert outbox["pending_ids"] == ids(site.journal()) and outbox["sent_total"] == 0
    assert sub.on(EVENTS) == []
