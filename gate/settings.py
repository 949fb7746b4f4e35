"""Typed configuration: a pydantic tree loaded from ``settings.toml`` plus environment overrides.

Every section is its own model with ``extra="forbid"`` and a description on each field; each
runtime component receives only its own section. Errors are reported all at once, each as the
dotted TOML key and what is allowed, and the daemon then exits with :data:`EXIT_CONFIG` so
systemd's ``RestartPreventExitStatus=`` stops a restart loop (fail closed, never a "safe mode").

Sources, highest first (pydantic-settings): environment variables ``MASKGATE__SECTION__KEY=value``
(double underscores, nested: ``MASKGATE__MQTT__TLS__ENABLED=true``), then the TOML file, then the
defaults. An environment value is converted to the key's type as a file value would be
(``MASKGATE__CAMERA__SOURCE=0`` is the string "0", ``MASKGATE__MQTT__PORT=8883`` the number);
lists are JSON (``[0, 0, 1, 1]``) and ``none`` clears an optional key. Each error names its source:
the file and the dotted key, or the environment variable.

Relative paths in a settings file are relative to *that file's folder* (so the same file works
from any working directory), except the few documented as relative to ``gate.state_dir``.
Without a file the default model is the one packaged with ``gate`` (:mod:`gate.models`).
"""

from __future__ import annotations

import codecs
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, InitSettingsSource, SettingsConfigDict, SettingsError
from pydantic_settings.sources.utils import parse_env_vars

from gate.errors import ConfigError
from gate.models import default_model_path
from gate.paths import read_regular_file

#: Exit status for "the configuration is wrong": systemd must not restart into the same error.
EXIT_CONFIG = 78
ENV_PREFIX = "MASKGATE__"
#: A settings file is a page of TOML: anything far larger is not one (and is not read into memory).
MAX_SETTINGS_BYTES = 1 << 20
SECRET_KEYS = frozenset({"password", "password_file", "key_file", "token_file"})

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(gt=0.0)]


