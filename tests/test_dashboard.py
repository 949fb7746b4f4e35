"""What dashboards see (issue 20), against a real mosquitto: the door's state on every relay
change, a fresh state before ``online``, a fault payload Home Assistant's templates can read,
lifetime counters that survive a restart, and the stop hook's "locked".

The real Home Assistant check is ``make ha-check`` (scripts/ha_check.sh): minutes of install, so
not here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from gate.actuators import Door
from gate.dashboard import Dashboard, load_counters
from gate.daemon import serve
from gate.events import EventDraft
from gate.mqtt import MqttLink, announce_door_released
from gate.outbox import Outbox
from gate.settings import DoorSettings, OutboxSettings, Settings, parse_settings
from tests.broker import GATE_ID, HAVE_MOSQUITTO, Broker, Subscriber, free_port

pytestmark = [pytest.mark.broker, pytest.mark.skipif(not HAVE_MOSQUITTO, reason="needs mosquitto, mosquitto_passwd and openssl")]

REPO = Path(__file__).resolve().parent.parent
STATE = f"maskgate/{GATE_ID}/state"
AVAILABILITY = f"maskgate/{GATE_ID}/availability"
RELAY = 17


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path) as running:
        yield running


def states(sub: Subscriber) -> list[dict]:
    return [json.loads(m.payload) for m in sub.on(STATE)]


def gate_settings(tmp_path: Path, broker: Broker, **sections: dict) -> Settings:
    data = {"gate": {"id": GATE_ID, "state_dir": str(tmp_path / "var")}, "door": {"pin_factory": "mock"},
            "mqtt": broker.settings(homeassistant={"enabled": True}).model_dump(mode="json", exclude_none=True)}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_settings(data, environ={})


def test_every_relay_change_is_published_in_order_and_a_relock_within_a_second(broker: Broker, tmp_path: Path) -> None:
    """A relock by the door's own timer, and a short relock between two grants, each reach the
    broker at once (no timer of ours in between); extending a grant is no change."""
    factory = MockFactory()
    (tmp_path / "var").mkdir()
    with Outbox(tmp_path / "outbox.sqlite3", OutboxSettings()) as outbox, Subscriber(broker, STATE) as sub:
        link = MqttLink(broker.settings(), GATE_ID, outbox, password=broker.users["gate"])
        dashboard = Dashboard(tmp_path / "var", link.publish_state)
        dashboard.update(phase="running", camera="ok")
        link.start()
        try:
            with Door(DoorSettings(pin_factory="mock"), pin_factory=factory) as door:
                door.on_change = dashboard.door_changed
                sub.wait_for(lambda _: len(states(sub)) >= 1)
                granted = time.monotonic()
                door.grant(0.4)
                door.grant(0.4)  # extends the grant: the relay does not move, nothing new to say
                sub.wait_for(lambda _: [s["door"] for s in states(sub)] == ["locked", "unlocked", "locked"], timeout=5)
                # the relay moved at granted + 0.4 s at the earliest: this bounds the delay from above
                relock_delay = time.monotonic() - (granted + 0.4)
                door.grant(0.2)
                sub.wait_for(lambda _: len(states(sub)) == 5, timeout=5)
                door.grant(0.2)  # right after the relock: unlocked, locked, unlocked within ~0.2 s
                sub.wait_for(lambda _: len(states(sub)) == 7, timeout=5)
        finally:
            link.stop()
    published = states(sub)
    assert [s["door"] for s in published] == ["locked", "unlocked", "locked", "unlocked", "locked", "unlocked", "locked"]
    assert [s.state for s in factory.pin(RELAY).states] == [False, True, False, True, False, True, False]
    assert relock_delay < 1.0, f"the relock reached the broker up to {relock_delay:.3f} s after the relay moved"
    assert all(s["phase"] == "running" and s["health"] == "ok" for s in published)


def test_a_fresh_state_precedes_online_and_a_model_fault_carries_every_key(broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crashed run left "unlocked" retained; the next run says "locked, starting" before "online",
    then the model fault as a complete payload every discovery template can read."""
    model = tmp_path / "model.tflite"
    model.write_text("this is not a model")
    settings = gate_settings(tmp_path, broker, classifier={"model": str(model)})
    monkeypatch.setenv("MASKGATE_MQTT_PASSWORD", broker.users["gate"])
    with Subscriber(broker, AVAILABILITY, user="gate") as crashed_run:  # the gate's user may write the state
        crashed_run.publish(STATE, json.dumps({"door": "unlocked", "grants": 7, "denies": 1}), retain=True)
    with Subscriber(broker, STATE, AVAILABILITY, "homeassistant/#") as sub:
        sub.wait_for(lambda msgs: len(msgs) >= 1)  # the stale retained state
        stop = threading.Event()
        worker = threading.Thread(target=serve, args=(settings,), kwargs={"stop": stop})
        worker.start()
        try:
            sub.wait_for(lambda _: any(s.get("fault") for s in states(sub)), timeout=30)
        finally:
            stop.set()
            worker.join(30)
        sub.wait_for(lambda _: b"offline" in [m.payload for m in sub.on(AVAILABILITY)], timeout=10)
    order = [(m.topic, json.loads(m.payload) if m.topic == STATE else m.payload) for m in sub.messages if m.topic in (STATE, AVAILABILITY)]
    assert order[0][1]["door"] == "unlocked"  # what the crashed run left
    fresh, online = order[1], order[2]  # "locked" or, if the model failed before the connection, already the fault
    assert fresh[0] == STATE and fresh[1]["phase"] == "starting" and fresh[1]["door"] in ("locked", "fault"), fresh
    assert online == (AVAILABILITY, b"online")
    fault = next(s for s in states(sub) if s.get("fault"))
    assert fault["door"] == "fault" and fault["health"] == "fault" and "not a TFLite model" in fault["fault"]
    assert fault["model"]["ok"] is False and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fault["time"])
    configs = {m.topic: json.loads(m.payload) for m in sub.messages if m.topic.startswith("homeassistant/")}
    assert len(configs) == 6 and all(c["qos"] == 1 for c in configs.values())
    read = {key for c in configs.values() if c["state_topic"] == STATE
            for template in (c["value_template"], c.get("json_attributes_template", "")) for key in re.findall(r"value_json\.(\w+)", template)}
    assert read >= {"door", "fault", "health", "grants", "denies"} and read <= set(fault), read - set(fault)
    last = states(sub)[-1]
    assert (last["door"], last["phase"], last["fault"]) == ("fault", "stopped", fault["fault"])  # stopped while faulted, before "offline"


