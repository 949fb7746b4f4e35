"""Camera sources: V4L2 devices, video files, network streams and the Pi camera, all alike.

A capture thread per source keeps only the *newest* frame in a single slot: a slow consumer
gets the latest picture, never a backlog (frames overwritten unread are counted as
``dropped``). A supervisor thread watches it: a source that fails to open, stops returning
frames (read fails) or freezes (no frame for ``stall_timeout_s``) is declared ``failed`` and
reopened with capped exponential backoff, forever, without restarting the process. A capture
blocked inside OpenCV cannot be interrupted, so a frozen attempt is abandoned (its thread
releases the capture whenever the blocking call returns) and a fresh one is started.

Files: ``realtime`` paces frames at ``fps`` like a live camera (and drops like one); without
it no frame is dropped: the next one is decoded as soon as the consumer took the previous
one. At the end a file loops (``loop``) or the source reports ``ended`` and ``read`` returns
None from then on.

Capture backends are *openers*: callables returning an object with OpenCV's
``read() -> (ok, BGR image)`` and ``release()``; tests may pass their own.
"""

from __future__ import annotations

import collections
import importlib
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np

from gate.errors import CameraError, ConfigError
from gate.settings import CameraSettings
from gate.types import Frame

log = logging.getLogger(__name__)

STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"})
#: How long a network stream may take to connect before the attempt counts as failed.
OPEN_TIMEOUT_S = 10.0
_POLL_S = 0.1
_FPS_WINDOW = 30
_SECRET_QUERY = re.compile(r"(?i)((?:pass|password|pwd|token|key|secret|auth)[^=&]*=)[^&]*")


class Capture(Protocol):
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def release(self) -> None: ...


Opener = Callable[[], Capture]


@dataclass(frozen=True)
class CameraStatus:
    """A snapshot of a source's health, for logs, metrics and the health message."""

    state: Literal["starting", "ok", "failed", "ended"]
    detail: str
    frames: int
    dropped: int
    stale: int
    reopens: int
    fps: float


class FrameSource(Protocol):
    def read(self, timeout: float) -> Frame | None: ...
    @property
    def status(self) -> CameraStatus: ...
    def close(self) -> None: ...


def redact_source(source: str) -> str:
    """The source as it may appear in logs: URL credentials and secret query values masked."""
    parts = urlsplit(source)
    if not parts.scheme or not parts.netloc:
        return source
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = _SECRET_QUERY.sub(r"\1***", parts.query)
    return parts._replace(netloc=netloc, query=query).geturl()


def resolve_kind(settings: CameraSettings) -> str:
    """The backend for ``settings.source``: explicit ``kind``, or guessed from the source's form."""
    if settings.kind != "auto":
        return settings.kind
    source = settings.source.strip()
    if source.lower() == "picamera2":
        return "picamera2"
    if source.isdigit() or source.startswith("/dev/"):
        return "v4l2"
    if urlsplit(source).scheme.lower() in STREAM_SCHEMES:
        return "stream"
    return "file"


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        raise CameraError(f"capture returned {image.dtype} pixels, expected uint8")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise CameraError(f"capture returned an image of shape {image.shape}, expected H×W×3")


def _opened(capture: cv2.VideoCapture, what: str) -> cv2.VideoCapture:
    if not capture.isOpened():
        capture.release()
        raise CameraError(f"cannot open {what}")
    return capture


def _open_v4l2(settings: CameraSettings) -> Capture:
    source = settings.source.strip()
    device = f"/dev/video{source}" if source.isdigit() else source
    if not Path(device).exists():
        raise CameraError(f"no such V4L2 device {device}")
    capture = _opened(cv2.VideoCapture(int(source) if source.isdigit() else source, cv2.CAP_V4L2), f"V4L2 device {device}")
    capture.set(cv2.CAP_PROP_FRAME_WIDTH, settings.width)
    capture.set(cv2.CAP_PROP_FRAME_HEIGHT, settings.height)
    capture.set(cv2.CAP_PROP_FPS, settings.fps)
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not the driver's backlog
    return capture


def _open_file(settings: CameraSettings) -> Capture:
    path = Path(settings.source)
    if not path.is_file():
        raise CameraError(f"video file not found: {path}")
    return _opened(cv2.VideoCapture(str(path), cv2.CAP_FFMPEG), f"video file {path} (not a video FFmpeg can decode?)")


def _open_stream(settings: CameraSettings) -> Capture:
    timeouts = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(OPEN_TIMEOUT_S * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(settings.stall_timeout_s * 1000),
    ]
    return _opened(cv2.VideoCapture(settings.source, cv2.CAP_FFMPEG, timeouts), f"stream {redact_source(settings.source)}")