def _pin_name(value: Any) -> Any:
    """A BCM number may be written as a TOML integer (``relay_pin = 17``): gpiozero takes it as "17"."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a pin number cannot be negative, got {value}")
        return str(value)
    return value


Pin = Annotated[str, BeforeValidator(_pin_name), Field(min_length=1, description="gpiozero pin name: a BCM number like 17 (or \"17\"), or 'GPIO17', 'BOARD11'")]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class GateSettings(Section):
    id: str = Field("front-door", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="This gate's id: used in MQTT topics and events")
    state_dir: Path = Field(Path("var"), description="Outbox, journal and state live here (systemd: /var/lib/maskgate)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log verbosity")
    log_format: Literal["text", "json"] = Field("text", description="json gives one object per line, for journald/log shippers")
    runtime_dir: Path | None = Field(None, description="Where the status file (rewritten every few seconds) goes: a RAM folder such as /run/maskgate (systemd's RuntimeDirectory=) spares the SD card; default: state_dir")
    trust_clock: Literal["when_synchronised", "always"] = Field("when_synchronised", description="when_synchronised: until NTP has set the clock, events say clock_synced = false and remote unlock is refused (a Pi has no real-time clock); always: a board with a battery-backed clock, or a container that cannot tell")


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
    reconnect_max_s: Annotated[float, Field(gt=0.0, le=4.0)] = Field(2.0, description="Cap of the exponential reopen backoff (retries go on forever); at most 4 s, so a camera that comes back is used again within 5 s")

    @field_validator("source")
    @classmethod
    def _utf8(cls, source: str) -> str:
        """OpenCV takes the source as UTF-8 and crashes the process on anything else (an
        environment variable can carry raw bytes): refused here, naming the key."""
        try:
            source.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be UTF-8 text (a file name of raw bytes: rename the file)") from None
        return source


class DetectorSettings(Section):
    kind: Literal["blazeface"] = Field("blazeface", description="Face detector implementation")
    assets_dir: Path | None = Field(None, description="Folder with the MediaPipe face models (default: $MASKGATE_ASSETS or ./assets)")
    score_threshold: Fraction = Field(0.1, description="Full-range BlazeFace score needed to propose a face (MediaPipe's 0.6 loses masked faces; confirmation removes the false ones)")
    confirm: bool = Field(True, description="Confirm each proposal with short-range BlazeFace on a crop around it")
    confirm_threshold: Fraction = Field(0.65, description="Short-range confirmation score plus half the proposal's score needed to keep a face")
    tile_search: bool = Field(True, description="When no face is confirmed, look again with short-range BlazeFace on overlapping tiles (needs confirm)")
    tile_threshold: Fraction = Field(0.3, description="Short-range score on a tile needed to propose a face")
    max_rejections: int = Field(3, ge=1, le=100, description="Confirm proposals best first and stop after this many were rejected (each costs one short-range run)")
    full_scan_every: int = Field(8, ge=1, le=30, description="While faces are known, re-find them on crops and run the full-frame pass at least every Nth frame (sooner when something moves away from them or one is lost); 1 = every frame")
    follow_correlation: Annotated[float, Field(gt=0.0, le=1.0)] = Field(0.9, description="A known face that moved is followed without a model run where its last confirmed look matches the new frame this well (normalised correlation on the 1/4-size grey frame); below it, or moved further than a quarter of its size, it is re-found by the short-range model; 1 = always re-find")
    motion_threshold: int = Field(10, ge=0, le=255, description="Grey-level change (on a 1/4-size frame) that counts as motion: still known faces are kept without re-detection, and an unchanged empty scene is not searched again; 0 = look at every frame")
    tile_every: int = Field(6, ge=1, le=100, description="While no face is found, run the tile search on the first full-frame pass without a face and then on every Nth; 1 = every one")
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
    reid_within_s: Annotated[float, Field(ge=0.0)] = Field(0.5, description="A face that appears within this long of a face being lost, near where it was lost, is that visitor again (the tracker gives it the same id): it inherits the decision, if any, and makes a new one only if it reads across the mask line; 0 = off; at most track_max_age_s")
    reid_distance: Annotated[float, Field(gt=0.0, le=5.0)] = Field(1.5, description="How near (centre to centre, in widths of the lost face) a face must appear to be the lost one again; its width must also be within half to double the lost face's")
    join_within_s: Annotated[float, Field(ge=0.0)] = Field(1.0, description="A newcomer read masked at most this long after a grant, while one of the granted faces is in view, joins that grant without a new decision (a companion the detector found late); one read unmasked still denies at once, re-locking the door; 0 = off; the gate uses at most half of door.unlock_s, so a companion who joins still has the door open at least as long again")

    @model_validator(mode="after")
    def _reid_within_track_age(self) -> PolicySettings:
        """A lost track is only remembered for track_max_age_s: re-identification cannot reach further back."""
        if self.reid_within_s > self.track_max_age_s:
            raise ValueError(f"policy.reid_within_s ({self.reid_within_s}) must be at most policy.track_max_age_s ({self.track_max_age_s})")
        return self


class PrivacySettings(Section):
    save_faces: bool = Field(False, description="Write face crops of decisions to disk (off by default)")
    faces_dir: Path = Field(Path("faces"), description="Where face crops go, relative to gate.state_dir")
    retention_days: Annotated[float, Field(gt=0, le=90)] = Field(7.0, description="Face crops older than this are deleted (hourly and at start)")


class JournalSettings(Section):
    enabled: bool = Field(True, description="Append every decision to a local JSON-lines journal")
    path: Path = Field(Path("decisions.jsonl"), description="Journal file, relative to gate.state_dir")
    max_bytes: int = Field(10_000_000, ge=10_000, description="Rotate the journal (one .1 backup) past this size")


class RelaySettings(Section):
    """The door strike's relay: all that `gate-cli door release` reads (:func:`load_relay_settings`),
    so a mistake anywhere else in the file cannot keep the strike powered after a crash."""

    pin_factory: Literal["mock", "lgpio"] = Field("mock", description="gpiozero pin factory: lgpio on a Raspberry Pi (every model, through /dev/gpiochip*), mock for tests and the demo. RPi.GPIO and the native factory are not offered: they need /dev/gpiomem and sysfs GPIO, which the systemd unit's sandbox does not open and a Pi 5 does not have")
    relay_pin: Pin = Field("17", description="Relay input (door strike)")
    relay_active_high: bool = Field(True, description="False for relay boards that switch on a low input")


class DoorSettings(RelaySettings):
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
            raise ValueError("mqtt.remote_unlock = true needs mqtt.tls.enabled = true and mqtt.username set (the broker must know who may open the door)")
        return self


class OutboxSettings(Section):
    path: Path = Field(Path("outbox.sqlite3"), description="SQLite outbox, relative to gate.state_dir")
    max_events: int = Field(100_000, ge=100, description="Oldest unsent events beyond this count are dropped (counted and reported)")
    max_age_days: Annotated[float, Field(gt=0)] = Field(30.0, description="Unsent events older than this are dropped (counted and reported)")


class MetricsSettings(Section):
    prometheus_port: int | None = Field(None, ge=1024, le=65535, description="Serve Prometheus metrics on 127.0.0.1:<port>; none to disable")


class PreviewSettings(Section):
    enabled: bool = Field(False, description="Serve the installer's live page (the camera with what the gate sees drawn on it, and tuning figures); off by default: then nothing listens")
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on: loopback by default (reach it with `ssh -L 8088:127.0.0.1:8088 pi`); any other address (0.0.0.0: every interface) needs a token")
    port: int = Field(8088, ge=1024, le=65535, description="TCP port of the live page")
    fps: Annotated[float, Field(gt=0.0, le=15.0)] = Field(3.0, description="Frames per second the page shows (each one drawn and JPEG-encoded only when a page asks for it)")
    jpeg_quality: int = Field(70, ge=20, le=95, description="JPEG quality of the page's frames")
    token_env: str = Field("MASKGATE_PREVIEW_TOKEN", description="Environment variable holding the page's token")
    token_file: Path | None = Field(None, description="File holding the page's token (e.g. a systemd credential: %d/preview_token); when a token is set every request needs it, and one is required off loopback")


class _FileAndEnvironment(BaseSettings):
    """Sources, highest first: arguments, the environment, then the file being loaded (see :func:`parse_settings`)."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, validate_default=True,
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", env_parse_none_str="none",
    )

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):  # noqa: ANN001, ANN206
        file_data, environ = _SOURCES.get()
        return init_settings, _Environment(settings_cls, environ), InitSettingsSource(settings_cls, file_data)


