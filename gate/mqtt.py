"""MQTT link: availability, retained state, events from the outbox (at-least-once), health,
optional remote unlock and Home Assistant discovery. paho-mqtt 2.x, MQTT 5.

Topics, under ``<topic_prefix>/<gate_id>/``:

* ``availability`` — retained ``online``; the broker publishes ``offline`` (last will) if we vanish
* ``state``        — retained QoS 1 JSON from :meth:`MqttLink.publish_state` (a :class:`gate.dashboard.DashboardState`):
  every state handed in is published, in order; after a (re)connect the newest goes out *before* ``online``
* ``events``       — QoS 1, not retained: one ``maskgate.event/1`` JSON per decision
* ``health``       — QoS 0, periodic JSON from :meth:`MqttLink.publish_health` plus outbox stats
* ``command``      — subscribed only with ``remote_unlock`` (which needs TLS and a user name):
  ``{"action": "unlock", "request_id": "…", "expires": "<UTC ISO-8601>", "seconds": 5, "by": "alice"}``

Every command that arrives is handed on as a :class:`RemoteRequest`, refused or not: a retained,
malformed, expired (or expiring more than ``command_max_ttl_s`` ahead) or repeated
(``request_id`` already seen) one carries its refusal, and so does every command while the gate's
clock is not synchronised (an expiry cannot be checked on a clock that may be months off), so the daemon records it as an event
instead of moving the door. A QoS-1 redelivery is a repeated id: it unlocks once. The ids are
kept until their commands expire, in ``seen_ids_path`` too (written before the door moves), so
a restarted gate still refuses a replay.

Delivery is **at-least-once**: an event leaves the outbox only when the broker's PUBACK for it
arrives (a failed PUBACK reason, e.g. an ACL refusal, keeps it). After a reconnect every
unacknowledged event is published again from the oldest, so a consumer may see an event twice
and must de-duplicate by ``event_id`` (and order by ``seq``).

Each connection attempt uses a fresh paho client driven by our own thread (``client.loop()``),
so no message survives in paho's internal queue across connections: the outbox is the only
queue, which keeps ordering simple. Retries go on forever with exponential backoff; a refused
login or an untrusted certificate is logged as an ERROR naming the broker and user, and shows
in :attr:`MqttLink.status` — the door stays fail-secure and events wait in the outbox.

The broker's ACL for the gate's user is produced by :func:`broker_acl` (tested against mosquitto).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from gate.clock import SystemClock, WallClock
from gate.credentials import read_secret
from gate.dashboard import discovery_entities, stopped_state
from gate.errors import ConfigError, StorageFullError
from gate.events import utc_iso
from gate.outbox import Outbox
from gate.settings import MqttSettings, Settings, TlsSettings

log = logging.getLogger(__name__)

LOOP_TIMEOUT_S = 0.1
POLL_OUTBOX_S = 5.0  # also look at the outbox without notify(), e.g. events recorded by another process
STOP_FLUSH_S = 2.0
LOGIN_REFUSALS = {134, 135, 140}  # bad user name or password, not authorized, bad authentication method
SEEN_IDS_FILE = "remote_command_ids.json"  # in gate.state_dir
MAX_REMEMBERED_IDS = 10_000  # request ids kept until their commands expire; the oldest go first beyond this
RELEASE_PUBLISH_TIMEOUT_S = 2.0  # `door release` waits at most this long for the broker, after the relay moved
MAX_QUEUED_STATES = 100  # states waiting for the MQTT thread; beyond this the oldest go (the newest always stays)


@dataclass(frozen=True)
class LinkStatus:
    connected: bool
    last_error: str | None
    connects: int  # successful connections since start


class UnlockCommand(BaseModel):
    """A remote unlock request (JSON on the command topic)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["unlock"]
    request_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{8,64}$", description="Unique per request (a uuid4): a repeated id is refused")
    expires: AwareDatetime = Field(description="After this instant the command is refused (UTC ISO-8601)")
    seconds: float | None = Field(None, gt=0, le=60, description="Unlock time; default door.unlock_s")
    by: str | None = Field(None, min_length=1, max_length=64, description="Who sent it (the operator or tool), for the record")


CommandRefusal = Literal["invalid", "retained", "expired", "expiry_too_far", "replayed", "clock_unsynced"]


@dataclass(frozen=True)
class RemoteRequest:
    """A command as it arrived: what it asked for and, if it must not reach the door, why."""

    command: UnlockCommand | None  # None when the payload is not a valid command
    refusal: CommandRefusal | None

    @property
    def request_id(self) -> str | None:
        return self.command.request_id if self.command else None

    @property
    def sender(self) -> str | None:
        return self.command.by if self.command else None

    @property
    def seconds(self) -> float | None:
        return self.command.seconds if self.command else None


