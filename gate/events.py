"""The versioned event a gate publishes for every decision: ``maskgate.event/1``.

Consumers rely on two fields: ``event_id`` to de-duplicate (delivery is at-least-once) and
``seq`` to order (it grows by one per event of a gate and survives restarts). ``time`` is the
gate's wall clock, which may be wrong after a boot without network (a Pi has no real-time clock):
``clock_synced`` is false then (see :mod:`gate.clock`), and only ``seq`` says the order. From events alone
a consumer can tell every time the relay moved and why: ``verdict`` is ``grant`` only if the relay
was energised, ``relay`` says what the event did to it, and ``reason`` is one of :data:`Reason`. The JSON Schema
is committed as ``gate/event.schema.json``; regenerate it with ``python -m gate.events``.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

if TYPE_CHECKING:
    from gate.policy import Decision

SCHEMA_VERSION = "maskgate.event/1"

Source = Literal["camera", "exit_button", "remote"]
Verdict = Literal["grant", "deny"]
#: Every ``reason`` an event can carry (the schema lists them; README "Event reasons").
Reason = Literal[
    # the camera's decisions (gate.policy): grants, denies, and observe mode's reports
    "all_masked", "any_masked", "no_mask", "incorrect_mask", "undecided",
    "observed_all_masked", "observed_no_mask", "observed_incorrect_mask", "observed_undecided",
    # manual grants: the request-to-exit button, a remote command
    "exit_button", "remote",
    # a grant the door refused (fault raised, or shutting down): the verdict is deny
    "camera_refused_fault", "camera_refused_closed",
    "exit_button_refused_fault", "exit_button_refused_closed",
    "remote_refused_fault", "remote_refused_closed",
    # a remote command refused before it reached the door
    "remote_refused_invalid", "remote_refused_retained", "remote_refused_expired",
    "remote_refused_expiry_too_far", "remote_refused_replayed", "remote_refused_clock_unsynced",
]
#: What the event did to the relay: energised (a grant, or one extending a running grant),
#: released (a deny that cut a running grant short), unchanged (anything else).
Relay = Literal["energised", "released", "unchanged"]


def utc_iso(when: datetime | None = None) -> str:
    """The one time format of everything the gate publishes: ISO 8601, UTC, milliseconds, ``Z``
    (``2026-12-03T07:00:00.000Z``); ``when`` defaults to now."""
    when = datetime.now(timezone.utc) if when is None else when.astimezone(timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FaceRecord(BaseModel):
    """One face behind a decision: where it was, what the classifier said."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True)

    box: Annotated[list[int], Field(min_length=4, max_length=4, description="[x, y, w, h] in frame pixels")]
    label: str = Field(description="Top class: with_mask, without_mask or incorrect_mask")
    scores: dict[str, float] = Field(description="Probability of every class")
    track_id: int | None = Field(None, description="Tracker id of this face (None when untracked)")


class EventDraft(BaseModel):
    """Everything about an event except its ``seq``, which the outbox assigns when it stores it."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True)

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()), description="Unique id (uuid4): de-duplicate on it")
    gate_id: str = Field(description="The gate that decided")
    time: datetime = Field(default_factory=lambda: datetime.now(timezone.utc), description="When the decision was made, UTC ISO-8601 ending in Z", json_schema_extra={"format": "date-time"})
    verdict: Verdict = Field(description="grant only if the relay was energised; anything else is deny")
    reason: Reason = Field(description="Why: the policy's rule outcome, the manual request, or the refusal (see README, Event reasons)")
    faces: list[FaceRecord] = Field(default_factory=list)
    model_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the classifier model that decided")
    latency_ms: float | None = Field(None, ge=0, description="From the first frame showing the face to this event")
    source: Source = Field("camera", description="camera decision, request-to-exit button, or remote command")
    relay: Relay = Field("unchanged", description="What this event did to the relay: energised, released (a deny cut a grant short) or unchanged")
    unlock_s: float | None = Field(None, gt=0, description="With relay 'energised': for how long, from this event")
    request_id: str | None = Field(None, max_length=64, description="A remote command's request id")
    sender: str | None = Field(None, max_length=128, description="Who or what asked, where known: the command's 'by', or the exit button's pin")

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry a time zone")
        return value.astimezone(timezone.utc)

    @field_serializer("time")
    def _iso_z(self, value: datetime) -> str:
        return utc_iso(value)

    @classmethod
    def from_decision(cls, decision: Decision, *, gate_id: str, model_sha256: str | None, now: float | None = None) -> EventDraft:
        """The draft for a camera decision.

        ``decision.first_seen`` is on the monotonic clock (frame timestamps), so the latency is
        ``now - first_seen``: the time to a consistent verdict plus the processing after it.
        """
        now = time.monotonic() if now is None else now
        faces = [
            FaceRecord(box=face.detection.box.as_list(), label=face.classification.label,
                       scores={k: round(float(v), 4) for k, v in face.classification.scores.items()},
                       track_id=track_id)
            for face, track_id in zip(decision.faces, _padded(decision.track_ids, len(decision.faces)))
        ]
        return cls(gate_id=gate_id, verdict=decision.verdict, reason=decision.reason, faces=faces,
                   model_sha256=model_sha256, latency_ms=round(max(0.0, now - decision.first_seen) * 1000, 1))

    def refused(self, refusal: str) -> EventDraft:
        """This request, turned into the deny its refusal makes of it (``<source>_refused_<refusal>``)."""
        return self._changed(verdict="deny", reason=f"{self.source}_refused_{refusal}", relay="unchanged", unlock_s=None)

    def with_relay(self, relay: Relay, unlock_s: float | None = None) -> EventDraft:
        """This event, saying what it does to the relay (known only under the door's lock)."""
        return self._changed(relay=relay, unlock_s=unlock_s)

    def _changed(self, **changes: object) -> EventDraft:
        return EventDraft.model_validate({**self.model_dump(), **changes})  # validated, unlike model_copy

    def numbered(self, seq: int, clock_synced: bool = True) -> Event:
        return Event(seq=seq, clock_synced=clock_synced, **self.model_dump())


class Event(EventDraft):
    """A stored, numbered event: what goes on the wire."""

    schema_version: Literal["maskgate.event/1"] = Field(SCHEMA_VERSION, description="Bumped on incompatible changes")
    seq: int = Field(ge=1, description="Per-gate sequence number, +1 per event, persistent across restarts")
    clock_synced: bool = Field(True, description="False when the gate's clock was not yet synchronised (no NTP since boot): `time` may be off by months; order by seq")

    def to_json(self) -> str:
        return self.model_dump_json()


def _padded(track_ids: tuple[int, ...], n: int) -> list[int | None]:
    return list(track_ids[:n]) + [None] * (n - len(track_ids))


def json_schema() -> str:
    """The committed ``gate/event.schema.json`` text."""
    return json.dumps(Event.model_json_schema(mode="serialization"), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(json_schema(), end="")