class Settings(_FileAndEnvironment):
    """The whole tree. Built by :func:`load_settings` / :func:`parse_settings` (file + environment)."""

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
    preview: PreviewSettings = Field(default_factory=PreviewSettings)

    @property
    def status_dir(self) -> Path:
        """The folder of ``status.json``: the RAM folder if there is one, else the state folder."""
        return self.gate.runtime_dir or self.gate.state_dir

    def state_path(self, relative: Path) -> Path:
        """A path from settings, resolved against gate.state_dir unless absolute."""
        return relative if relative.is_absolute() else self.gate.state_dir / relative



class _RelayOnly(RelaySettings):
    model_config = ConfigDict(extra="ignore")  # the door's other keys are not read, right or wrong


class _RelayFile(_FileAndEnvironment):
    """A settings file seen through [door]'s relay keys only (other sections and keys are ignored)."""

    model_config = SettingsConfigDict(extra="ignore")
    door: _RelayOnly = Field(default_factory=_RelayOnly)


#: Path keys that are relative to gate.state_dir rather than to the settings file.
STATE_RELATIVE = frozenset({("privacy", "faces_dir"), ("journal", "path"), ("outbox", "path")})
#: The file's content and the environment the next Settings() reads (set by parse_settings).
_SOURCES: ContextVar[tuple[dict[str, Any], Mapping[str, str] | None]] = ContextVar("maskgate_settings_sources", default=({}, None))