@dataclass(frozen=True)
class Topics:
    availability: str
    state: str
    events: str
    health: str
    command: str

    @classmethod
    def of(cls, settings: MqttSettings, gate_id: str) -> Topics:
        base = f"{settings.topic_prefix.rstrip('/')}/{gate_id}"
        return cls(*(f"{base}/{name}" for name in ("availability", "state", "events", "health", "command")))


def read_password(settings: MqttSettings, environ: Mapping[str, str] | None = None) -> str | None:
    """The broker password from ``password_file`` or the ``password_env`` variable (see :mod:`gate.credentials`)."""
    return read_secret("mqtt.password_file", settings.password_file, settings.password_env, environ)


def ha_node_id(gate_id: str) -> str:
    return f"maskgate_{gate_id}"


def broker_acl(settings: MqttSettings, gate_id: str, username: str) -> str:
    """The mosquitto ACL lines the gate's user needs (least privilege: it cannot command itself)."""
    topics = Topics.of(settings, gate_id)
    lines = [f"user {username}"]
    lines += [f"topic write {t}" for t in (topics.availability, topics.state, topics.events, topics.health)]
    if settings.remote_unlock:
        lines.append(f"topic read {topics.command}")
    if settings.homeassistant.enabled:
        prefix = settings.homeassistant.discovery_prefix
        lines += [f"topic write {prefix}/+/{ha_node_id(gate_id)}/+/config", f"topic read {prefix}/status"]
    return "\n".join(lines) + "\n"


def discovery_messages(settings: MqttSettings, gate_id: str) -> list[tuple[str, str]]:
    """Home Assistant discovery configs (:func:`gate.dashboard.discovery_entities`), one device,
    every entity tied to the availability topic and subscribed at QoS 1."""
    topics = Topics.of(settings, gate_id)
    node = ha_node_id(gate_id)
    common = {
        "availability_topic": topics.availability,
        "device": {"identifiers": [node], "name": f"maskgate {gate_id}", "manufacturer": "maskgate", "model": "face-mask gate"},
    }
    entities = discovery_entities(topics.state, topics.events)
    prefix = settings.homeassistant.discovery_prefix
    return [(f"{prefix}/{component}/{node}/{object_id}/config",
             json.dumps({**config, **common, "unique_id": f"{node}_{object_id}"}, sort_keys=True))
            for (component, object_id), config in entities.items()]


def _tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """Load CA and client certificate once, so a bad file is a ConfigError at start, not a retry loop."""
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, key)
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(f"mqtt.tls.{key}: cannot read {path}")
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    except ssl.SSLError as exc:
        raise ConfigError(f"mqtt.tls: ca_file/cert_file/key_file are not a valid PEM certificate and matching key ({exc.reason or exc})") from exc
    except OSError as exc:
        raise ConfigError(f"mqtt.tls: cannot read {exc.filename or 'a certificate file'} ({exc.strerror or exc})") from exc
    if tls.insecure:
        log.warning("mqtt.tls.insecure: the broker's host name is NOT verified (testing only)")
        context.check_hostname = False
    return context


def _client(settings: MqttSettings, client_id: str, password: str | None, tls: ssl.SSLContext | None) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    if settings.username:
        client.username_pw_set(settings.username, password)
    if tls is not None:
        client.tls_set_context(tls)
        if settings.tls.insecure:
            client.tls_insecure_set(True)
    return client


