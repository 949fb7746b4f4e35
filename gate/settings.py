"""Typed configuration: a pydantic tree loaded from ``settings.toml`` plus environment overrides.

Every section is its own model with ``extra="forbid"`` and a description on each field; each
runtime component receives only its own section. Errors are reported all at once, each as the
dotted TOML key and what is allowed, and the daemon then exits with :data:`EXIT_CONFIG` so
systemd's ``RestartPreventExitStatus=`` stops a restart loop (fail closed, never a "safe mode").

Environment overrides: ``MASKGATE__SECTION__KEY=value`` (double underscores), the value parsed
as TOML when it can be (``5``, ``true``, ``"text"``, ``[1, 2]``) and used as a plain string otherwise.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gate.errors import ConfigError
from gate.models import default_model_path

#: Exit status for "the configuration is wrong": systemd must not restart into the same error.
EXIT_CONFIG = 78
ENV_PREFIX = "MASKGATE__"
SECRET_KEYS = frozenset({"password", "password_file", "key_file"})

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(gt=0.0)]
Pin = Annotated[str, Field(min_length=1, description="gpiozero pin name: a BCM number like 17, or 'GPIO17', 'BOARD11'")]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class GateSettings(Section):
    id: str = Field("front-door", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="This gate's id: used in MQTT topics and events")
    state_dir: Path = Field(Path("var"), description="Outbox, journal and state live here (systemd: /var/lib/maskgate)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log verbosity")
    log_format: Literal["text", "json"] = Field("text", description="json gives one object per line, for journald/log shippers")


class CameraSettings(Section):
    source: str = Field("0", description="V4L2 index ('0') or device ('/dev/video0'), a video file, an rtsp:// or http(s):// URL, or 'picamera2'")
    kind: Literal["auto", "v4l2", "file", "stream", "picamera2"] = Field("auto", description="How to read `source`; auto guesses from its form")
    width: int = Field(640, ge=64, le=4096, description="Requested capture width (V4L2/Picamera2)")
    height: int = Field(480, ge=48, le=4096, description="Requested capture height (V4L2/Picamera2)")
    fps: float = Field(30.0, gt=0, le=240, description="Requested capture rate; files are paced at this rate when `realtime`")
    loop: bool = Field(False, description="Files only: start again at the end instead of reporting end of stream")
    realtime: bool = Field(True, description="Files only: pace frames at `fps` like a live camera (false: as fast as decoded)")
    stall_timeout_s: Seconds = Field(2.0, description="No new frame for this long → source is declared failed and reopened")
    reconnect_initial_s: Seconds = Field(0.5, description="First wait before reopening a failed source")
    reconnect_max_s: Seconds = Field(30.0, description="Cap of the exponential reopen backoff (retries go on forever)")


class DetectorSettings(Section):
    kind: Literal["blazeface"] = Field("blazeface", description="Face detector implementation")
    assets_dir: Path | None = Field(None, description="Folder with the MediaPipe face models (default: $MASKGATE_ASSETS or ./assets)")
    score_threshold: Fraction = Field(0.1, description="Full-range BlazeFace score needed to propose a face (MediaPipe's 0.6 loses masked faces; confirmation removes the false ones)")
    confirm: bool = Field(True, description="Confirm each proposal with short-range BlazeFace on a crop around it")
    confirm_threshold: Fraction = Field(0.65, description="Short-range confirmation score plus half the proposal's score needed to keep a face")
    tile_search: bool = Field(True, description="When no face is confirmed, look again with short-range BlazeFace on overlapping tiles (needs confirm)")
    tile_threshold: Fraction = Field(0.3, description="Short-range score on a tile needed to propose a face")
    max_rejections: int = Field(3, ge=1, le=100, description="Confirm proposals best first and stop after this many were rejected (each costs one short-range run)")
    full_scan_every: int = Field(4, ge=1, le=30, description="While faces are known, re-find them on crops and run the full-frame pass only every Nth frame (or when one is lost); 1 = every frame")
    tile_every: int = Field(6, ge=1, le=100, description="While no face is found, run the tile search on the first such frame and then every Nth; 1 = every frame")
    nms_iou: Fraction = Field(0.3, description="Overlap above which two boxes are merged (weighted NMS)")
    min_face_px: int = Field(40, ge=8, description="Faces smaller than this (box width, pixels) are ignored: too far from the door")
    roi: tuple[Fraction, Fraction, Fraction, Fraction] = Field((0.0, 0.0, 1.0, 1.0), description="Region of interest [x0, y0, x1, y1] as fractions of the frame; a face counts when its centre is inside")
    threads: int = Field(1, ge=1, le=8, description="LiteRT threads for the detector")

    @model_validator(mode="after")
    def _roi_ordered(self) -> DetectorSettings:
        x0, y0, x1, y1 = self.roi
        if not (x0 < x1 and y0 < y1):
            raise ValueError("roi must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
        return self


class ClassifierSettings(Section):
    model: Path = Field(default_factory=default_model_path, description="TFLite mask classifier; its contract <model>.json must sit beside it (default: the one packaged in gate/models/)")
    threads: int = Field(1, ge=1, le=8, description="LiteRT threads for the classifier")
    min_confidence: Fraction | None = Field(None, description="Below this top-class probability a face is 'uncertain'; default: the model contract's recommendation")


class PolicySettings(Section):
    rule: Literal["all_masked", "any_masked", "observe"] = Field("all_masked", description="all_masked: grant only if every face in the ROI wears a mask correctly; any_masked: if at least one does; observe: never grant, only report")
    evidence_frames: int = Field(3, ge=1, le=100, description="A face is read (masked or not) only after this many frames of evidence")
    evidence_decay: Annotated[float, Field(ge=0.5, lt=1)] = Field(0.6, description="Each frame, a face's earlier evidence (decayed average of the classifier's probabilities) is multiplied by this; ≥ 0.5 so a label alternating every frame averages ≤ 2/3")
    decide_confidence: Annotated[float, Field(ge=0.7, le=1)] = Field(0.8, description="Average probability needed to read a face: masked needs this or the model contract's min_confidence, whichever is higher; not masked needs this (≥ 0.7 > 2/3: an alternating face is never read masked)")
    full_weight_face_px: int = Field(64, ge=1, description="Faces at least this wide (px) count fully in the evidence; smaller ones in proportion")
    decide_within_s: Seconds = Field(1.0, description="A face not read within this long counts as not masked (deny, reason 'undecided')")
    track_iou: Fraction = Field(0.3, description="Box overlap that links a face to its track in the previous frame")
    track_max_age_s: Seconds = Field(1.0, description="A track unseen this long is forgotten")


class PrivacySettings(Section):
    save_faces: bool = Field(False, description="Write face crops of decisions to disk (off by default)")
    faces_dir: Path = Field(Path("faces"), description="Where face crops go, relative to gate.state_dir")
    retention_days: Annotated[float, Field(gt=0, le=90)] = Field(7.0, description="Face crops older than this are deleted (hourly and at start)")


class JournalSettings(Section):
    enabled: bool = Field(True, description="Append every decision to a local JSON-lines journal")
    path: Path = Field(Path("decisions.jsonl"), description="Journal file, relative to gate.state_dir")
    max_bytes: int = Field(10_000_000, ge=10_000, description="Rotate the journal (one .1 backup) past this size")


class DoorSettings(Section):
    pin_factory: Literal["mock", "lgpio", "rpigpio", "native"] = Field("mock", description="gpiozero pin factory: lgpio on a Pi 5 / recent OS, mock for tests and the demo")
    relay_pin: Pin = Field("17", description="Relay input (door strike)")
    relay_active_high: bool = Field(True, description="False for relay boards that switch on a low input")
    unlock_s: Seconds = Field(5.0, description="How long the relay stays energised after a grant")
    green_led_pin: Pin | None = Field("27", description="Green LED (granted); none to omit")
    red_led_pin: Pin | None = Field("22", description="Red LED (denied / fault); none to omit")
    buzzer_pin: Pin | None = Field(None, description="Optional buzzer, beeps on deny")
    exit_button_pin: Pin | None = Field(None, description="Optional request-to-exit button (unlocks from inside)")
    deny_indication_s: Seconds = Field(3.0, description="How long the red LED / buzzer pattern lasts after a deny")
    exit_button_bounce_s: Annotated[float, Field(gt=0.0, le=1.0)] = Field(0.05, description="Exit button debounce: edges within this time of the last one are ignored (gpiozero bounce_time)")
    exit_button_min_interval_s: Annotated[float, Field(ge=0.0, le=60.0)] = Field(2.0, description="A press this soon after the last accepted one is ignored (one request, one grant, one event)")


class TlsSettings(Section):
    enabled: bool = Field(False, description="Connect with TLS")
    ca_file: Path | None = Field(None, description="CA certificate that signed the broker's certificate (default: system CAs)")
    cert_file: Path | None = Field(None, description="Client certificate, for brokers that require one")
    key_file: Path | None = Field(None, description="Client private key")
    insecure: bool = Field(False, description="Skip host-name verification (testing only)")


class HomeAssistantSettings(Section):
    enabled: bool = Field(False, description="Publish Home Assistant MQTT discovery")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix")


class MqttSettings(Section):
    enabled: bool = Field(False, description="Publish to an MQTT broker (events wait in the outbox while it is off or down)")
    host: str = Field("localhost", min_length=1, description="Broker host")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS)")
    client_id: str | None = Field(None, description="MQTT client id (default: maskgate-<gate.id>)")
    topic_prefix: str = Field("maskgate", min_length=1, description="Topics are <topic_prefix>/<gate.id>/...")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive")
    username: str | None = Field(None, description="Broker user name")
    password_env: str = Field("MASKGATE_MQTT_PASSWORD", description="Environment variable holding the password")
    password_file: Path | None = Field(None, description="File holding the password (e.g. a systemd credential: %d/mqtt_password)")
    reconnect_min_s: Seconds = Field(1.0, description="First reconnect delay")
    reconnect_max_s: Seconds = Field(60.0, description="Reconnect delay cap")
    health_interval_s: Seconds = Field(30.0, description="Period of the health message")
    remote_unlock: bool = Field(False, description="Accept unlock commands on <prefix>/<id>/command (off by default; needs a broker ACL)")
    tls: TlsSettings = Field(default_factory=TlsSettings)
    homeassistant: HomeAssistantSettings = Field(default_factory=HomeAssistantSettings)
    command_max_ttl_s: Annotated[float, Field(gt=0.0, le=300.0)] = Field(30.0, description="A remote command must expire within this many seconds of its arrival (bounds how long a captured one can be replayed)")

    @model_validator(mode="after")
    def _remote_unlock_is_authenticated(self) -> MqttSettings:
        """Anyone who can publish on the command topic opens the door: the broker must know who they are."""
        if self.remote_unlock and not (self.tls.enabled and self.username):
            raise ValueError("remote_unlock = true needs tls.enabled = true and a username (the broker must authenticate both ends)")
        return self


class OutboxSettings(Section):
    path: Path = Field(Path("outbox.sqlite3"), description="SQLite outbox, relative to gate.state_dir")
    max_events: int = Field(100_000, ge=100, description="Oldest unsent events beyond this count are dropped (counted and reported)")
    max_age_days: Annotated[float, Field(gt=0)] = Field(30.0, description="Unsent events older than this are dropped (counted and reported)")


class MetricsSettings(Section):
    prometheus_port: int | None = Field(None, ge=1024, le=65535, description="Serve Prometheus metrics on 127.0.0.1:<port>; none to disable")


class Settings(Section):
    gate: GateSettings = Field(default_factory=GateSettings)
    camera: CameraSettings = Field(default_factory=CameraSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    journal: JournalSettings = Field(default_factory=JournalSettings)
    door: DoorSettings = Field(default_factory=DoorSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    def state_path(self, relative: Path) -> Path:
        """A path from settings, resolved against gate.state_dir unless absolute."""
        return relative if relative.is_absolute() else self.gate.state_dir / relative


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(keys)} does not name a setting")
        node[keys[-1]] = _env_value(raw)


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (typo? see settings.toml for the allowed keys)"
    message = error["msg"]
    if error["type"] == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "")
        message = f"must be one of {allowed}"
    got = error.get("input")
    shown = "" if isinstance(got, dict) or key.split(".")[-1] in SECRET_KEYS else f" (got {got!r})"
    return f"{key}: {message}{shown}"


def parse_settings(data: dict[str, Any], environ: dict[str, str] | None = None, source: str = "settings") -> Settings:
    """Validate a settings dict (already read from TOML) after applying environment overrides."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    _apply_env(data, dict(os.environ) if environ is None else environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise ConfigError(f"{source} is invalid ({len(lines)} problem{'s' * (len(lines) > 1)}):\n  " + "\n  ".join(lines)) from None


def load_settings(path: str | Path, environ: dict[str, str] | None = None) -> Settings:
    """Read and validate ``settings.toml``; ConfigError names every bad key at once."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_settings(data, environ, str(path))


def redacted(settings: Settings) -> dict[str, Any]:
    """Settings as a plain dict with secrets replaced, for `config show` and logs."""

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: ("***" if k in SECRET_KEYS and v is not None else scrub(v)) for k, v in node.items()}
        return node

    return scrub(settings.model_dump(mode="json"))
