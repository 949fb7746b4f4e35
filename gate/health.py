"""What the running gate is doing, for people and for monitoring.

* ``<state_dir>/status.json``: the daemon's latest health dict, replaced atomically every few
  seconds, read by ``gate-cli status`` (no socket, no privileges: just a file). Its ``state`` is
  ``starting`` or ``fault`` from start-up on (a model that cannot load shows within seconds),
  ``running``, and ``stopped`` once the daemon has locked the door on the way out; a file not
  rewritten for :data:`STALE_AFTER_S` means the daemon died without stopping. It holds counters,
  states and the last verdict with face boxes and scores, never images or secrets, so it is
  world-readable (0644) even under the unit's ``UMask=0077``.
* Optional Prometheus endpoint on 127.0.0.1 (never exposed off the box: put a reverse proxy or
  node-exporter's textfile collector in front if it must be). Metrics come from the same health
  dict, so the file, MQTT health and Prometheus never disagree.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gate.errors import ConfigError, StateError
from gate.paths import read_regular_file

STATUS_FILE = "status.json"
STALE_AFTER_S = 60.0  # the daemon rewrites the file every few seconds


def write_status(state_dir: Path, status: Mapping[str, Any]) -> Path:
    """Replace ``status.json`` atomically (write a temporary file, then rename over it).

    No fsync: the file is rewritten every few seconds and a stale copy after a power cut is harmless.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / STATUS_FILE
    payload = json.dumps({**status, "written_at": time.time()}, indent=1, sort_keys=True, default=str)
    fd, temporary = tempfile.mkstemp(prefix=".status-", suffix=".tmp", dir=state_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(payload)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The last status the daemon wrote, with ``age_s`` (seconds since it was written) added;
    None when it never wrote one there."""
    path = Path(state_dir) / STATUS_FILE
    try:
        status = json.loads(read_regular_file(path, 1 << 20).decode("utf-8"))
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise StateError(f"{path}: not UTF-8 ({exc.reason})") from None
    except OSError as exc:
        raise StateError(f"{path}: cannot read the status ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deep to be a status
        raise StateError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(status, dict):
        raise StateError(f"{path}: not a status object")
    try:
        _StatusFile.model_validate(status)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise StateError(f"{path}: not a status the gate wrote ({'.'.join(map(str, first['loc']))}: {first['msg']})") from None
    status["age_s"] = round(max(0.0, time.time() - float(status.get("written_at", 0))), 1)
    return status


class _Shown(BaseModel):
    """The part of a status file that `gate-cli status` shows: typed, so a file that is not the
    gate's (or is damaged) is one error, not a traceback half-way through the output."""

    model_config = ConfigDict(extra="allow")


class _Camera(_Shown):
    state: str = "?"
    detail: str | None = None
    dropped: int = 0
    reopens: int = 0


class _Outbox(_Shown):
    pending: int | str = "?"
    sent_total: int | str = "?"
    dropped: int | str = "?"
    oldest_pending_age_s: FiniteFloat | None = None


class _Mqtt(_Shown):
    enabled: bool | None = None
    connected: bool | None = None
    last_error: str | None = None


class _StatusFile(_Shown):
    written_at: FiniteFloat = 0.0
    stopped_at: FiniteFloat | None = None
    state: str = "running"
    stop_reason: str | None = None
    fault: str | None = None
    gate_id: str = "?"
    door: str = "?"
    fps: FiniteFloat | None = None
    uptime_s: Annotated[float, Field(ge=0, le=1e12)] | None = None
    model_sha256: str | None = None
    camera: _Camera | None = None
    outbox: _Outbox | None = None
    mqtt: _Mqtt | None = None
    decisions: dict[str, int] | None = None
    last_decision: dict[str, Any] | None = None


def _when(timestamp: Any) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(float(timestamp)))
    except (TypeError, ValueError, OverflowError, OSError):
        return "an unknown time"


def describe_state(status: Mapping[str, Any] | None, state_dir: Path | str = "") -> str:
    """One line: running (or starting, or in a fault) or not running since when, and why."""
    if status is None:
        return f"not running: no status in {state_dir} (the gate never started with this gate.state_dir)"
    state = status.get("state", "running")
    age = status.get("age_s")
    if state == "stopped":
        return f"not running since {_when(status.get('stopped_at', status.get('written_at')))} ({status.get('stop_reason') or 'stopped'})"
    if age is not None and age > STALE_AFTER_S:
        return f"not running since about {_when(status.get('written_at'))} (status not updated for {age:.0f} s: the daemon died without stopping?)"
    if state == "fault":
        return f"running, FAULT (door held locked): {status.get('fault') or '?'}"
    return f"{state} (status written {age or 0:.0f} s ago)"