class _Environment(EnvSettingsSource):
    """``MASKGATE__…`` variables from a given mapping (``None``: the process environment)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        if self._environ is None:
            return super()._load_env_vars()
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


@contextmanager
def _sources(file_data: dict[str, Any], environ: Mapping[str, str] | None) -> Iterator[None]:
    token = _SOURCES.set((file_data, environ))
    try:
        yield
    finally:
        _SOURCES.reset(token)


def _env_names(environ: Mapping[str, str]) -> dict[str, str]:
    """Our variables, upper-cased name → name as given."""
    return {name.upper(): name for name in environ if name.upper().startswith(ENV_PREFIX)}


def _unknown_sections(environ: Mapping[str, str]) -> list[str]:
    """Variables naming no section: pydantic-settings would silently ignore them."""
    sections = {name.upper() for name in Settings.model_fields}
    return [
        f"{name} (environment): {name[len(ENV_PREFIX):].split('__')[0].lower() or '(empty)'} is not a settings section"
        for upper, name in _env_names(environ).items()
        if upper[len(ENV_PREFIX):].split("__")[0] not in sections
    ]


def _env_source(loc: tuple[Any, ...], environ: Mapping[str, str]) -> str | None:
    """The variable that set the value at ``loc`` (or a section/list containing it), or the
    variables inside the section ``loc`` names (a section-wide check failed), if any."""
    names = _env_names(environ)
    keys = [str(part).upper() for part in loc if not isinstance(part, int)]
    for length in range(len(keys), 0, -1):
        name = names.get(ENV_PREFIX + "__".join(keys[:length]))
        if name is not None:
            return name
    inside = [name for upper, name in names.items() if keys and upper.startswith(ENV_PREFIX + "__".join(keys) + "__")]
    return ", ".join(sorted(inside)) or None


def _describe(error: dict[str, Any], environ: Mapping[str, str]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        message = "unknown key (typo? see settings.toml for the allowed keys)"
    elif error["type"] == "literal_error":
        message = f"must be one of {error.get('ctx', {}).get('expected', '')}"
    else:  # pydantic prefixes our validators' messages with their kind: the key says enough
        message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    got = error.get("input")
    shown = "" if error["type"] == "extra_forbidden" or isinstance(got, dict) or key.split(".")[-1] in SECRET_KEYS else f" (got {got!r})"
    variable = _env_source(tuple(error["loc"]), environ)
    return f"{variable + ' (environment): ' if variable else ''}{key}: {message}{shown}"


def parse_settings(data: dict[str, Any], environ: Mapping[str, str] | None = None, source: str = "settings") -> Settings:
    """Validate a settings dict (already read from TOML) under the environment's overrides.

    ``environ`` defaults to the process environment; ``source`` names the file in errors.
    """
    env = os.environ if environ is None else environ
    problems = _unknown_sections(env)
    try:
        with _sources(data if isinstance(data, dict) else {}, env):
            settings = Settings()
    except ValidationError as exc:
        problems += [_describe(e, env) for e in exc.errors()]
    except SettingsError as exc:  # a list/table value in the environment that is not JSON
        field = re.search(r'field "([^"]+)"', str(exc))
        variable = _env_source((field.group(1),) if field else (), env) or "MASKGATE__…"
        problems.append(f"{variable} (environment): a list or table that is not valid JSON (write lists like [0, 0, 1, 1]; sections as MASKGATE__SECTION__KEY)")
    if problems:
        raise _invalid(source, problems)
    return settings


def _invalid(source: str, problems: list[str]) -> ConfigError:
    count = f"{len(problems)} problem{'s' * (len(problems) > 1)}"
    return ConfigError(f"{source} is invalid ({count}): " + "; ".join(problems))  # one line: a log line, a systemd status


def _annotation_types(annotation: Any) -> tuple[Any, ...]:
    return get_args(annotation) or (annotation,)


def _anchor_paths(data: dict[str, Any], base: Path, model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> None:
    """Make the file's relative paths relative to ``base`` (its folder), in place."""
    for name, field in model.model_fields.items():
        value = data.get(name)
        key = (*prefix, name)
        types = _annotation_types(field.annotation)
        sections = [t for t in types if isinstance(t, type) and issubclass(t, BaseModel)]
        if sections and isinstance(value, dict):
            _anchor_paths(value, base, sections[0], key)
        elif Path in types and isinstance(value, str) and value and key not in STATE_RELATIVE:
            path = Path(value).expanduser()
            data[name] = str(path if path.is_absolute() else base / path)
    camera = data.get("camera") if not prefix else None
    if isinstance(camera, dict) and isinstance(camera.get("source"), str) and camera.get("kind", "auto") in ("auto", "file"):
        source = camera["source"]
        if source and not (source.isdigit() or "://" in source or source.lower() == "picamera2" or Path(source).is_absolute()):
            camera["source"] = str(base / source)  # a video file next to the settings file