def test_counters_survive_a_restart_and_the_stop_hook_publishes_locked(broker: Broker, tmp_path: Path) -> None:
    state_dir = tmp_path / "var"
    state_dir.mkdir()
    first = Dashboard(state_dir)
    for verdict, reason in (("grant", "all_masked"), ("deny", "no_mask"), ("grant", "exit_button")):
        first.count(EventDraft(gate_id=GATE_ID, verdict=verdict, reason=reason).numbered(1))
    second = Dashboard(state_dir)  # a restarted gate
    assert (second.state.grants, second.state.denies, second.state.last_decision.reason) == (2, 1, "exit_button")
    assert load_counters(state_dir).grants == 2

    settings_file = tmp_path / "settings.toml"
    mqtt = broker.settings()
    settings_file.write_text(f'[gate]\nid = "{GATE_ID}"\nstate_dir = "{state_dir}"\n[door]\npin_factory = "mock"\n'
                             f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {mqtt.port}\nusername = "gate"\n')
    with Subscriber(broker, STATE) as sub:
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "MASKGATE_MQTT_PASSWORD": broker.users["gate"]}
        result = subprocess.run([sys.executable, "-m", "gate.cli", "--settings", str(settings_file), "door", "release"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stdout.startswith("mock pins: nothing physical moved"), result.stderr
        [stopped] = [json.loads(m.payload) for m in sub.wait_for(lambda msgs: len(msgs) >= 1, timeout=10)]
    assert (stopped["door"], stopped["phase"], stopped["grants"], stopped["denies"]) == ("locked", "stopped", 2, 1)


def test_the_stop_hook_gives_up_on_an_unreachable_broker_quickly(tmp_path: Path) -> None:
    settings = parse_settings({"gate": {"state_dir": str(tmp_path)}, "mqtt": {"enabled": True, "host": "127.0.0.1", "port": free_port()}}, environ={})
    started = time.monotonic()
    problem = announce_door_released(settings, timeout_s=1.0)
    assert problem is not None and "unreachable" in problem and time.monotonic() - started < 2.0
