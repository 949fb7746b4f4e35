"""The live view in a real browser: `gate-cli demo` on the synthetic door clip with the preview on,
bound to every interface with a token, opened in Debian's headless Chromium (driven by Playwright,
never `playwright install`; scripts/bootstrap.sh installs the chromium package).

Set ``MASKGATE_PREVIEW_SCREENSHOT=docs/preview.png`` to also write the README's screenshot there
(it shows our own synthetic GAN faces, never a photo of a real person)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from gate.models import default_model_path
from gate.annotate import LABEL_COLOURS
from tests.settings_files import to_toml
from tests.test_preview import free_port, get

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
TOKEN = "browser-test-token"

try:
    import playwright.sync_api as playwright
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - the test extra installs it
    playwright = None

pytestmark = [
    pytest.mark.skipif(playwright is None, reason="needs playwright (pip install -e '.[test]')"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/bootstrap.sh installs it)"),
    pytest.mark.skipif(not default_model_path().exists(), reason="the shipped model is not in gate/models/"),
    pytest.mark.timeout(180),
]


@pytest.fixture(scope="module")
def door_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.door_clip import make_door_clip

    path = tmp_path_factory.mktemp("preview-clip") / "door.mp4"
    make_door_clip(path, fps=10)
    return path


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the demo exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def box_pixels(png: bytes) -> int:
    """Pixels in one of the face-box colours (the corridor scene has none of these saturated colours)."""
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(int)
    return int(sum((np.abs(image - np.array(colour)).max(axis=2) < 40).sum() for colour in LABEL_COLOURS.values()))


def test_the_live_view_shows_the_demo_with_boxes_and_refuses_a_request_without_the_token(tmp_path, door_clip):
    port = free_port()
    settings = tmp_path / "settings.toml"
    settings.write_text(to_toml({
        "gate": {"state_dir": str(tmp_path / "var")},
        "detector": {"roi": [0.1, 0.0, 0.9, 1.0]},  # not the whole frame, so the page shows it drawn
        "preview": {"enabled": True, "host": "0.0.0.0", "port": port, "fps": 5},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASKGATE__")} | {"MASKGATE_PREVIEW_TOKEN": TOKEN}
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen([sys.executable, "-m", "gate.cli", "--settings", str(settings), "demo", "--clip", str(door_clip), "--verbose"],
                                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, demo, log)
        # listening on every interface: a request without the token is refused, whatever it asks for
        assert [get(port, path)[0] for path in ("/", "/frame.jpg", "/status.json")] == [401, 401, 401]

        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": 1100, "height": 900},
            )
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/?token={TOKEN}")
                assert page.url == f"http://127.0.0.1:{port}/"  # the token left the address bar for a cookie
                # (Playwright's locator checks: the page's Content-Security-Policy forbids the eval wait_for_function needs)
                face_on_screen = re.compile(r"^[1-9]")  # body[data-faces]: faces in the frame on screen, set by the page
                expect(page.locator("body")).to_have_attribute("data-faces", face_on_screen, timeout=60_000)
                assert box_pixels(page.locator("#frame").screenshot()) > 100  # a box is drawn on what the browser shows
                # the panel follows the gate: a decision listed, stage times, the tuning counts
                expect(page.locator("#decisions li.grant, #decisions li.deny").first).to_be_visible(timeout=60_000)
                expect(page.locator("body")).to_have_attribute("data-faces", face_on_screen, timeout=60_000)  # a face on screen again
                assert page.locator("#detect-ms").inner_text().endswith(" ms")
                assert "detector.min_face_px" in page.locator("#advice").inner_text()
                shot = page.screenshot(full_page=True)
            finally:
                browser.close()
        (tmp_path / "preview.png").write_bytes(shot)
        if os.environ.get("MASKGATE_PREVIEW_SCREENSHOT"):
            Path(os.environ["MASKGATE_PREVIEW_SCREENSHOT"]).write_bytes(shot)
        assert box_pixels(shot) > 100
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)  # the demo stops early (its summary then counts missed visitors)
        demo.wait(30)
    text = log.read_text()
    assert "preview: page opened by 127.0.0.1:" in text and "HeadlessChrome" in text  # who opened it, logged with the time
    assert "preview: refused /frame.jpg from 127.0.0.1:" in text
    with pytest.raises(ConnectionRefusedError):
        get(port, "/")  # the page goes with the gate
