"""The installer's live view (gate/preview/): settings, the loop's hook, tuning counts, the server's
access rules and what it draws. Real HTTP on loopback (uvicorn), the real gate loop with the scripted
parts of tests/test_daemon.py, and serve() with the real models. The browser test is
tests/test_preview_browser.py."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from gate.actuators import Door
from gate.camera import CameraStatus
from gate.daemon import Gate, serve
from gate.vision.detector import OUTSIDE_ROI, TOO_SMALL
from gate.errors import ConfigError
from gate.journal import Journal
from gate.outbox import Outbox
from gate.policy import DecisionPolicy, FaceObservation, TrackedFace
from gate.annotate import LABEL_COLOURS
from gate.preview.feed import HISTOGRAM_BIN_PX, PreviewFeed, TuningCounts
from gate.preview.server import PreviewServer
from gate.settings import DetectorSettings, DoorSettings, OutboxSettings, PolicySettings, PreviewSettings, parse_settings
from gate.types import WITH_MASK, Box, Classification, Detection, Frame
from tests.test_daemon import SHIPPED_MODEL, LabelByPixel, OneFaceDetector, ScriptedCamera, frame, run_script

TOKEN = "s3cret-preview-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request to 127.0.0.1 (whatever address the server listens on): status, headers (any case), body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def masked_face(track_id: int, box: Box) -> TrackedFace:
    observation = FaceObservation(Detection(box, 0.9, track_id=track_id), Classification(WITH_MASK, {WITH_MASK: 0.96, "without_mask": 0.04}))
    return TrackedFace(track_id, observation, None, None)


def listening_sockets() -> set[str]:
    """Inodes of the TCP sockets this process listens on (from /proc: what `ss -ltp` would show)."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    listening.add(fields[9])
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[8:-1])
    return listening & ours


# -- settings --------------------------------------------------------------------------------


def test_the_preview_is_off_by_default_and_its_section_names_a_wrong_key():
    assert parse_settings({}, environ={}).preview.enabled is False
    assert parse_settings({}, environ={"MASKGATE__PREVIEW__ENABLED": "true"}).preview.enabled is True
    with pytest.raises(ConfigError, match=r"preview\.enabeld: unknown key"):
        parse_settings({"preview": {"enabeld": True}}, environ={})
    with pytest.raises(ConfigError, match=r"preview\.fps"):
        parse_settings({"preview": {"fps": 0}}, environ={})


def test_listening_beyond_loopback_needs_a_token(tmp_path):
    beyond = parse_settings({"preview": {"enabled": True, "host": "0.0.0.0"}}, environ={})
    with pytest.raises(ConfigError, match=r"preview\.host = '0\.0\.0\.0' listens beyond loopback: set a token"):
        PreviewServer.from_settings(beyond, environ={})
    assert PreviewServer.from_settings(beyond, environ={"MASKGATE_PREVIEW_TOKEN": TOKEN}).url.startswith("http://0.0.0.0:")
    credential = parse_settings({"preview": {"enabled": True, "host": "0.0.0.0", "token_file": "%d/preview_token"}}, environ={})
    with pytest.raises(ConfigError, match=r"preview\.token_file = '%d/preview_token' needs \$CREDENTIALS_DIRECTORY"):
        PreviewServer.from_settings(credential, environ={})
    (tmp_path / "preview_token").write_text(TOKEN + "\n")
    PreviewServer.from_settings(credential, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})  # read from the credential
    for host in ("127.0.0.1", "localhost", "::1"):  # loopback: a token is optional
        PreviewServer.from_settings(parse_settings({"preview": {"enabled": True, "host": host}}, environ={}), environ={})


# -- the loop's side: the hook and the tuning counts -----------------------------------------


@pytest.fixture()
def door_parts(tmp_path):
    door = Door(DoorSettings(unlock_s=0.3, deny_indication_s=0.2), pin_factory=MockFactory())
    outbox = Outbox(tmp_path / "outbox.sqlite3", OutboxSettings())
    yield door, outbox, Journal(tmp_path / "decisions.jsonl", 100_000)
    door.close()
    outbox.close()