def format_status(status: Mapping[str, Any] | None, state_dir: Path | str = "") -> str:
    """A short human summary of :func:`read_status`'s dict; tolerant of missing keys."""
    if status is None:
        return f"state     {describe_state(None, state_dir)}"
    camera = status.get("camera") or {}
    outbox = status.get("outbox") or {}
    mqtt = status.get("mqtt") or {}
    decisions = status.get("decisions") or {}
    last = status.get("last_decision")
    lines = [
        f"state     {describe_state(status, state_dir)}",
        f"gate      {status.get('gate_id', '?')}",
        f"door      {status.get('door', '?')}",
        f"camera    {camera.get('state', '?')}{' (' + camera['detail'] + ')' if camera.get('detail') else ''}, "
        f"{status.get('fps') or 0:.1f} fps, dropped {camera.get('dropped', 0)}, reopens {camera.get('reopens', 0)}",
        f"model     {str(status.get('model_sha256') or '?')[:12]}",
        f"decisions grant {decisions.get('grant', 0)}, deny {decisions.get('deny', 0)}",
        f"last      {_describe_decision(last)}",
        f"outbox    {outbox.get('pending', '?')} pending, {outbox.get('sent_total', '?')} sent, {outbox.get('dropped', '?')} dropped"
        + (f", oldest {outbox['oldest_pending_age_s']:.0f} s" if outbox.get("oldest_pending_age_s") is not None else ""),
        f"mqtt      {_describe_mqtt(mqtt)}",
        f"uptime    {_duration(status.get('uptime_s'))}",
    ]
    return "\n".join(lines)


def _describe_decision(last: Mapping[str, Any] | None) -> str:
    if not last:
        return "none yet"
    return " ".join(str(last[k]) for k in ("time", "verdict", "reason") if last.get(k) is not None)


def _describe_mqtt(mqtt: Mapping[str, Any]) -> str:
    if mqtt.get("enabled") is False:
        return "disabled"
    text = "connected" if mqtt.get("connected") else "NOT connected"
    return text + (f" ({mqtt['last_error']})" if mqtt.get("last_error") else "")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


class StatusCollector(Collector):
    """Prometheus metrics built at scrape time from the latest status dict."""

    def __init__(self) -> None:
        self._status: Mapping[str, Any] = {}

    def update(self, status: Mapping[str, Any]) -> None:
        self._status = dict(status)  # one reference swap: scrapes see a whole snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._status
        if not s:
            return
        camera, outbox, mqtt = s.get("camera") or {}, s.get("outbox") or {}, s.get("mqtt") or {}
        yield _gauge("maskgate_uptime_seconds", "Seconds since the gate started", s.get("uptime_s"))
        yield _gauge("maskgate_fps", "Frames processed per second", s.get("fps"))
        yield _counter("maskgate_frames", "Frames processed", s.get("frames"))
        yield _counter("maskgate_faces", "Faces classified", s.get("faces"))
        decisions = CounterMetricFamily("maskgate_decisions", "Decisions by verdict", labels=["verdict"])
        for verdict in ("grant", "deny"):
            decisions.add_metric([verdict], (s.get("decisions") or {}).get(verdict, 0))
        yield decisions
        stages = GaugeMetricFamily("maskgate_stage_latency_ms", "Smoothed latency of each pipeline stage", labels=["stage"])
        for stage, ms in (s.get("stage_ms") or {}).items():
            stages.add_metric([stage], ms)
        yield stages
        yield _state("maskgate_door_state", "Door state (1 for the current one)", "state", s.get("door"), ("locked", "unlocked", "fault"))
        yield _state("maskgate_camera_state", "Camera state (1 for the current one)", "state", camera.get("state"), ())
        yield _counter("maskgate_camera_dropped_frames", "Frames the camera dropped", camera.get("dropped"))
        yield _counter("maskgate_camera_reopens", "Times the camera was reopened", camera.get("reopens"))
        yield _gauge("maskgate_outbox_pending", "Events waiting for the broker", outbox.get("pending"))
        yield _counter("maskgate_outbox_sent", "Events acknowledged by the broker", outbox.get("sent_total"))
        yield _counter("maskgate_outbox_dropped", "Unsent events dropped by the outbox bounds", outbox.get("dropped"))
        yield _gauge("maskgate_outbox_oldest_pending_age_seconds", "Age of the oldest unsent event", outbox.get("oldest_pending_age_s") or 0)
        yield _gauge("maskgate_mqtt_connected", "1 when connected to the broker", 1 if mqtt.get("connected") else 0)


def _gauge(name: str, documentation: str, value: Any) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value or 0))


def _counter(name: str, documentation: str, value: Any) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=float(value or 0))


def _state(name: str, documentation: str, label: str, current: Any, known: tuple[str, ...]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for state in dict.fromkeys((*known, *([str(current)] if current is not None else []))):
        family.add_metric([state], 1.0 if state == current else 0.0)
    return family


class MetricsServer:
    """``/metrics`` on 127.0.0.1:<port>; call :meth:`update` with each new status dict."""

    def __init__(self, port: int, addr: str = "127.0.0.1") -> None:
        self.collector = StatusCollector()
        registry = CollectorRegistry()
        registry.register(self.collector)
        try:
            self._server, self._thread = start_http_server(port, addr=addr, registry=registry)
        except OSError as exc:
            raise ConfigError(f"metrics.prometheus_port: cannot listen on {addr}:{port} ({exc.strerror or exc})") from exc
        self.port = self._server.server_port

    def update(self, status: Mapping[str, Any]) -> None:
        self.collector.update(status)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