def load_picamera2(import_module: Callable[[str], Any] = importlib.import_module) -> Any:
    """Picamera2's camera class, or a one-line ConfigError (exit 78: only a person can fix it).

    Importing picamera2 also imports its compiled helpers (simplejpeg, libcamera's bindings): built
    for the system's numpy, they fail with "numpy.dtype size changed" under another numpy in the
    venv. A camera that is absent or busy is not caught here: opening it is retried (see
    :class:`CameraSource`).
    """
    try:
        return import_module("picamera2").Picamera2
    except ImportError as exc:
        raise ConfigError(
            f"camera: source 'picamera2' needs the picamera2 package ({' '.join(str(exc).split())}): on Raspberry Pi OS "
            "`sudo apt install python3-picamera2` and a venv made with --system-site-packages (systemd/install-pi.sh does both)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - whatever the library's import raises is one line, not a traceback
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        hint = ("the venv's numpy is not the one the system's picamera2 was built for: re-run systemd/install-pi.sh "
                "(it pins the venv's numpy to the system's)") if "numpy" in detail.lower() else "see the picamera2 documentation"
        raise ConfigError(f"camera: picamera2 cannot be imported ({detail}); {hint}") from None


def require_backend(settings: CameraSettings, *, import_module: Callable[[str], Any] = importlib.import_module) -> None:
    """ConfigError for a camera that can never open here (Picamera2 missing or unusable)."""
    if resolve_kind(settings) == "picamera2":
        load_picamera2(import_module)


class Picamera2Capture:
    """Picamera2 behind OpenCV's read()/release(); its 'RGB888' format is B,G,R in memory like OpenCV.

    ``camera_class`` is :func:`load_picamera2`'s (a fake in tests). Its failures here (no camera
    connected, another process using it) raise, and the capture thread reopens with backoff.
    """

    def __init__(self, settings: CameraSettings, camera_class: Any) -> None:
        self._camera = camera_class()
        try:
            config = self._camera.create_video_configuration(
                main={"size": (settings.width, settings.height), "format": "RGB888"},
                controls={"FrameRate": settings.fps},
            )
            self._camera.configure(config)
            self._camera.start()
        except BaseException:
            self._camera.close()  # frees the camera for the next attempt
            raise

    def read(self) -> tuple[bool, np.ndarray | None]:
        return True, self._camera.capture_array("main")

    def release(self) -> None:
        self._camera.stop()
        self._camera.close()


_OPENERS: dict[str, Callable[[CameraSettings], Capture]] = {
    "v4l2": _open_v4l2,
    "file": _open_file,
    "stream": _open_stream,
}


class _Attempt:
    """One open-and-read cycle of the source, run by its own capture thread."""

    def __init__(self, started: float) -> None:
        self.abandoned = threading.Event()
        self.started = started
        self.last_progress = started
        self.frames = 0
        self.error: str | None = None
        self.ended = False
        self.thread: threading.Thread | None = None


class CameraSource:
    """A capture thread handing over only the newest frame, supervised and reopened on failure."""

    def __init__(
        self,
        opener: Opener,
        name: str,
        settings: CameraSettings,
        *,
        is_file: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._opener = opener
        self._name = name
        self._settings = settings
        self._is_file = is_file
        self._pace = settings.fps if is_file and settings.realtime else None
        self._lossless = is_file and not settings.realtime
        self._clock = clock
        self._video_t0: float | None = None  # lossless files: frames are stamped with video time
        self._cond = threading.Condition()
        self._pending: Frame | None = None
        self._closed = False
        self._state: Literal["starting", "ok", "failed", "ended"] = "starting"
        self._detail = f"opening {name}"
        self._frames = self._dropped = self._stale = self._reopens = 0
        self._stamps: collections.deque[float] = collections.deque(maxlen=_FPS_WINDOW)
        self._attempt: _Attempt | None = None
        self._supervisor = threading.Thread(target=self._supervise, name=f"camera-{name}", daemon=True)
        self._supervisor.start()

    # -- consumer side -------------------------------------------------------------------
    def read(self, timeout: float) -> Frame | None:
        """The newest frame not returned before, or None if none arrives within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending is None:
                if self._closed or self._state == "ended":
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._stale += 1
                    return None
                self._cond.wait(remaining)
            frame, self._pending = self._pending, None
            if self._lossless and self._attempt is not None:
                self._attempt.last_progress = self._clock()
            self._cond.notify_all()
            return frame

    @property
    def status(self) -> CameraStatus:
        with self._cond:
            fps = 0.0
            if len(self._stamps) >= 2 and self._clock() - self._stamps[-1] < self._settings.stall_timeout_s:
                span = self._stamps[-1] - self._stamps[0]
                fps = (len(self._stamps) - 1) / span if span > 0 else 0.0
            return CameraStatus(self._state, self._detail, self._frames, self._dropped, self._stale, self._reopens, round(fps, 2))

    def close(self) -> None:
        """Stop capturing and release the device (idempotent)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            attempt = self._attempt
            if self._state != "ended":
                self._state, self._detail = "ended", "closed"
            self._cond.notify_all()
        if attempt is not None:
            attempt.abandoned.set()
        self._supervisor.join(timeout=self._settings.stall_timeout_s + 1.0)
        if attempt is not None and attempt.thread is not None:
            attempt.thread.join(timeout=1.0)

    def __enter__(self) -> CameraSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- capture thread ------------------------------------------------------------------
    def _publish(self, attempt: _Attempt, image: np.ndarray) -> None:
        with self._cond:
            while self._lossless and self._pending is not None and not attempt.abandoned.is_set():
                self._cond.wait(_POLL_S)
            if attempt.abandoned.is_set():
                return
            now = self._clock()
            if self._pending is not None:
                self._dropped += 1
            timestamp = now
            if self._lossless:  # faster than real time: keep the policy's clock in video time
                self._video_t0 = now if self._video_t0 is None else self._video_t0
                timestamp = self._video_t0 + self._frames / self._settings.fps
            self._pending = Frame(image=image, timestamp=timestamp, index=self._frames)
            self._frames += 1
            self._stamps.append(now)
            attempt.frames += 1
            attempt.last_progress = now
            if self._state != "ok":
                if self._state == "failed":
                    log.info("camera %s recovered after %d reopen(s)", self._name, self._reopens)
                self._state = "ok"
                self._detail = f"{image.shape[1]}x{image.shape[0]}"
            self._cond.notify_all()

    def _capture(self, attempt: _Attempt) -> None:
        capture: Capture | None = None
        try:
            capture = self._opener()
            frames_since_open = 0
            next_due = self._clock()
            while not attempt.abandoned.is_set():
                ok, image = capture.read()
                if attempt.abandoned.is_set():
                    break
                if not ok or image is None:
                    if not self._is_file:
                        attempt.error = "read failed (source gone or stream closed)"
                    elif frames_since_open == 0:
                        attempt.error = "no frame could be decoded"
                    elif self._settings.loop:
                        capture.release()
                        capture = None
                        capture = self._opener()
                        frames_since_open = 0
                        continue
                    else:
                        attempt.ended = True
                    break
                frames_since_open += 1
                if self._pace is not None:
                    delay = next_due - self._clock()
                    if delay > 0 and attempt.abandoned.wait(delay):
                        break
                    next_due = max(next_due, self._clock() - 1.0 / self._pace) + 1.0 / self._pace
                self._publish(attempt, _to_rgb(image))
        except CameraError as exc:
            attempt.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - any backend error means "reopen", never a dead thread
            attempt.error = f"{type(exc).__name__}: {exc}"
        finally:
            if capture is not None:
                capture.release()
            with self._cond:
                self._cond.notify_all()

    # -- supervisor thread ---------------------------------------------------------------
    def _watch(self, attempt: _Attempt) -> str | None:
        """Wait until the attempt fails (→ reason), ends or the source is closed (→ None)."""
        with self._cond:
            while not self._closed and not attempt.ended and attempt.error is None:
                now = self._clock()
                waiting_for_consumer = self._lossless and self._pending is not None
                if attempt.frames == 0 and now - attempt.started > OPEN_TIMEOUT_S + self._settings.stall_timeout_s:
                    return f"no frame within {OPEN_TIMEOUT_S + self._settings.stall_timeout_s:.0f} s of opening"
                if attempt.frames and not waiting_for_consumer and now - attempt.last_progress > self._settings.stall_timeout_s:
                    return f"no new frame for {now - attempt.last_progress:.1f} s (frozen)"
                self._cond.wait(_POLL_S)
            return attempt.error

    def _supervise(self) -> None:
        backoff = self._settings.reconnect_initial_s
        while True:
            attempt = _Attempt(self._clock())
            attempt.thread = threading.Thread(target=self._capture, args=(attempt,), name=f"capture-{self._name}", daemon=True)
            with self._cond:
                if self._closed:
                    return
                self._attempt = attempt
            attempt.thread.start()
            reason = self._watch(attempt)
            attempt.abandoned.set()
            with self._cond:
                if self._closed:
                    return
                if reason is None:  # end of a file that does not loop
                    self._state, self._detail = "ended", "end of file"
                    self._cond.notify_all()
                    log.info("camera %s: end of file after %d frames", self._name, self._frames)
                    return
                if attempt.frames:
                    backoff = self._settings.reconnect_initial_s
                self._state, self._detail = "failed", reason
            log.warning("camera %s failed: %s; reopening in %.1f s", self._name, reason, backoff)
            with self._cond:
                self._cond.wait_for(lambda: self._closed, timeout=backoff)
                self._reopens += 1
            backoff = min(backoff * 2, self._settings.reconnect_max_s)


def open_camera(settings: CameraSettings, *, clock: Callable[[], float] = time.monotonic, opener: Opener | None = None) -> FrameSource:
    """Start capturing from ``settings.source``; failures show in ``status``, never as exceptions.

    Only a configuration that can never work raises (ConfigError): Picamera2 missing or unusable.
    ``opener`` replaces the backend (tests).
    """
    kind = resolve_kind(settings)
    if opener is None and kind == "picamera2":
        camera_class = load_picamera2()
        opener = lambda: Picamera2Capture(settings, camera_class)  # noqa: E731
    elif opener is None:
        backend = _OPENERS[kind]
        opener = lambda: backend(settings)  # noqa: E731
    return CameraSource(opener, redact_source(settings.source), settings, is_file=kind == "file", clock=clock)