def test_the_gate_offers_each_frame_with_its_tracked_faces_and_each_decision(door_parts):
    door, outbox, journal = door_parts
    feed = PreviewFeed(DetectorSettings())
    camera = ScriptedCamera([frame(1)] * 6 + [frame(0)] * 2)
    gate = Gate(gate_id="test-door", camera=camera, detector=OneFaceDetector(), classifier=LabelByPixel(),
                policy=DecisionPolicy(PolicySettings(), 0.5), door=door, outbox=outbox, journal=journal, preview=feed)
    run_script(gate)
    assert feed.latest is not None and feed.latest.frame.index == 8 and feed.latest.faces == []  # the newest frame only
    assert feed.tuning.frames == 8 and feed.tuning.frames_with_face == 6
    [decision] = feed.decisions
    assert (decision["verdict"], decision["relay"], decision["faces"][0]["track_id"]) == ("grant", "energised", 1)
    assert decision["faces"][0]["label"] == WITH_MASK and decision["faces"][0]["confidence"] == pytest.approx(0.95)
    assert set(feed.stage_ms) >= {"detect", "classify", "policy"}


def test_the_policy_names_the_track_of_each_face_of_the_latest_frame():
    policy = DecisionPolicy(PolicySettings(evidence_frames=2), 0.5)
    left, right = masked_face(1, Box(10, 10, 50, 50)).observation, masked_face(2, Box(300, 10, 50, 50)).observation
    policy.update(0.0, [left])
    policy.update(0.1, [left, right])
    assert [(t.track_id, t.observation.detection.box.x, t.reading) for t in policy.tracked()] == [(1, 10, WITH_MASK), (2, 300, None)]
    policy.update(0.2, [right])  # the left face is remembered, not seen: not drawn
    assert [t.track_id for t in policy.tracked()] == [2]


