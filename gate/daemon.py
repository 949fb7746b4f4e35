"""The gate's main loop: frame → faces → labels → decision → relay + event.

:class:`Gate` owns one pass of that flow (:meth:`Gate.step`) and nothing else; every part
(camera, detector, classifier, policy, door, outbox, MQTT link, journal) is built elsewhere
and passed in, so tests hand it fakes or real parts without patching. :func:`serve` is the
long-running process systemd starts: it builds the parts from settings, retries the ones that
can fail at start (a missing or broken model, missing detector files) while holding the door
locked, and shuts down cleanly on SIGTERM.

Fail-secure everywhere: the relay is created released; a camera fault, a model fault, a state
folder that takes no more writes (no grant that cannot be recorded), an exception in the loop or
shutdown releases it.

Dashboards (:class:`gate.dashboard.Dashboard`) hear of every relay change from the door itself,
of decisions from :func:`publish_event`, and of the camera's and model's health from here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gate.actuators import Door, open_door
from gate.camera import FrameSource, open_camera, require_backend
from gate.classifier import MaskClassifier
from gate.clock import SystemClock
from gate.dashboard import Dashboard
from gate.vision.detector import BlazeFaceDetector, FaceDetector
from gate.errors import AssetError, ConfigError, MaskgateError, ModelError, StorageFullError
from gate.events import Event, EventDraft, utc_iso
from gate.health import MetricsServer, write_status
from gate.journal import Journal
from gate.mqtt import SEEN_IDS_FILE, MqttLink, read_password
from gate.notify import Notifier
from gate.outbox import Outbox
from gate.paths import ensure_writable_folder
from gate.policy import OBSERVED_PREFIX, Decision, DecisionPolicy, FaceObservation
from gate.preview.feed import PreviewFeed
from gate.settings import Settings
from gate.snapshots import FaceSnapshots
from gate.types import Frame

if TYPE_CHECKING:
    from gate.preview.server import PreviewServer

log = logging.getLogger(__name__)

#: How long one read waits for a frame before the loop checks the camera's health.
FRAME_WAIT_S = 0.5
#: Period of the STATUS line to systemd, the status file and the health message's local copy.
STATUS_EVERY_S = 5.0
#: While the state folder is full, how often the outbox is tried again.
STORAGE_RETRY_S = 5.0
STAGES = ("detect", "classify", "policy", "act")


@dataclass
class LoopStats:
    """Counters and smoothed per-stage latencies, for health messages and the demo summary."""

    started: float
    frames: int = 0
    faces: int = 0
    verdicts: Counter = field(default_factory=Counter)
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    last_decision: dict[str, Any] | None = None

    def record_stage(self, stage: str, seconds: float) -> None:
        ms = seconds * 1000.0
        previous = self.stage_ms[stage]
        self.stage_ms[stage] = ms if previous == 0.0 else 0.9 * previous + 0.1 * ms

    def fps(self, now: float) -> float:
        elapsed = now - self.started
        return self.frames / elapsed if elapsed > 0 else 0.0


class Gate:
    """One door: reads frames and turns them into decisions, relay actions and events."""

    def __init__(
        self,
        *,
        gate_id: str,
        camera: FrameSource,
        detector: FaceDetector,
        classifier: MaskClassifier,
        policy: DecisionPolicy,
        door: Door,
        outbox: Outbox,
        link: MqttLink | None = None,
        dashboard: Dashboard | None = None,
        journal: Journal | None = None,
        snapshots: FaceSnapshots | None = None,
        on_decision: Callable[[Decision, Event, Frame], None] | None = None,
        preview: PreviewFeed | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gate_id = gate_id
        self.camera = camera
        self.detector = detector
        self.classifier = classifier
        self.policy = policy
        self.door = door
        self.outbox = outbox
        self.link = link
        self.dashboard = dashboard
        self.journal = journal
        self.snapshots = snapshots
        self.on_decision = on_decision
        self.preview = preview
        self.clock = clock
        self.stats = LoopStats(started=clock())
        self._fault: str | None = None
        self._storage_fault: str | None = None
        self._storage_retry_at = 0.0

    # -- the flow, top to bottom -------------------------------------------------------------

    def step(self) -> Decision | None:
        """Process the newest frame, if any: returns the decision it completed, if any."""
        if self._storage_fault is not None and self.clock() >= self._storage_retry_at:
            self._retry_storage()
        frame = self.camera.read(timeout=FRAME_WAIT_S)
        if frame is None:
            status = self.camera.status
            if status.state == "failed":
                self._raise_fault(f"camera: {status.detail}")
            return None
        self.stats.frames += 1
        frame_started = self.clock()
        try:
            decision = self._decide(frame)
        except MaskgateError as exc:
            self._raise_fault(f"frame {frame.index}: {exc}")
            return None
        self._clear_fault()
        if decision is not None:
            started = self.clock()
            self._act(decision, frame, processing_s=started - frame_started)
            self.stats.record_stage("act", self.clock() - started)
        return decision

    def _decide(self, frame: Frame) -> Decision | None:
        started = self.clock()
        faces = self.detector.detect(frame.image, frame.timestamp)
        detected = self.clock()
        observations = [FaceObservation(face, self.classifier.classify(frame.image, face.box)) for face in faces]
        classified = self.clock()
        decision = self.policy.update(frame.timestamp, observations)
        self.stats.faces += len(faces)
        self.stats.record_stage("detect", detected - started)
        if faces:  # a frame without a face classifies nothing: it says nothing about the classifier's time
            self.stats.record_stage("classify", classified - detected)
        self.stats.record_stage("policy", self.clock() - classified)
        if self.preview is not None:  # hands over references and returns: a viewer never slows the door
            ignored = getattr(self.detector, "ignored", ())  # a detector without size and region filters ignores nothing
            self.preview.offer(frame, self.policy.tracked(), ignored, door=self.door.state, stage_ms=self.stats.stage_ms)
        return decision

    def _act(self, decision: Decision, frame: Frame, processing_s: float) -> None:
        """Record the event durably and move the door (see :func:`record_and_act`), then tell everyone else.

        Latency = time from the face's first frame to the deciding frame (on the frames' clock)
        + the processing of that frame.
        """
        draft = EventDraft.from_decision(decision, gate_id=self.gate_id, model_sha256=self.classifier.model_sha256, now=decision.at + processing_s)
        try:
            event = record_and_act(self.door, self.outbox, draft)
        except StorageFullError as exc:
            self.storage_failed(exc)
            return
        labels = ", ".join(f"{o.classification.label} {o.classification.confidence:.2f}" for o in decision.faces)
        publish_event(event, f"{labels}; {event.latency_ms:.0f} ms after the face appeared", self.link, self.journal, self.stats, self.dashboard)
        if self.snapshots is not None:
            self.snapshots.save(frame.image, [o.detection.box for o in decision.faces], event.event_id)
        if self.preview is not None:
            self.preview.decided(event)
        if self.on_decision is not None:
            self.on_decision(decision, event, frame)

    # -- faults: the door stays locked until frames are processed again ----------------------

    def _raise_fault(self, reason: str) -> None:
        if self._fault is None:
            log.error("%s: door held locked until frames are processed again", reason)
            self.policy.reset()
            self.detector.reset()
            self.door.fault(reason)
        self._fault = reason

    def _clear_fault(self) -> None:
        if self._fault is not None:
            log.info("recovered from: %s", self._fault)
            self._fault = None
            if self._storage_fault is None:
                self.door.clear_fault()

    def storage_failed(self, error: StorageFullError) -> None:
        """An event could not be recorded: no grant until the outbox takes writes again (retried
        every STORAGE_RETRY_S). The event was not recorded, so its grant never happened."""
        if self._storage_fault is None:
            log.error("%s: door held locked, no grant until events can be recorded again (retrying every %.0f s)", error, STORAGE_RETRY_S)
        self._storage_fault = f"state folder full: {error}"
        self._storage_retry_at = self.clock() + STORAGE_RETRY_S
        self.policy.reset()
        self.door.fault(self._storage_fault)

    def _retry_storage(self) -> None:
        if not self.outbox.writable():
            self._storage_retry_at = self.clock() + STORAGE_RETRY_S
            return
        log.info("recovered from: %s (the outbox takes writes again)", self._storage_fault)
        self._storage_fault = None
        if self._fault is None:
            self.door.clear_fault()

    @property
    def fault(self) -> str | None:
        """Why the door is held locked, if it is (a full state folder first: it outlasts a frame fault)."""
        return self._storage_fault or self._fault

    # -- reporting ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        now = self.clock()
        camera = self.camera.status
        return {
            "gate_id": self.gate_id,
            "state": "fault" if self.fault else "running",
            "fault": self.fault,
            "pid": os.getpid(),
            "uptime_s": round(now - self.stats.started, 1),
            "fps": round(self.stats.fps(now), 2),
            "frames": self.stats.frames,
            "faces": self.stats.faces,
            "stage_ms": {k: round(v, 2) for k, v in self.stats.stage_ms.items()},
            "camera": {"state": camera.state, "detail": camera.detail, "dropped": camera.dropped, "stale": camera.stale, "reopens": camera.reopens},
            "door": self.door.state,
            "decisions": dict(self.stats.verdicts),
            "last_decision": self.stats.last_decision,
            "outbox": self.outbox.stats(),
            "mqtt": dataclasses.asdict(self.link.status) if self.link is not None else {"enabled": False},
            "model_sha256": self.classifier.model_sha256,
        }


def record_and_act(door: Door, outbox: Outbox, draft: EventDraft, seconds: float | None = None) -> Event:
    """Commit the event, then move the door, both under the door's lock so the event says what the relay did.

    A grant energises the relay only if the door accepts it; a refused grant is recorded as a
    deny with the refusal's reason (``<source>_refused_<why>``). A deny releases the relay at once,
    cancelling a running grant; observe mode's reports never touch the door. If the record fails,
    the relay does not move.
    """
    recorded: list[Event] = []
    if draft.verdict == "grant":
        unlock_s = door.unlock_s if seconds is None else seconds

        def record_grant(refusal: str | None) -> None:
            recorded.append(outbox.record(draft.with_relay("energised", unlock_s) if refusal is None else draft.refused(refusal)))

        door.grant(unlock_s, record=record_grant)
    elif draft.reason.startswith(OBSERVED_PREFIX):  # observe mode reports, never signals
        recorded.append(outbox.record(draft))
    else:
        door.deny(record=lambda relocks: recorded.append(outbox.record(draft.with_relay("released" if relocks else "unchanged"))))
    return recorded[0]


def publish_event(event: Event, detail: str, link: MqttLink | None, journal: Journal | None, stats: LoopStats | None,
                  dashboard: Dashboard | None = None) -> None:
    """After the record and the relay: wake the MQTT link, count (this run's stats, the dashboards'
    lifetime counters), log and journal (camera and manual alike)."""
    if link is not None:
        link.notify()
    if stats is not None:
        stats.verdicts[event.verdict] += 1
        stats.last_decision = {"verdict": event.verdict, "reason": event.reason, "source": event.source, "time": utc_iso(event.time), "seq": event.seq}
    if dashboard is not None:
        dashboard.count(event)
    log.info(
        "decision #%d %s (%s, relay %s): %s",
        event.seq, event.verdict.upper(), event.reason, event.relay, detail,
        extra={"event_id": event.event_id, "verdict": event.verdict, "reason": event.reason, "source": event.source, "relay": event.relay},
    )
    if journal is not None:
        journal.append(event.model_dump(mode="json"))


# -- the long-running process ----------------------------------------------------------------


@contextlib.contextmanager
def shutdown_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT ask for a clean stop; a second SIGINT exits at once. Handlers restored after."""

    def ask_stop(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, ask_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def build_vision(settings: Settings) -> tuple[FaceDetector, MaskClassifier, DecisionPolicy]:
    """The parts that read model files: may raise ModelError/AssetError, which serve() retries."""
    detector = BlazeFaceDetector(settings.detector, tracking=settings.policy)
    classifier = MaskClassifier.from_settings(settings.classifier)
    policy = DecisionPolicy(settings.policy, classifier.min_confidence, door_open_s=settings.door.unlock_s)
    log.info(
        "model %s (%s, %s, classes %s, sha256 %s…)",
        settings.classifier.model, classifier.contract.preset, classifier.contract.quantization,
        ", ".join(classifier.contract.output.classes), classifier.model_sha256[:12],
    )
    return detector, classifier, policy


def _wait_for_vision(settings: Settings, door: Door, dashboard: Dashboard, notifier: Notifier, stop: threading.Event):
    """Build detector and classifier, retrying with backoff while the door stays locked."""
    delay = 1.0
    while not stop.is_set():
        try:
            return build_vision(settings)
        except (ModelError, AssetError) as exc:
            message = str(exc)
            log.error("cannot start the vision pipeline: %s (door held locked; retrying in %.0f s)", message, delay)
            dashboard.update(model={"ok": False, "error": message})
            door.fault(message)  # the door tells the dashboard (problem on, with this reason)
            notifier.status(f"FAULT: {message}")
            deadline = time.monotonic() + delay
            next_status = 0.0
            while not stop.is_set() and time.monotonic() < deadline:
                if time.monotonic() >= next_status:  # fresh, so `status` does not call it stale
                    _write_state(settings, door, "fault", fault=message)
                    next_status = time.monotonic() + STATUS_EVERY_S
                notifier.watchdog()
                stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 60.0)
    return None