def read_settings_file(path: Path) -> dict[str, Any]:
    """The TOML file as a dict, its relative paths anchored to its folder; ConfigError says why not."""
    try:
        raw = read_regular_file(path, MAX_SETTINGS_BYTES)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw.startswith(codecs.BOM_UTF8):
        raise ConfigError(f"{path}: starts with a byte-order mark (BOM): save it as UTF-8 without BOM")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: nested too deep to be settings
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _anchor_paths(data, path.resolve().parent)
    return data


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a settings file under the environment's overrides; ConfigError names every bad key."""
    path = Path(path)
    return parse_settings(read_settings_file(path), environ, str(path))


def load_relay_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> RelaySettings:
    """[door]'s relay keys from the file (None: the defaults) under the environment's overrides.

    Every other section and door key is ignored, valid or not: releasing the strike after a crash
    must not depend on, say, the [mqtt] section. Only a file that is not TOML at all, or a bad
    relay key, is a ConfigError (the pin to release is then unknown)."""
    env = os.environ if environ is None else environ
    data = read_settings_file(path) if path is not None else {}
    source = str(path) if path is not None else "built-in defaults"
    try:
        with _sources({"door": data["door"]} if "door" in data else {}, env):
            return _RelayFile().door
    except ValidationError as exc:
        raise _invalid(source, [_describe(e, env) for e in exc.errors()]) from None


#: Where systemd/install-pi.sh puts the settings (the unit names it with --settings).
INSTALLED_SETTINGS = Path("/etc/maskgate/settings.toml")
LOCAL_SETTINGS = Path("settings.toml")


def find_settings_file(local: Path = LOCAL_SETTINGS, installed: Path = INSTALLED_SETTINGS) -> Path | None:
    """The file read without ``--settings``: ``./settings.toml`` when it exists, else the installed
    one when it exists (so an operator's `gate-cli status` on the Pi needs no path), else None."""
    for candidate in (local, installed):
        try:
            if candidate.exists():
                return candidate
        except PermissionError:  # e.g. /etc/maskgate for a user outside the maskgate group: reading it says so
            return candidate
    return None


def default_settings_file() -> Path:
    """:func:`find_settings_file`'s answer, else ``./settings.toml`` (whose absence the caller reports)."""
    return find_settings_file() or LOCAL_SETTINGS


def redacted(settings: Settings) -> dict[str, Any]:
    """Settings as a plain dict with secrets replaced, for `config show` and logs."""

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: ("***" if k in SECRET_KEYS and v is not None else scrub(v)) for k, v in node.items()}
        return node

    return scrub(settings.model_dump(mode="json"))