def test_tuning_counts_face_sizes_and_why_faces_were_ignored():
    counts = TuningCounts(DetectorSettings(min_face_px=40, roi=(0.2, 0.0, 0.8, 1.0)))
    small, outside = Detection(Box(0, 0, 20, 20), 0.8), Detection(Box(600, 0, 60, 60), 0.8)
    counts.count([masked_face(1, Box(300, 100, 100, 100))], [(small, TOO_SMALL)])
    counts.count([], [(outside, OUTSIDE_ROI)])
    counts.count([], [])
    report = counts.report()
    assert (report["frames"], report["frames_with_face"], report["faces_found"], report["faces_passed"]) == (3, 1, 3, 1)
    assert report["share_frames_with_face"] == pytest.approx(1 / 3)
    assert report["share_under_min_size"] == pytest.approx(1 / 3) and report["share_outside_roi"] == pytest.approx(1 / 3)
    histogram = report["histogram"]
    assert histogram["passed"][100 // HISTOGRAM_BIN_PX] == 1 and histogram["under_min_size"][20 // HISTOGRAM_BIN_PX] == 1
    assert histogram["outside_roi"][60 // HISTOGRAM_BIN_PX] == 1 and sum(map(sum, (histogram[k] for k in ("passed", "under_min_size", "outside_roi")))) == 3
    assert [a["key"] for a in report["advice"]] == ["detector.min_face_px", "detector.roi"]
    assert report["advice"][0]["text"].startswith("33% of the faces found were narrower than 40 px")
    counts.count([masked_face(1, Box(0, 0, 5000, 5000))], [])  # wider than the last bin: counted in it
    assert counts.report()["histogram"]["passed"][-1] == 1


# -- the server --------------------------------------------------------------------------------


@pytest.fixture()
def server():
    """A preview on every interface with a token, fed by hand (the loop's side is tested above)."""
    settings = PreviewSettings(enabled=True, host="0.0.0.0", port=free_port(), fps=10)
    with PreviewServer(settings, DetectorSettings(roi=(0.1, 0.1, 0.9, 0.9)), "front-door", token=TOKEN) as preview:
        yield preview


def offer(feed: PreviewFeed, index: int, faces: list[TrackedFace], image: np.ndarray | None = None) -> np.ndarray:
    image = np.full((240, 320, 3), 90, np.uint8) if image is None else image
    feed.offer(Frame(image, index / 10, index), faces, [], door="locked", stage_ms={"detect": 4.0, "classify": 2.0, "policy": 0.1})
    return image


def test_off_loopback_every_request_needs_the_token(server, caplog):
    caplog.set_level(logging.INFO, logger="gate.preview.server")
    offer(server.feed, 1, [])
    for path in ("/", "/frame.jpg", "/status.json", "/preview.js", "/?token=wrong"):
        status, headers, body = get(server.port, path)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith("Bearer") and b"token" in body
    assert get(server.port, "/frame.jpg", {"Authorization": "Bearer wrong"})[0] == 401
    assert "preview: refused /frame.jpg from 127.0.0.1:" in caplog.text
    assert "page opened" not in caplog.text
    status, headers, _ = get(server.port, "/frame.jpg", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and headers["Cache-Control"] == "no-store"
    # a browser opens /?token=… once: a cookie, and the token leaves the address bar
    status, headers, _ = get(server.port, f"/?token={TOKEN}")
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=strict" in headers["Set-Cookie"]
    status, _, page = get(server.port, "/", {"Cookie": cookie, "User-Agent": "installer-phone"})
    assert status == 200 and b"live view" in page
    assert get(server.port, "/status.json", {"Cookie": cookie})[0] == 200
    assert "preview: page opened by 127.0.0.1:" in caplog.text and "(installer-phone)" in caplog.text


def test_on_loopback_without_a_token_the_page_opens_and_each_opening_is_logged(caplog):
    caplog.set_level(logging.INFO, logger="gate.preview.server")
    settings = PreviewSettings(enabled=True, port=free_port())
    with PreviewServer(settings, DetectorSettings(), "front-door", token=None) as preview:
        assert get(preview.port, "/frame.jpg")[0] == 204  # no frame yet: nothing, not an old one
        get(preview.port, "/", {"User-Agent": "first"})
        get(preview.port, "/", {"User-Agent": "second"})
        status, _, body = get(preview.port, "/status.json")
    assert status == 200
    opened = json.loads(body)["opened"]
    assert [o["browser"] for o in opened] == ["second", "first"] and all(o["by"].startswith("127.0.0.1:") and o["time"].endswith("Z") for o in opened)
    assert caplog.text.count("preview: page opened by 127.0.0.1:") == 2


def test_the_frame_shows_each_face_box_in_its_label_colour_and_the_camera_frame_is_untouched(server):
    box = Box(100, 60, 80, 90)
    image = offer(server.feed, 1, [masked_face(7, box)])
    untouched = image.copy()
    status, headers, body = get(server.port, "/frame.jpg", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and (headers["X-Frame-Index"], headers["X-Faces"]) == ("1", "1")
    drawn = cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(int)
    green = np.array(LABEL_COLOURS[WITH_MASK])
    left_edge = drawn[int(box.y + 20): int(box.y + box.h - 20), int(box.x)]
    assert (np.abs(left_edge - green).max(axis=1) < 60).all()  # the box's edge, through JPEG
    assert np.abs(drawn[int(box.y + box.h / 2), int(box.x + box.w / 2)] - 90).max() < 20  # the face itself is not painted over
    np.testing.assert_array_equal(image, untouched)  # drawn on a copy: the gate's frame is not changed


def test_a_stalled_viewer_costs_the_loop_nothing_and_others_get_the_newest_frame(server):
    feed = server.feed
    big = np.random.default_rng(1).integers(0, 255, (480, 640, 3), np.uint8)  # noise: a large JPEG
    offer(feed, 0, [], big)
    stalled = []
    for _ in range(5):  # browsers that ask for frames and never read them
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /frame.jpg HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode() * 20)
        stalled.append(sock)
    try:
        slowest = 0.0
        for index in range(1, 301):
            started = time.perf_counter()
            offer(feed, index, [masked_face(1, Box(10, 10, 50, 50))], big)
            slowest = max(slowest, time.perf_counter() - started)
        assert feed.latest.frame.index == 300  # one slot: the newest, nothing queued behind it
        time.sleep(2 / server.settings.fps)  # the server draws at most preview.fps frames a second, however many ask
        status, headers, _ = get(server.port, "/frame.jpg", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and headers["X-Frame-Index"] == "300"
        assert slowest < 0.05, f"an offer took {slowest * 1000:.1f} ms"  # references and counters only (50 ms: a busy CI machine)
    finally:
        for sock in stalled:
            sock.close()


def test_a_port_in_use_is_a_configuration_error_naming_the_key():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = PreviewSettings(enabled=True, port=taken.getsockname()[1])
        with pytest.raises(ConfigError, match=r"preview\.port: cannot listen on 127\.0\.0\.1:\d+"):
            with PreviewServer(settings, DetectorSettings(), "front-door", token=None):
                pass


# -- serve(): the daemon's way ----------------------------------------------------------------


class EndlessCamera:
    """Grey frames at ~30 fps until the test stops the gate."""

    def __init__(self) -> None:
        self.index = 0

    def read(self, timeout: float) -> Frame | None:
        time.sleep(1 / 30)
        self.index += 1
        return Frame(np.full((240, 320, 3), 128, np.uint8), time.monotonic(), self.index)

    @property
    def status(self) -> CameraStatus:
        return CameraStatus("ok", "", self.index, 0, 0, 0, 30.0)

    def close(self) -> None:
        pass

    def __enter__(self) -> EndlessCamera:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_briefly(tmp_path: Path, preview: dict, check) -> None:
    """serve() on the endless camera in a thread, ``check()`` while it runs, then a clean stop."""
    settings = parse_settings({
        "gate": {"state_dir": str(tmp_path / "var")}, "classifier": {"model": str(SHIPPED_MODEL)}, "preview": preview,
    }, environ={})
    camera, stop, result = EndlessCamera(), threading.Event(), {}
    worker = threading.Thread(target=lambda: result.update(serve(settings, stop=stop, camera=camera)))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while camera.index < 10 and worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert camera.index >= 10, "the gate did not start"
        check()
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive() and result["frames"] >= 10


@pytest.mark.skipif(not SHIPPED_MODEL.exists(), reason="the shipped model is not in models/")
def test_the_daemon_listens_only_when_the_preview_is_on_and_then_serves_its_frames(tmp_path):
    before = listening_sockets()

    def nothing_listens() -> None:
        assert listening_sockets() == before

    serve_briefly(tmp_path, {}, nothing_listens)
    port = free_port()

    def frames_are_served() -> None:
        assert len(listening_sockets() - before) == 1
        status, headers, body = get(port, "/frame.jpg")
        assert status == 200 and body[:2] == b"\xff\xd8" and int(headers["X-Frame-Index"]) >= 1
        status, _, body = get(port, "/status.json")
        assert status == 200 and json.loads(body)["door"] == "locked" and json.loads(body)["tuning"]["frames"] >= 1

    serve_briefly(tmp_path, {"enabled": True, "port": port}, frames_are_served)
    with pytest.raises(ConnectionRefusedError):
        get(port, "/")  # stopped with the gate


def test_the_camera_rate_is_the_smoothed_rate_of_the_frames_offered():
    now = [0.0]
    feed = PreviewFeed(DetectorSettings(), clock=lambda: now[0])
    assert feed.fps == 0.0
    for index, interval in enumerate([0.02, 0.05] * 50):  # alternating: 1/mean interval, not the mean of 1/interval (35 fps)
        now[0] += interval
        offer(feed, index, [])
    assert feed.fps == pytest.approx(1 / 0.035, rel=0.05)