@contextlib.contextmanager
def _open_outbox(settings: Settings, clock: SystemClock, door: Door, notifier: Notifier, stop: threading.Event) -> Iterator[Outbox | None]:
    """The outbox, opened once the state folder takes writes: a gate restarted on a full disk holds
    the door locked and says why (status, STATUS line) instead of exiting into a restart loop."""
    path = settings.state_path(settings.outbox.path)
    while True:
        try:
            outbox = Outbox(path, settings.outbox, clock=clock)
            break
        except StorageFullError as exc:
            if door.fault_reason is None:
                log.error("%s: door held locked until it does (retrying every %.0f s)", exc, STORAGE_RETRY_S)
                notifier.ready()  # started, in a fault: systemd must not time the start out into a restart loop
            door.fault(f"state folder full: {exc}")
            notifier.status(f"FAULT: state folder full: {exc}")
            _write_state(settings, door, "fault", fault=f"state folder full: {exc}")
            deadline = time.monotonic() + STORAGE_RETRY_S
            while not stop.is_set() and time.monotonic() < deadline:
                notifier.watchdog()
                stop.wait(1.0)
            if stop.is_set():
                yield None
                return
    door.clear_fault()
    with outbox:
        yield outbox


def serve(
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    until_camera_ends: bool = False,
    on_decision: Callable[[Decision, Event, Frame], None] | None = None,
    camera: FrameSource | None = None,
) -> dict[str, Any]:
    """Run the gate until stopped (or, for a file without loop, until it ends). Returns the last health.

    ``until_camera_ends`` makes it a finite job (the demo): nothing is retried, a model that cannot
    load raises before the door is set up and a camera that fails ends the run (health says why)."""
    stop = stop or threading.Event()
    notifier = Notifier.from_env()
    check_paths(settings)
    if camera is None:
        require_backend(settings.camera)
    vision = build_vision(settings) if until_camera_ends else None
    health: dict[str, Any] = {}
    stop_reason = "stopped"
    signals = shutdown_signals(stop) if threading.current_thread() is threading.main_thread() else contextlib.nullcontext()
    preview = _preview_server(settings)
    clock = SystemClock(settings.gate.trust_clock)
    with signals, preview or contextlib.nullcontext(), open_door(settings.door) as door, _open_outbox(settings, clock, door, notifier, stop) as outbox:
        if outbox is None:  # stopped while the state folder was full
            return health
        if not clock.synchronised():  # said once the door is up: a settings error stays one line
            log.warning("wall clock not synchronised yet (no NTP since boot?): events say clock_synced = false until it is%s",
                        "; remote unlock refused until then" if settings.mqtt.remote_unlock else "")
        link = (
            MqttLink(settings.mqtt, settings.gate.id, outbox, password=read_password(settings.mqtt),
                     seen_ids_path=settings.gate.state_dir / SEEN_IDS_FILE, clock=clock)
            if settings.mqtt.enabled
            else None
        )

        journal = Journal(settings.state_path(settings.journal.path), settings.journal.max_bytes) if settings.journal.enabled else None
        dashboard = Dashboard(settings.gate.state_dir, link.publish_state if link is not None else None)
        dashboard.update(door=door.state, phase="starting")  # the link sends it before "online"
        door.on_change = dashboard.door_changed
        gate: Gate | None = None  # counts manual grants too, once it runs

        def manual_grant(source: str, seconds: float | None = None, *, request_id: str | None = None,
                         sender: str | None = None, refusal: str | None = None) -> None:
            """Exit button or remote command: recorded, journaled and counted like any decision, before
            the relay acts; a request refused before the door (a stale or replayed command) is recorded too."""
            draft = EventDraft(gate_id=settings.gate.id, verdict="grant", reason=source, source=source, request_id=request_id, sender=sender)
            try:
                event = outbox.record(draft.refused(refusal)) if refusal is not None else record_and_act(door, outbox, draft, seconds)
            except StorageFullError as exc:  # not recorded, so not granted: the door stays locked
                if gate is not None:
                    gate.storage_failed(exc)
                else:
                    door.fault(f"state folder full: {exc}")
                return
            detail = f"{source} request" + (f" {request_id}" if request_id else "") + f" from {sender or 'an unnamed sender'}"
            publish_event(event, detail, link, journal, gate.stats if gate else None, dashboard)

        door.on_exit_request = lambda: manual_grant("exit_button", sender=f"pin {settings.door.exit_button_pin}")
        if link is not None:
            link.on_command = lambda request: manual_grant(
                "remote", request.seconds, request_id=request.request_id, sender=request.sender, refusal=request.refusal
            )
            link.start()
        notifier.ready()
        _write_state(settings, door, "starting")
        try:
            vision = vision or _wait_for_vision(settings, door, dashboard, notifier, stop)
            if vision is None:
                return health
            detector, classifier, policy = vision
            dashboard.update(model={"ok": True, "sha256": classifier.model_sha256, "preset": classifier.contract.preset})
            door.clear_fault()  # a model that failed earlier is fine now
            snapshots = (
                FaceSnapshots(settings.state_path(settings.privacy.faces_dir), settings.privacy.retention_days)
                if settings.privacy.save_faces
                else None
            )
            with camera or open_camera(settings.camera) as source:
                gate = Gate(
                    gate_id=settings.gate.id, camera=source, detector=detector, classifier=classifier, policy=policy,
                    door=door, outbox=outbox, link=link, dashboard=dashboard, journal=journal, snapshots=snapshots, on_decision=on_decision,
                    preview=preview.feed if preview is not None else None,
                )
                log.info("gate %s running: camera %s, rule %s", settings.gate.id, settings.camera.source, settings.policy.rule)
                health = _loop(gate, settings, notifier, link, dashboard, stop, until_camera_ends)
        except Exception as exc:
            door.lock()
            log.exception("gate loop crashed: door locked")
            stop_reason = f"crashed: {type(exc).__name__}: {exc}"
            raise
        finally:
            notifier.stopping()
            door.lock()
            dashboard.update(phase="stopped", camera="not open")  # published before "offline"
            if link is not None:
                link.stop()
            _write_state(settings, door, "stopped", health, stopped_at=time.time(), stop_reason=stop_reason)
    return health


