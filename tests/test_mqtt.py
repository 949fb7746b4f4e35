"""MqttLink against a real mosquitto: delivery from the outbox, last will, broker restart,
refused logins, TLS, remote unlock and Home Assistant discovery."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gate.errors import ConfigError
from gate.events import Event, EventDraft
from gate.mqtt import MqttLink, RemoteRequest, read_password
from gate.outbox import Outbox
from gate.settings import MqttSettings, OutboxSettings, parse_settings
from tests.broker import GATE_ID, HAVE_MOSQUITTO, Broker, Subscriber, free_port

pytestmark = [pytest.mark.broker, pytest.mark.skipif(not HAVE_MOSQUITTO, reason="needs mosquitto, mosquitto_passwd and openssl (apt-get install mosquitto mosquitto-clients openssl)")]

REPO = Path(__file__).resolve().parents[1]
EVENTS = f"maskgate/{GATE_ID}/events"
AVAILABILITY = f"maskgate/{GATE_ID}/availability"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path) as running:
        yield running


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite3", OutboxSettings()) as box:
        yield box


@pytest.fixture
def make_link(outbox: Outbox) -> Iterator[Callable[..., MqttLink]]:
    links: list[MqttLink] = []

    def make(settings: MqttSettings, password: str | None = "gate-secret", **kwargs: object) -> MqttLink:
        link = MqttLink(settings, GATE_ID, outbox, password=password, **kwargs)
        links.append(link)
        link.start()
        return link

    yield make
    for link in links:
        link.stop()


def record(outbox: Outbox, link: MqttLink, n: int) -> list[Event]:
    events = [outbox.record(EventDraft(gate_id=GATE_ID, verdict="grant" if i % 3 else "deny", reason="all_masked" if i % 3 else "no_mask")) for i in range(n)]
    link.notify()
    return events


def wait_until(condition: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def received_events(sub: Subscriber) -> list[Event]:
    return [Event.model_validate_json(m.payload) for m in sub.on(EVENTS)]


def unique_in_arrival_order(events: list[Event]) -> list[Event]:
    seen: dict[str, Event] = {}
    for event in events:
        seen.setdefault(event.event_id, event)
    return list(seen.values())


def test_every_event_arrives_valid_and_in_order(broker: Broker, outbox: Outbox, make_link: Callable[..., MqttLink]) -> None:
    with Subscriber(broker, "maskgate/#") as sub:
        link = make_link(broker.settings())
        link.publish_state({"door": "locked", "grants": 0, "denies": 0})
        sent = record(outbox, link, 25)
        sub.wait_for(lambda msgs: len(sub.on(EVENTS)) >= 25)
        assert received_events(sub) == sent  # parsed by the Event model: schema-valid, same content, seq order
        wait_until(lambda: outbox.stats()["pending"] == 0, what="all events acknowledged")
        assert outbox.stats()["sent_total"] == 25
        assert [m.payload for m in sub.on(AVAILABILITY)] == [b"online"]
        assert json.loads(sub.on(f"maskgate/{GATE_ID}/state")[-1].payload)["door"] == "locked"
        assert link.status.connected and link.status.last_error is None


def test_health_carries_outbox_stats(broker: Broker, make_link: Callable[..., MqttLink]) -> None:
    with Subscriber(broker, f"maskgate/{GATE_ID}/health") as sub:
        link = make_link(broker.settings())
        wait_until(lambda: link.status.connected, what="connect")
        link.publish_health({"fps": 14.5, "uptime_s": 12})
        sub.wait_for(lambda msgs: len(msgs) == 1)
        health = json.loads(sub.messages[0].payload)
        assert health["fps"] == 14.5 and health["outbox"]["pending"] == 0 and health["time"].endswith("Z")


def test_clean_stop_publishes_offline(broker: Broker, make_link: Callable[..., MqttLink]) -> None:
    with Subscriber(broker, AVAILABILITY) as sub:
        link = make_link(broker.settings())
        sub.wait_for(lambda msgs: [m.payload for m in msgs] == [b"online"])
        link.stop()
        sub.wait_for(lambda msgs: [m.payload for m in msgs] == [b"online", b"offline"])


CHILD = """
import sys, time
from pathlib import Path
from gate.mqtt import MqttLink, read_password
from gate.outbox import Outbox
from gate.settings import MqttSettings, OutboxSettings, parse_settings
settings = MqttSettings.model_validate_json(sys.argv[1])
link = MqttLink(settings, "front-door", Outbox(Path(sys.argv[2]), OutboxSettings()), password=read_password(settings))
link.start()
while not link.status.connected:
    time.sleep(0.05)
