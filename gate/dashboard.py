"""What building dashboards see: the gate's retained ``state`` message, its lifetime counters,
and the Home Assistant entities that read them.

The state is one :class:`DashboardState`, complete every time (every key a discovery template
reads is always there, so Home Assistant never logs a template warning), published retained at
QoS 1 whenever it changes: each relay move (the door's ``on_change``, so a relock shows at once),
each decision, a fault raised or cleared, the camera's or the model's health. Nothing waits for
a timer. A fresh state goes out before ``online`` (see :class:`gate.mqtt.MqttLink`), so a
dashboard never shows a previous run's "unlocked" as current.

``grants`` and ``denies`` count every decision since the gate was installed: they are kept in
``<state_dir>/dashboard.json`` (written before the state is published) and survive restarts,
so Home Assistant's ``total_increasing`` sensors never see a false meter reset.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gate.events import Event, utc_iso

log = logging.getLogger(__name__)

COUNTERS_FILE = "dashboard.json"  # in gate.state_dir

Phase = Literal["starting", "running", "stopped"]
Health = Literal["ok", "starting", "degraded", "fault", "stopped"]


class LastDecision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: str
    reason: str
    source: str
    time: str = Field(description="The event's time, ISO 8601 UTC ending in Z")
    seq: int


class Counters(BaseModel):
    """What survives a restart: the lifetime counters and the decision behind the last change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grants: int = Field(0, ge=0)
    denies: int = Field(0, ge=0)
    last_decision: LastDecision | None = None


class DashboardState(BaseModel):
    """The retained state payload (plus ``time``, when it was published)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    door: Literal["locked", "unlocked", "fault"] = Field("locked", description="The relay: unlocked while energised; fault = released and refusing grants")
    phase: Phase = "starting"
    fault: str | None = Field(None, description="Why the door is held locked (camera, model), or null")
    camera: str = Field("not open", description="The camera's state: starting, ok, failed, ended, not open")
    model: dict[str, Any] = Field(default_factory=lambda: {"ok": None}, description="ok, and sha256/preset or error")
    outbox: dict[str, int] = Field(default_factory=lambda: {"pending": 0, "dropped": 0})
    grants: int = 0
    denies: int = 0
    last_decision: LastDecision | None = None

    @property
    def health(self) -> Health:
        """One word for the health sensor: fault wins, then the phase, then the camera."""
        if self.fault is not None:
            return "fault"
        if self.phase != "running":
            return self.phase
        return "ok" if self.camera in ("ok", "starting") else "degraded"

    def payload(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "health": self.health, "time": utc_iso()}

    def changed(self, **changes: Any) -> DashboardState:
        return DashboardState.model_validate({**self.model_dump(), **changes})


def load_counters(state_dir: Path) -> Counters:
    """The counters a previous run left; zero (with a warning) when the file is unreadable."""
    path = state_dir / COUNTERS_FILE
    if not path.exists():
        return Counters()
    try:
        return Counters.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        log.warning("cannot read the dashboard counters %s (%s): grants and denies start again at 0", path, str(exc).splitlines()[0])
        return Counters()


def save_counters(state_dir: Path, counters: Counters) -> None:
    """Atomically and durably (a power cut must not turn the counters back)."""
    path = state_dir / COUNTERS_FILE
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(counters.model_dump_json())
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


class Dashboard:
    """Keeps the current :class:`DashboardState` and hands every change to ``publish`` (the MQTT link's
    ``publish_state``, or nothing without a broker). Thread-safe; it never calls into the door."""

    def __init__(self, state_dir: Path, publish: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._state_dir = state_dir
        self._publish = publish
        self._lock = threading.Lock()
        counters = load_counters(state_dir)
        self._state = DashboardState(grants=counters.grants, denies=counters.denies, last_decision=counters.last_decision)
        self._published: DashboardState | None = None
        self._save_failed = False

    @property
    def state(self) -> DashboardState:
        with self._lock:
            return self._state

    def update(self, **changes: Any) -> None:
        """Merge ``changes`` (any :class:`DashboardState` field) and publish if anything changed."""
        with self._lock:
            if self._published is not None and all(getattr(self._state, key) == value for key, value in changes.items()):
                return  # the loop calls this every frame: no work when nothing changed
            self._state = self._state.changed(**changes)
            self._publish_if_changed()

    def door_changed(self, door: str, fault: str | None) -> None:
        """The door's ``on_change`` hook: every relay move and fault, in order."""
        self.update(door=door, fault=fault)

    def count(self, event: Event) -> None:
        """One more decision: counted, saved to the state folder, then published."""
        last = LastDecision(verdict=event.verdict, reason=event.reason, source=event.source, time=utc_iso(event.time), seq=event.seq)
        with self._lock:
            verdict = "grants" if event.verdict == "grant" else "denies"
            self._state = self._state.changed(**{verdict: getattr(self._state, verdict) + 1}, last_decision=last)
            counters = Counters(grants=self._state.grants, denies=self._state.denies, last_decision=last)
            try:
                save_counters(self._state_dir, counters)
                self._save_failed = False
            except OSError as exc:  # keep counting in memory; say so once per failure streak
                if not self._save_failed:
                    log.error("cannot save the dashboard counters in %s: %s", self._state_dir, exc)
                self._save_failed = True
            self._publish_if_changed()

    def _publish_if_changed(self) -> None:
        if self._state == self._published:
            return
        self._published = self._state
        if self._publish is not None:
            self._publish(self._state.payload())