def _preview_server(settings: Settings) -> PreviewServer | None:
    """The installer's live page when ``[preview] enabled``; its token is read here, before any part starts."""
    if not settings.preview.enabled:
        return None
    from gate.preview.server import PreviewServer  # the web server is imported only when the page is on

    return PreviewServer.from_settings(settings)


def check_paths(settings: Settings) -> None:
    """Every folder the gate writes into must be creatable and writable, or ConfigError (exit 78:
    restarting cannot fix a path, and a traceback every 2 s helps nobody)."""
    folders = {"gate.state_dir": settings.gate.state_dir, "outbox.path": settings.state_path(settings.outbox.path).parent}
    if settings.gate.runtime_dir is not None:
        folders["gate.runtime_dir"] = settings.gate.runtime_dir
    if settings.journal.enabled:
        folders["journal.path"] = settings.state_path(settings.journal.path).parent
    if settings.privacy.save_faces:
        folders["privacy.faces_dir"] = settings.state_path(settings.privacy.faces_dir)
    for key, folder in folders.items():
        try:
            ensure_writable_folder(folder)
        except OSError as exc:
            raise ConfigError(f"{key}: cannot use {folder} ({exc.strerror or exc})") from None


def _write_state(settings: Settings, door: Door, state: str, last: dict[str, Any] | None = None, **extra: Any) -> None:
    """The status file outside the loop (starting, model fault, stopped): `gate-cli status` never
    shows an earlier run's "ok". ``last``: the loop's last health, kept for its counters."""
    status = {**(last or {}), "gate_id": settings.gate.id, "state": state, "door": door.state, "pid": os.getpid(), **extra}
    if state == "stopped":  # written after door.lock(): the relay is released, whatever fault was raised
        status["door"] = "locked"
    if state != "running":
        status["camera"] = {**(status.get("camera") or {}), "state": "stopped" if state == "stopped" else "not open"}
        status["fps"] = 0.0
    save_status(settings, status)