def publish_retained_once(settings: MqttSettings, gate_id: str, topic: str, payload: str, *, password: str | None, timeout_s: float) -> str | None:
    """Connect, publish one retained QoS-1 message and wait for the broker's PUBACK, all within
    ``timeout_s``; for ``gate-cli door release``, after the daemon is gone. Returns None when the
    broker acknowledged it, else why not (one line). No last will and no ``online``: this is not the gate."""
    deadline = time.monotonic() + timeout_s
    refused: list[str] = []
    try:
        client = _client(settings, f"{settings.client_id or f'maskgate-{gate_id}'}-release", password,
                         _tls_context(settings.tls) if settings.tls.enabled else None)
        client.connect_timeout = timeout_s
        client.on_connect = lambda c, u, f, reason, p: refused.append(str(reason).lower()) if reason.is_failure else None
        client.connect(settings.host, settings.port, keepalive=max(5, int(timeout_s) + 1), clean_start=True)
    except (ConfigError, OSError, ssl.SSLError) as exc:
        return f"MQTT broker {settings.host}:{settings.port} is unreachable: {getattr(exc, 'strerror', None) or exc}"
    try:
        info = client.publish(topic, payload, qos=1, retain=True)  # sent once the broker accepts the connection
        while not info.is_published() and not refused and time.monotonic() < deadline:
            if client.loop(timeout=LOOP_TIMEOUT_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        if info.is_published():
            return None
        if refused:
            return f"MQTT broker {settings.host}:{settings.port} refused the connection: {refused[0]}"
        return f"MQTT broker {settings.host}:{settings.port} did not acknowledge within {timeout_s:g} s"
    finally:
        client.disconnect()


def announce_door_released(settings: Settings, timeout_s: float = RELEASE_PUBLISH_TIMEOUT_S) -> str | None:
    """After ``gate-cli door release`` drove the relay inactive (call it only then: it never delays
    the release): publish the retained state "locked, stopped" with the lifetime counters, so a
    dashboard does not keep a dead gate's "unlocked". Returns why it could not (None: published or
    MQTT off); never raises."""
    if not settings.mqtt.enabled:
        return None
    try:
        payload = json.dumps(stopped_state(settings.gate.state_dir).payload(), sort_keys=True)
        return publish_retained_once(settings.mqtt, settings.gate.id, Topics.of(settings.mqtt, settings.gate.id).state, payload,
                                     password=read_password(settings.mqtt), timeout_s=timeout_s)
    except Exception as exc:  # the relay is released already; this is only news for dashboards
        return f"{type(exc).__name__}: {exc}"


class MqttLink:
    """Owns one background thread that connects, publishes and drains the outbox."""

    def __init__(self, settings: MqttSettings, gate_id: str, outbox: Outbox, *, password: str | None = None,
                 on_command: Callable[[RemoteRequest], None] | None = None, window: int = 10,
                 seen_ids_path: Path | None = None, clock: WallClock | None = None) -> None:
        self._settings = settings
        self._clock = clock or SystemClock("always")
        self._said_unsynced = False
        self._gate_id = gate_id
        self._outbox = outbox
        self._password = password
        self._window = window
        #: Called from the MQTT thread with every command that arrives, refused or not (remote_unlock only).
        self.on_command = on_command
        self._seen_ids_path = seen_ids_path
        self._seen_ids: dict[str, datetime] = self._load_seen_ids()  # request id -> its expiry, in arrival order
        self.topics = Topics.of(settings, gate_id)
        self._address = f"{settings.host}:{settings.port}"
        self._tls = _tls_context(settings.tls) if settings.tls.enabled else None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False
        self._last_error: str | None = None
        self._connects = 0
        self._session_broken = False
        self._inflight: dict[int, str] = {}  # paho mid -> event_id, for this connection only
        self._state: str | None = None  # the newest state, re-published after every reconnect
        self._queued_states: list[str] = []  # every state not yet handed to paho, oldest first
        self._health: str | None = None

    # -- public ------------------------------------------------------------------------------

    @property
    def status(self) -> LinkStatus:
        with self._lock:
            return LinkStatus(self._connected, self._last_error, self._connects)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline``, disconnect cleanly and end the thread."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None

    def notify(self) -> None:
        """A new event is in the outbox: publish it now rather than at the next poll."""
        self._wake.set()

    def publish_state(self, state: Mapping[str, Any]) -> None:
        """Retained state, QoS 1. Each one is published, in order (a relock between two grants
        shows); while disconnected only the newest is kept, and it goes out before ``online``."""
        payload = json.dumps(dict(state), sort_keys=True, default=str)
        with self._lock:
            self._state = payload
            if self._connected:
                self._queued_states = [*self._queued_states[-(MAX_QUEUED_STATES - 1):], payload]
        self._wake.set()

    def publish_health(self, health: Mapping[str, Any]) -> None:
        """One health message (dropped when not connected: the next one is fresher)."""
        payload = {**health, "outbox": self._outbox.stats(), "time": utc_iso()}
        with self._lock:
            self._health = json.dumps(payload, sort_keys=True, default=str)
        self._wake.set()

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self._settings.reconnect_min_s
        while not self._stopping.is_set():
            try:
                connected = self._session()
            except Exception as exc:  # never let the thread die: the outbox would silently grow
                log.exception("MQTT link error")
                self._fail(f"MQTT link error: {type(exc).__name__}: {exc}")
                connected = False
            if connected:
                delay = self._settings.reconnect_min_s
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, self._settings.reconnect_max_s)

    def _new_client(self) -> paho.Client:
        client = _client(self._settings, self._settings.client_id or f"maskgate-{self._gate_id}", self._password, self._tls)
        client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _session(self) -> bool:
        """One connection, from connect to loss (or stop). True if the broker accepted us."""
        client = self._new_client()
        self._inflight.clear()
        self._session_broken = False
        try:
            client.connect(self._settings.host, self._settings.port, keepalive=self._settings.keepalive_s, clean_start=True)
        except ssl.SSLCertVerificationError as exc:
            ca = self._settings.tls.ca_file or "the system CAs"
            self._fail(f"MQTT broker {self._address}: TLS certificate not trusted ({exc.verify_message}); check mqtt.tls.ca_file ({ca})")
            return False
        except ssl.SSLError as exc:
            self._fail(f"MQTT broker {self._address}: TLS handshake failed ({exc.reason or exc})")
            return False
        except OSError as exc:
            self._fail(f"MQTT broker {self._address} is unreachable: {exc.strerror or exc}")
            return False
        accepted = False
        deadline = next_poll = time.monotonic() + self._settings.keepalive_s
        while not self._stopping.is_set() and not self._session_broken:
            if client.loop(timeout=LOOP_TIMEOUT_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            if self.status.connected:
                accepted = True
                if time.monotonic() >= next_poll:
                    self._wake.set()
                    next_poll = time.monotonic() + POLL_OUTBOX_S
                self._pump(client)
            elif time.monotonic() > deadline:
                self._fail(f"MQTT broker {self._address} did not answer the connect within {self._settings.keepalive_s} s")
                break
        if self._stopping.is_set() and self.status.connected:
            self._say_goodbye(client)
        with self._lock:
            self._connected = False  # before disconnect(): our own disconnect is not a "lost connection"
        client.disconnect()
        return accepted and not self._session_broken  # a refused event keeps the backoff growing

    def _say_goodbye(self, client: paho.Client) -> None:
        """The last states (the door locked by the stop), then ``offline``."""
        self._publish_queued_states(client)
        info = client.publish(self.topics.availability, "offline", qos=1, retain=True)
        deadline = time.monotonic() + STOP_FLUSH_S
        while not info.is_published() and time.monotonic() < deadline:
            if client.loop(timeout=LOOP_TIMEOUT_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        log.info("MQTT link stopped (availability offline)")

    def _pump(self, client: paho.Client) -> None:
        """Publish what the other threads left for us, then fill the in-flight window from the outbox."""
        self._publish_queued_states(client)
        with self._lock:
            health, self._health = self._health, None
        if health is not None:
            client.publish(self.topics.health, health, qos=0)
        if not self._wake.is_set() or len(self._inflight) >= self._window:
            return
        self._wake.clear()
        inflight = set(self._inflight.values())
        for event in self._outbox.pending(limit=self._window):
            if event.event_id in inflight:
                continue
            if len(self._inflight) >= self._window:
                break
            info = client.publish(self.topics.events, event.to_json(), qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._wake.set()
                break
            self._inflight[info.mid] = event.event_id

    def _publish_queued_states(self, client: paho.Client) -> None:
        with self._lock:
            states, self._queued_states = self._queued_states, []
        for state in states:
            client.publish(self.topics.state, state, qos=1, retain=True)

    def _fail(self, message: str) -> None:
        with self._lock:
            repeated = message == self._last_error
            self._last_error = message
        if repeated:
            log.debug("%s (again)", message)
        else:
            log.error("%s", message)

    # -- paho callbacks (run in our thread, inside client.loop) -------------------------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            if reason.value in LOGIN_REFUSALS:
                self._fail(f"MQTT broker {self._address} refused the login for user {self._settings.username!r}: {str(reason).lower()}")
            else:
                self._fail(f"MQTT broker {self._address} refused the connection: {str(reason).lower()}")
            return
        with self._lock:
            self._connected = True
            self._last_error = None
            self._connects += 1
            state, self._queued_states = self._state, []
            self._health = None  # stale by now
        log.info("MQTT connected to %s as %r", self._address, self._settings.username)
        if state is not None:  # before "online": a dashboard never shows the previous run's state as current
            client.publish(self.topics.state, state, qos=1, retain=True)
        client.publish(self.topics.availability, "online", qos=1, retain=True)
        if self._settings.remote_unlock:
            client.subscribe(self.topics.command, qos=1)
        if self._settings.homeassistant.enabled:
            client.subscribe(f"{self._settings.homeassistant.discovery_prefix}/status", qos=1)
            self._publish_discovery(client)
        self._wake.set()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        if self.status.connected and not self._stopping.is_set():  # the reason first, so status is never "down, no error"
            self._fail(f"MQTT connection to {self._address} lost ({str(reason).lower()}); {len(self._inflight)} event(s) unacknowledged will be re-sent")
        with self._lock:
            self._connected = False

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
        event_id = self._inflight.pop(mid, None)
        if event_id is None:
            return
        if reason.is_failure:
            self._fail(f"MQTT broker {self._address} rejected an event on {self.topics.events}: {str(reason).lower()} "
                       f"(does the ACL let user {self._settings.username!r} write it?)")
            self._session_broken = True  # reconnect after a backoff instead of hammering the broker
            return
        try:
            self._outbox.mark_sent(event_id)
        except StorageFullError as exc:  # it stays in the outbox: re-sent (a duplicate) once the disk takes writes
            self._fail(f"cannot mark an acknowledged event as sent: {exc}")
            self._session_broken = True  # back off instead of re-sending it in a tight loop
            return
        self._wake.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == self.topics.command:
            self._handle_command(message)
        elif message.payload == b"online":  # Home Assistant restarted: it forgot non-retained config
            self._publish_discovery(client)

    def _handle_command(self, message: paho.MQTTMessage) -> None:
        if not message.payload:  # clearing a retained message on the topic: not a command
            return
        request = self._check_command(message)
        if request.refusal is None:
            log.info("remote command %s from %s: unlock", request.request_id, request.sender or "(unnamed)")
        else:
            log.warning("refused a remote command on %s (%s): %s", message.topic, request.request_id or "no valid request id", request.refusal)
        if self.on_command is not None:
            try:
                self.on_command(request)
            except Exception:
                log.exception("remote command handler failed")

    def _check_command(self, message: paho.MQTTMessage) -> RemoteRequest:
        """Parse and vet one command: a retained, malformed, stale or repeated one is refused."""
        try:
            command = UnlockCommand.model_validate_json(message.payload)
        except ValidationError as exc:
            log.warning("invalid command on %s: %s", message.topic, exc.errors(include_url=False)[0]["msg"])
            return RemoteRequest(None, "retained" if message.retain else "invalid")
        if message.retain:  # a stale retained "unlock" would open the door at every reconnect
            return RemoteRequest(command, "retained")
        if not self._clock.synchronised():
            if not self._said_unsynced:
                log.warning("remote unlock refused until the clock is synchronised (no NTP sync since boot: a command's expiry cannot be checked)")
                self._said_unsynced = True
            return RemoteRequest(command, "clock_unsynced")
        now = self._clock.now()
        for request_id in [i for i, expiry in self._seen_ids.items() if expiry < now]:
            del self._seen_ids[request_id]
        if command.request_id in self._seen_ids:
            return RemoteRequest(command, "replayed")
        self._seen_ids[command.request_id] = command.expires
        while len(self._seen_ids) > MAX_REMEMBERED_IDS:
            del self._seen_ids[next(iter(self._seen_ids))]
        self._save_seen_ids()
        if command.expires <= now:
            return RemoteRequest(command, "expired")
        if (command.expires - now).total_seconds() > self._settings.command_max_ttl_s:
            return RemoteRequest(command, "expiry_too_far")
        return RemoteRequest(command, None)

    def _load_seen_ids(self) -> dict[str, datetime]:
        """The request ids a previous run saw whose commands have not expired yet."""
        if self._seen_ids_path is None or not self._seen_ids_path.exists():
            return {}
        now = datetime.now(timezone.utc)
        try:
            stored = json.loads(self._seen_ids_path.read_text(encoding="utf-8"))
            seen = {str(i): datetime.fromisoformat(e) for i, e in stored.items()}
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            log.warning("cannot read the remote command ids %s (%s): replays of commands sent before this start are "
                        "stopped by their expiry only", self._seen_ids_path, exc)
            return {}
        return {i: e for i, e in seen.items() if e.tzinfo is not None and e >= now}

    def _save_seen_ids(self) -> None:
        """Durably, before the command goes on to the door (a power cut must not make it new again)."""
        if self._seen_ids_path is None:
            return
        temporary = self._seen_ids_path.with_name(self._seen_ids_path.name + ".tmp")
        try:
            with open(temporary, "w", encoding="utf-8") as file:
                json.dump({i: e.isoformat() for i, e in self._seen_ids.items()}, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self._seen_ids_path)
        except OSError as exc:  # the in-memory ids still stop replays while this process lives
            log.error("cannot write the remote command ids %s: %s", self._seen_ids_path, exc)

    def _publish_discovery(self, client: paho.Client) -> None:
        for topic, payload in discovery_messages(self._settings, self._gate_id):
            client.publish(topic, payload, qos=1, retain=True)
