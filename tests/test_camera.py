"""Camera sources against real files and a real MJPEG stream served on loopback."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from gate.camera import CameraStatus, FrameSource, open_camera, redact_source, resolve_kind
from gate.errors import ConfigError
from gate.settings import CameraSettings
from gate.types import Frame

pytestmark = pytest.mark.timeout(30)

WIDTH, HEIGHT = 160, 120


BITS = 6  # the counter is drawn as 6 black/white bars: survives MPEG-4 and JPEG compression
BAR = WIDTH // BITS


def counter_image(n: int) -> np.ndarray:
    """BGR frame: ``n`` mod 64 as bars in the top half, pure red (BGR 0,0,255) in the bottom half."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for bit in range(BITS):
        if n >> bit & 1:
            image[: HEIGHT // 2, bit * BAR : (bit + 1) * BAR] = 255
    image[HEIGHT // 2 :, :, 2] = 255
    return image


def counter_of(frame: Frame) -> int:
    """Recover the counter from an RGB frame, checking on the way that red came out as red."""
    bottom = frame.image[HEIGHT // 2 + 8 :].reshape(-1, 3).mean(axis=0)
    assert bottom[0] > 200 and bottom[2] < 60, f"frame is not RGB (bottom half mean {bottom})"
    top = frame.image[4 : HEIGHT // 2 - 4]
    return sum(1 << bit for bit in range(BITS) if top[:, bit * BAR + 4 : (bit + 1) * BAR - 4].mean() > 128)


@pytest.fixture(scope="module")
def video_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "counter.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for n in range(64):
        writer.write(counter_image(n))
    writer.release()
    return path


def read_all(source: FrameSource, limit: int, timeout: float = 2.0) -> list[Frame]:
    frames = []
    while len(frames) < limit:
        frame = source.read(timeout)
        if frame is None:
            break
        frames.append(frame)
    return frames


def wait_for(source: FrameSource, predicate: Callable[[CameraStatus], bool], timeout: float) -> CameraStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = source.status
        if predicate(status):
            return status
        source.read(0.05)
    raise AssertionError(f"camera status never matched within {timeout} s: {source.status}")


# -- files ------------------------------------------------------------------------------------


def test_file_reads_every_frame_as_rgb_then_ends(video_file: Path) -> None:
    settings = CameraSettings(source=str(video_file), realtime=False)
    with open_camera(settings) as camera:
        frames = read_all(camera, 100)
        status = camera.status
        assert camera.read(0.2) is None
    assert len(frames) == 64
    assert [f.index for f in frames] == list(range(64))
    assert frames[0].image.shape == (HEIGHT, WIDTH, 3) and frames[0].image.dtype == np.uint8
    assert [counter_of(f) for f in frames] == list(range(64))
    assert status.state == "ended" and status.frames == 64 and status.dropped == 0


def test_file_loop_wraps_around(video_file: Path) -> None:
    settings = CameraSettings(source=str(video_file), realtime=False, loop=True)
    with open_camera(settings) as camera:
        frames = read_all(camera, 150)
        assert camera.status.state == "ok"
    assert len(frames) == 150
    assert [counter_of(f) for f in frames[60:70]] == [60, 61, 62, 63, 0, 1, 2, 3, 4, 5]


def test_slow_consumer_gets_newest_frames_and_drops_are_counted(video_file: Path) -> None:
    settings = CameraSettings(source=str(video_file), realtime=True, fps=120.0)
    with open_camera(settings) as camera:
        frames = []
        while (frame := camera.read(1.0)) is not None:
            frames.append(frame)
            time.sleep(0.05)  # a consumer slower than the source
        status = camera.status
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices)), "a frame came twice or out of order"
    assert len(frames) < 64 and status.dropped > 0
    assert status.dropped + len(frames) == status.frames == 64


def test_missing_file_fails_with_clear_detail_and_keeps_retrying(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.mp4"
    settings = CameraSettings(source=str(missing), reconnect_initial_s=0.1, reconnect_max_s=0.2)
    with open_camera(settings) as camera:
        status = wait_for(camera, lambda s: s.reopens >= 3, timeout=5.0)
        assert camera.read(0.1) is None
    assert status.state == "failed"
    assert "video file not found" in status.detail and str(missing) in status.detail


def test_undecodable_file_fails(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with open_camera(CameraSettings(source=str(junk), reconnect_initial_s=0.1)) as camera:
        status = wait_for(camera, lambda s: s.state == "failed", timeout=5.0)
    assert "junk.mp4" in status.detail or "decoded" in status.detail


def test_missing_v4l2_device_fails_and_retries() -> None:
    settings = CameraSettings(source="/dev/video97", reconnect_initial_s=0.1, reconnect_max_s=0.2)
    with open_camera(settings) as camera:
        status = wait_for(camera, lambda s: s.reopens >= 2, timeout=5.0)
    assert status.state == "failed" and "/dev/video97" in status.detail


# -- a real MJPEG stream on loopback ------------------------------------------------------------


class MjpegServer:
    """multipart/x-mixed-replace JPEG stream (like an IP camera) that can be stopped and restarted."""

    def __init__(self, port: int = 0, fps: float = 25.0) -> None:
        self.stop_event = threading.Event()
        self.frozen = threading.Event()  # set: keep connections open but send nothing (a hung camera)
        self.counter = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not outer.stop_event.is_set():
                        if outer.frozen.is_set():
                            time.sleep(0.05)
                            continue
                        ok, jpeg = cv2.imencode(".jpg", counter_image(outer.counter))
                        outer.counter += 1
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg.tobytes() + b"\r\n")
                        time.sleep(1.0 / fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def stop(self) -> None:
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture()
def mjpeg_server() -> Iterator[MjpegServer]:
    server = MjpegServer()
    yield server
    server.stop()


def test_mjpeg_stream_is_read(mjpeg_server: MjpegServer) -> None:
    settings = CameraSettings(source=mjpeg_server.url, stall_timeout_s=1.0)
    assert resolve_kind(settings) == "stream"
    with open_camera(settings) as camera:
        frames = read_all(camera, 10, timeout=5.0)
        status = camera.status
    assert len(frames) == 10
    assert frames[0].image.shape == (HEIGHT, WIDTH, 3)
    assert [f.index for f in frames] == sorted({f.index for f in frames})
    assert status.state == "ok" and status.fps > 0


def test_stream_stopped_then_restarted_recovers_by_itself(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gate.camera")
    server = MjpegServer()
    port = server.port
    settings = CameraSettings(source=server.url, stall_timeout_s=1.0, reconnect_initial_s=0.2, reconnect_max_s=0.8)
    with open_camera(settings) as camera:
        assert len(read_all(camera, 5, timeout=5.0)) == 5
        server.stop()
        stopped_at = time.monotonic()
        failed = wait_for(camera, lambda s: s.state == "failed", timeout=4.0)
        detected_after = time.monotonic() - stopped_at
        wait_for(camera, lambda s: s.reopens >= 1, timeout=4.0)

        server = MjpegServer(port=port)
        try:
            recovered = wait_for(camera, lambda s: s.state == "ok", timeout=8.0)
            frames_after = read_all(camera, 5, timeout=5.0)
        finally:
            server.stop()
    assert failed.detail  # says why
    assert detected_after < 4.0
    assert recovered.reopens >= 1 and len(frames_after) == 5
    assert any(r.levelno == logging.WARNING and str(port) in r.getMessage() for r in caplog.records)
    assert any(r.levelno == logging.INFO and "recovered" in r.getMessage() for r in caplog.records)


def test_frozen_stream_is_detected_and_reopened(mjpeg_server: MjpegServer) -> None:
    settings = CameraSettings(source=mjpeg_server.url, stall_timeout_s=1.0, reconnect_initial_s=0.2, reconnect_max_s=0.4)
    with open_camera(settings) as camera:
        assert len(read_all(camera, 3, timeout=5.0)) == 3
        mjpeg_server.frozen.set()
        frozen_at = time.monotonic()
        failed = wait_for(camera, lambda s: s.state == "failed", timeout=4.0)
        detected_after = time.monotonic() - frozen_at
        mjpeg_server.frozen.clear()
        recovered = wait_for(camera, lambda s: s.state == "ok", timeout=8.0)
        assert camera.read(5.0) is not None
    assert detected_after < 3.0
    assert "frozen" in failed.detail or "read failed" in failed.detail
    assert recovered.reopens >= 1


# -- small pieces ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("0", "v4l2"),
        ("/dev/video2", "v4l2"),
        ("rtsp://cam.local/stream", "stream"),
        ("https://cam.local/mjpg", "stream"),
        ("clips/door.mp4", "file"),
        ("picamera2", "picamera2"),
    ],
)
def test_kind_is_guessed_from_the_source(source: str, kind: str) -> None:
    assert resolve_kind(CameraSettings(source=source)) == kind


def test_secrets_in_urls_are_redacted() -> None:
    shown = redact_source("rtsp://admin:hunter2@10.0.0.5:554/live?token=abc&channel=1")
    assert "hunter2" not in shown and "admin" not in shown and "abc" not in shown
    assert "10.0.0.5:554/live" in shown and "channel=1" in shown
    assert redact_source("/dev/video0") == "/dev/video0"


def test_picamera2_missing_is_a_clear_error() -> None:
    pytest.importorskip("cv2")
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="picamera2"):
            open_camera(CameraSettings(source="picamera2"))
    else:
        pytest.skip("picamera2 is installed here")


def test_close_is_idempotent_and_read_after_close_returns_none(video_file: Path) -> None:
    camera = open_camera(CameraSettings(source=str(video_file), realtime=False))
    assert camera.read(2.0) is not None
    camera.close()
    camera.close()
    assert camera.read(0.1) is None


def test_stale_reads_are_counted_and_no_frame_comes_twice() -> None:
    class OneFrame:
        """A fake capture that delivers one frame, then blocks like a frozen camera."""

        def __init__(self) -> None:
            self.calls = 0

        def read(self) -> tuple[bool, np.ndarray | None]:
            self.calls += 1
            if self.calls > 1:
                time.sleep(0.3)
            return self.calls == 1, counter_image(7) if self.calls == 1 else None

        def release(self) -> None:
            pass

    settings = CameraSettings(source="fake", kind="stream", stall_timeout_s=5.0, reconnect_initial_s=5.0)
    with open_camera(settings, opener=OneFrame) as camera:
        first = camera.read(2.0)
        second = camera.read(0.1)
        third = camera.read(0.1)
        status = camera.status
    assert first is not None and second is None and third is None
    assert status.stale >= 2


def test_a_camera_that_comes_back_is_used_again_within_the_capped_backoff() -> None:
    """Unplugged for 4 s with the default settings: the old 30 s cap retried only at 7.5 s (3.5 s late)."""
    from gate.errors import CameraError

    settings = CameraSettings(source="fake", kind="v4l2")
    outage_s = 4.0
    started = time.monotonic()

    class Returning:
        """Raises like an unplugged camera until ``outage_s`` has passed, then delivers frames."""

        def __init__(self) -> None:
            if time.monotonic() - started < outage_s:
                raise CameraError("cannot open camera fake (unplugged)")

        def read(self) -> tuple[bool, np.ndarray | None]:
            time.sleep(0.02)
            return True, counter_image(1)

        def release(self) -> None:
            pass

    with open_camera(settings, opener=Returning) as camera:
        frame = camera.read(timeout=outage_s + 5.0)
        while frame is None and time.monotonic() - started < outage_s + 5.0:
            frame = camera.read(timeout=0.5)
    assert frame is not None
    late_s = time.monotonic() - started - outage_s
    assert late_s <= settings.reconnect_max_s + 0.5 <= 5.0, f"used again {late_s:.1f} s after it came back"


# -- Picamera2 start-up failures, faked at the library boundary --------------------------------


def importer(error: Exception) -> Callable[[str], object]:
    """An import_module whose ``picamera2`` raises as the real import does when broken."""

    def import_module(name: str) -> object:
        assert name == "picamera2"
        raise error

    return import_module


@pytest.mark.parametrize(
    ("error", "fragment"),
    [
        # simplejpeg built against Debian's numpy 1.24, imported under pip's numpy 2 (picamera2's known issue)
        (ValueError("numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header, got 88 from PyObject"),
         "re-run systemd/install-pi.sh (it pins the venv's numpy to the system's)"),
        (ModuleNotFoundError("No module named 'libcamera'"), "sudo apt install python3-picamera2"),
        (RuntimeError("libcamera:\nIPA proxy failed"), "picamera2 cannot be imported (RuntimeError: libcamera: IPA proxy failed)"),
    ],
)
def test_a_picamera2_that_cannot_be_imported_is_one_config_error_line(error: Exception, fragment: str) -> None:
    from gate.camera import require_backend

    with pytest.raises(ConfigError) as caught:
        require_backend(CameraSettings(source="picamera2"), import_module=importer(error))
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_a_picamera2_camera_that_fails_to_open_is_retried_and_freed_each_time() -> None:
    """No camera on the ribbon, or another process using it: Picamera2 raises in its constructor
    or when configured. That may come back, so the source reports it and reopens with backoff."""
    from gate.camera import Picamera2Capture

    class BusyCamera:
        opened = closed = 0

        def __init__(self) -> None:
            BusyCamera.opened += 1

        def create_video_configuration(self, **_: object) -> dict:
            return {}

        def configure(self, _: object) -> None:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")

        def close(self) -> None:
            BusyCamera.closed += 1

    settings = CameraSettings(source="picamera2", reconnect_initial_s=0.05, reconnect_max_s=0.1)
    with open_camera(settings, opener=lambda: Picamera2Capture(settings, BusyCamera)) as source:
        status = wait_for(source, lambda s: s.reopens >= 2, timeout=10)
    assert status.state == "failed" and status.detail == "RuntimeError: Failed to acquire camera: Device or resource busy"
    assert BusyCamera.opened >= 3 and BusyCamera.closed == BusyCamera.opened  # each attempt let go of the camera