def save_status(settings: Settings, status: dict[str, Any]) -> None:
    """Write the status file; a failure (a full disk) is logged once, never stops the gate."""
    global _status_failing
    try:
        write_status(settings.status_dir, status)
    except OSError as exc:
        if not _status_failing:
            log.error("cannot write the status file in %s: %s (retried every %.0f s, said once)", settings.status_dir, exc, STATUS_EVERY_S)
        _status_failing = True
    else:
        _status_failing = False


_status_failing = False


def _loop(gate: Gate, settings: Settings, notifier: Notifier, link: MqttLink | None, dashboard: Dashboard, stop: threading.Event,
          until_camera_ends: bool) -> dict[str, Any]:
    metrics = MetricsServer(settings.metrics.prometheus_port) if settings.metrics.prometheus_port else None
    next_status = next_health = next_ping = time.monotonic()
    ping_every = min(notifier.watchdog_interval() or 1.0, 1.0)  # not per frame: one datagram a second is plenty
    try:
        while not stop.is_set():
            frames_before = gate.stats.frames
            gate.step()
            now = time.monotonic()
            if now >= next_ping:  # from the main loop, so a hung loop stops the pings and systemd restarts us
                notifier.watchdog()
                next_ping = now + ping_every
            dashboard.update(phase="running", camera=gate.camera.status.state)  # relay moves and decisions publish themselves
            if now >= next_status:
                health = gate.health()
                dashboard.update(outbox={"pending": health["outbox"]["pending"], "dropped": health["outbox"]["dropped"]})
                save_status(settings, health)
                if metrics is not None:
                    metrics.update(health)
                notifier.status(f"{health['fps']:.1f} fps, camera {health['camera']['state']}, door {health['door']}, outbox {health['outbox']['pending']} pending")
                next_status = now + STATUS_EVERY_S
            if link is not None and now >= next_health:
                link.publish_health(gate.health())
                next_health = now + settings.mqtt.health_interval_s
            # "ended" is set while the last decoded frame may still wait: stop only once a read found nothing;
            # a finite job does not wait for a failed camera to come back
            if until_camera_ends and gate.stats.frames == frames_before and gate.camera.status.state in ("ended", "failed"):
                break
    finally:
        if metrics is not None:
            metrics.close()
    health = gate.health()
    save_status(settings, health)
    return health