def stopped_state(state_dir: Path) -> DashboardState:
    """What ``gate-cli door release`` announces after the daemon is gone: relay released, the
    lifetime counters as the daemon left them."""
    counters = load_counters(state_dir)
    return DashboardState(door="locked", phase="stopped", camera="not open", grants=counters.grants, denies=counters.denies,
                          last_decision=counters.last_decision)


def discovery_entities(state_topic: str, events_topic: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Home Assistant entity configs (without device and availability) by (component, object id).

    Templates read only keys every state payload carries (see :class:`DashboardState`); a test
    checks that.
    """
    state = {"state_topic": state_topic, "qos": 1}
    return {
        ("binary_sensor", "door"): {**state, "name": "Door", "device_class": "lock",
                                    "value_template": "{{ 'ON' if value_json.door == 'unlocked' else 'OFF' }}"},
        ("binary_sensor", "problem"): {**state, "name": "Problem", "device_class": "problem", "entity_category": "diagnostic",
                                       "value_template": "{{ 'OFF' if value_json.fault is none else 'ON' }}",
                                       "json_attributes_topic": state_topic,
                                       "json_attributes_template": "{{ {'reason': value_json.fault} | tojson }}"},
        ("sensor", "health"): {**state, "name": "Health", "icon": "mdi:heart-pulse", "entity_category": "diagnostic",
                               "value_template": "{{ value_json.health }}",
                               "json_attributes_topic": state_topic,
                               "json_attributes_template": "{{ {'camera': value_json.camera, 'model': value_json.model, "
                                                           "'outbox': value_json.outbox, 'phase': value_json.phase} | tojson }}"},
        ("sensor", "grants"): {**state, "name": "Grants", "icon": "mdi:door-open",
                               "value_template": "{{ value_json.grants }}", "state_class": "total_increasing"},
        ("sensor", "denies"): {**state, "name": "Denies", "icon": "mdi:door-closed-lock",
                               "value_template": "{{ value_json.denies }}", "state_class": "total_increasing"},
        ("sensor", "last_decision"): {"state_topic": events_topic, "qos": 1, "name": "Last decision", "icon": "mdi:face-mask",
                                      "value_template": "{{ value_json.verdict }}", "json_attributes_topic": events_topic,
                                      "json_attributes_template": "{{ {'reason': value_json.reason, 'source': value_json.source, "
                                                                  "'relay': value_json.relay, 'seq': value_json.seq, 'time': value_json.time} | tojson }}"},
    }