print("connected", flush=True)
time.sleep(120)
"""


def test_last_will_says_offline_when_the_process_is_killed(broker: Broker, tmp_path: Path) -> None:
    with Subscriber(broker, AVAILABILITY) as sub:
        env = {**os.environ, "MASKGATE_MQTT_PASSWORD": broker.users["gate"], "PYTHONPATH": str(REPO)}
        child = subprocess.Popen([sys.executable, "-c", CHILD, broker.settings().model_dump_json(), str(tmp_path / "child.sqlite3")],
                                 stdout=subprocess.PIPE, env=env, cwd=REPO)
        try:
            assert child.stdout is not None and child.stdout.readline() == b"connected\n"
            sub.wait_for(lambda msgs: [m.payload for m in msgs] == [b"online"])
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            sub.wait_for(lambda msgs: [m.payload for m in msgs] == [b"online", b"offline"])
        finally:
            child.kill()
            child.wait()


def test_broker_restart_mid_run_loses_nothing(broker: Broker, outbox: Outbox, make_link: Callable[..., MqttLink]) -> None:
    with Subscriber(broker, EVENTS) as sub:
        link = make_link(broker.settings())
        wait_until(lambda: link.status.connected, what="connect")
        recorded: list[Event] = []

        def daemon_like() -> None:
            for _ in range(40):
                recorded.extend(record(outbox, link, 1))
                time.sleep(0.02)

        writer = threading.Thread(target=daemon_like)
        writer.start()
        wait_until(lambda: len(recorded) >= 10, what="first events")
        broker.stop()
        wait_until(lambda: not link.status.connected, what="link to notice the broker is gone")
        assert "lost" in (link.status.last_error or "") or "unreachable" in (link.status.last_error or "")
        time.sleep(0.3)  # events keep being recorded while the broker is down
        broker.start()
        writer.join()
        sub.wait_for(lambda msgs: len({e.event_id for e in received_events(sub)}) >= 40, timeout=30)
        delivered = unique_in_arrival_order(received_events(sub))
        assert [e.seq for e in delivered] == [e.seq for e in recorded] == list(range(1, 41))
        wait_until(lambda: outbox.stats()["pending"] == 0, what="all acknowledged")
        assert link.status.connects >= 2 and link.status.connected


def test_wrong_password_is_a_clear_error_and_nothing_is_sent(broker: Broker, outbox: Outbox, make_link: Callable[..., MqttLink],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="gate.mqtt"):
        link = make_link(broker.settings(), password="not-the-password")
        record(outbox, link, 2)
        wait_until(lambda: link.status.last_error is not None, what="an error")
        time.sleep(0.5)  # a few retries
    # mosquitto 2.0 answers "not authorized" to a bad password; newer brokers "bad user name or password"
    expected = link.status.last_error
    assert expected in {f"MQTT broker 127.0.0.1:{broker.port} refused the login for user 'gate': {reason}"
                        for reason in ("not authorized", "bad user name or password")}
    assert expected in caplog.text and "not-the-password" not in caplog.text
    assert caplog.text.count(expected) == 1  # retries do not flood the log at ERROR
    assert not link.status.connected
    assert outbox.stats()["pending"] == 2 and outbox.stats()["sent_total"] == 0


def test_acl_refusal_keeps_the_event(tmp_path: Path, outbox: Outbox, make_link: Callable[..., MqttLink]) -> None:
    acl = f"user gate\ntopic write {AVAILABILITY}\n"  # forgot the events topic
    with Broker(tmp_path, acl=acl) as broker:
        link = make_link(broker.settings())
        record(outbox, link, 1)
        seen: list[str] = []

        def refused() -> bool:  # remember the message: a reconnect clears it until the next refusal
            seen.append(link.status.last_error or "")
            return "rejected an event" in seen[-1]

        wait_until(refused, what="the refusal")
        assert "not authorized" in seen[-1]
        assert outbox.stats()["pending"] == 1 and outbox.stats()["sent_total"] == 0


def test_unreachable_broker(outbox: Outbox, make_link: Callable[..., MqttLink]) -> None:
    port = free_port()
    link = make_link(MqttSettings(enabled=True, host="127.0.0.1", port=port, reconnect_min_s=0.1, reconnect_max_s=0.2))
    wait_until(lambda: link.status.last_error is not None, what="an error")
    assert link.status.last_error.startswith(f"MQTT broker 127.0.0.1:{port} is unreachable")


def test_tls_delivers(broker: Broker, outbox: Outbox, make_link: Callable[..., MqttLink]) -> None:
    with Subscriber(broker, EVENTS) as sub:
        link = make_link(broker.settings(tls=True))
        sent = record(outbox, link, 3)
        sub.wait_for(lambda msgs: len(msgs) >= 3)
        assert received_events(sub) == sent


def test_mutual_tls_with_client_certificate(broker: Broker, outbox: Outbox, make_link: Callable[..., MqttLink]) -> None:
    with Subscriber(broker, EVENTS) as sub:
        link = make_link(broker.settings(user=None, tls="mutual"), password=None)  # the certificate's CN is the user
        sent = record(outbox, link, 2)
        sub.wait_for(lambda msgs: len(msgs) >= 2)
        assert received_events(sub) == sent


def test_wrong_ca_is_a_clear_tls_error(broker: Broker, outbox: Outbox, make_link: Callable[..., MqttLink]) -> None:
    settings = broker.settings(tls=True)
    settings = settings.model_copy(update={"tls": settings.tls.model_copy(update={"ca_file": broker.certs.wrong_ca_file})})
    link = make_link(settings)
    record(outbox, link, 1)
    wait_until(lambda: link.status.last_error is not None, what="an error")
    assert link.status.last_error.startswith(f"MQTT broker 127.0.0.1:{broker.tls_port}: TLS certificate not trusted")
    assert "mqtt.tls.ca_file" in link.status.last_error
    assert not link.status.connected and outbox.stats()["sent_total"] == 0


def test_missing_ca_file_is_a_config_error(tmp_path: Path, outbox: Outbox) -> None:
    settings = MqttSettings(enabled=True, tls={"enabled": True, "ca_file": tmp_path / "nope.crt"})
    with pytest.raises(ConfigError, match="nope.crt"):
        MqttLink(settings, GATE_ID, outbox)


def command(request_id: str, expires_in_s: float, **fields: object) -> str:
    expires = datetime.now(timezone.utc) + timedelta(seconds=expires_in_s)
    return json.dumps({"action": "unlock", "request_id": request_id, "expires": expires.isoformat(), **fields})


def test_remote_unlock_commands(broker: Broker, make_link: Callable[..., MqttLink]) -> None:
    """Every command is handed on; only a fresh, well-formed, never-seen one without a refusal."""
    topic = f"maskgate/{GATE_ID}/command"
    requests: list[RemoteRequest] = []
    with Subscriber(broker, topic, user="operator") as operator:
        operator.publish(topic, command("retained-0001", 60), retain=True)  # replayed at subscribe: must not open
        link = make_link(broker.settings(tls=True, remote_unlock=True), on_command=requests.append)
        wait_until(lambda: len(requests) >= 1, what="the retained command")
        operator.publish(topic, "", retain=True)  # clear it
        operator.publish(topic, command("too-long-0001", 10, seconds=90))  # out of range
        operator.publish(topic, "not json")
        operator.publish(topic, json.dumps({"action": "unlock", "seconds": 3}))  # no id, no expiry
        operator.publish(topic, command("request-0001", 10, seconds=3, by="alice"))
        operator.publish(topic, command("request-0001", 10, seconds=3, by="alice"))  # a repeat (or a QoS-1 redelivery)
        operator.publish(topic, command("request-0002", -1))  # expired
        operator.publish(topic, command("request-0003", 3600))  # a command valid for an hour could be replayed for an hour
        wait_until(lambda: len(requests) >= 8, what="every command")
        time.sleep(0.2)
    assert [(r.request_id, r.refusal) for r in requests] == [
        ("retained-0001", "retained"), (None, "invalid"), (None, "invalid"), (None, "invalid"),
        ("request-0001", None), ("request-0001", "replayed"), ("request-0002", "expired"), ("request-0003", "expiry_too_far"),
    ]
    accepted = requests[4]
    assert (accepted.seconds, accepted.sender) == (3, "alice")


def test_a_restarted_gate_still_refuses_a_replayed_command(broker: Broker, tmp_path: Path, outbox: Outbox) -> None:
    topic = f"maskgate/{GATE_ID}/command"
    seen = tmp_path / "remote_command_ids.json"
    payload = command("request-0001", 20, by="alice")
    outcomes: list[list[str | None]] = []
    with Subscriber(broker, topic, user="operator") as operator:
        for _run in range(2):  # the same command, to a gate and then to the same gate restarted
            requests: list[RemoteRequest] = []
            link = MqttLink(broker.settings(tls=True, remote_unlock=True), GATE_ID, outbox, password="gate-secret",
                            on_command=requests.append, seen_ids_path=seen)
            link.start()
            try:
                wait_until(lambda: link.status.connected, what="connect")
                time.sleep(0.3)  # the subscription
                operator.publish(topic, payload)
                wait_until(lambda: len(requests) == 1, what="the command")
            finally:
                link.stop()
            outcomes.append([r.refusal for r in requests])
    assert outcomes == [[None], ["replayed"]]
    assert list(json.loads(seen.read_text())) == ["request-0001"]


def test_unreadable_command_ids_are_a_warning_not_a_crash(tmp_path: Path, outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    seen = tmp_path / "remote_command_ids.json"
    seen.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="gate.mqtt"):
        MqttLink(MqttSettings(enabled=True), GATE_ID, outbox, seen_ids_path=seen)
    assert f"cannot read the remote command ids {seen}" in caplog.text


def test_remote_unlock_needs_tls_and_a_user() -> None:
    with pytest.raises(ConfigError, match=r"mqtt: .*mqtt.remote_unlock = true needs mqtt.tls.enabled = true and mqtt.username set"):
        parse_settings({"mqtt": {"remote_unlock": True, "username": "gate"}}, environ={})
    with pytest.raises(ConfigError, match="remote_unlock"):
        parse_settings({"mqtt": {"remote_unlock": True, "tls": {"enabled": True}}}, environ={})
    assert parse_settings({"mqtt": {"remote_unlock": True, "username": "gate", "tls": {"enabled": True}}}, environ={}).mqtt.remote_unlock


def test_home_assistant_discovery_is_resent_on_birth(broker: Broker, make_link: Callable[..., MqttLink]) -> None:
    with Subscriber(broker, "homeassistant/#") as sub:
        link = make_link(broker.settings(homeassistant={"enabled": True}))
        configs = sub.wait_for(lambda msgs: len(msgs) >= 4)
        topics = {m.topic for m in configs}
        assert f"homeassistant/binary_sensor/maskgate_{GATE_ID}/door/config" in topics
        door = json.loads(next(m.payload for m in configs if m.topic.endswith("/door/config")))
        assert door["availability_topic"] == AVAILABILITY and door["unique_id"] == f"maskgate_{GATE_ID}_door"
        assert link.status.connected
    with Subscriber(broker, "homeassistant/+/+/+/config") as sub, Subscriber(broker, user="operator") as ha:
        sub.wait_for(lambda msgs: len(msgs) >= 4)  # retained copies
        ha.publish("homeassistant/status", "online")
        sub.wait_for(lambda msgs: len(msgs) >= 8)


def test_read_password(tmp_path: Path) -> None:
    (tmp_path / "mqtt_password").write_text("s3cret\n")
    assert read_password(MqttSettings(password_file=tmp_path / "mqtt_password"), {}) == "s3cret"
    assert read_password(MqttSettings(password_file="%d/mqtt_password"), {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "s3cret"
    assert read_password(MqttSettings(), {"MASKGATE_MQTT_PASSWORD": "from-env"}) == "from-env"
    assert read_password(MqttSettings(), {}) is None
    (tmp_path / "blank").write_text("\n")  # the unit's SetCredential= default
    assert read_password(MqttSettings(password_file=tmp_path / "blank"), {"MASKGATE_MQTT_PASSWORD": "env"}) == "env"
    assert read_password(MqttSettings(password_file=tmp_path / "blank"), {}) is None
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY"):
        read_password(MqttSettings(password_file="%d/mqtt_password"), {})
    with pytest.raises(ConfigError, match="missing"):
        read_password(MqttSettings(password_file=tmp_path / "missing"), {})
