"""OpenCV's own log level is set through whichever API the installed OpenCV has: every gate-cli
command sets it, so a missing one stops the tool (found by scripts/pi_smoke.sh on OpenCV 4.11)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gate.logs import quiet_opencv


class LevelRecorder:
    def __init__(self) -> None:
        self.levels: list[int] = []

    def setLogLevel(self, level: int) -> None:  # noqa: N802 - OpenCV's name
        self.levels.append(level)


@pytest.mark.parametrize(("level", "opencv_level"), [("WARNING", 2), ("ERROR", 2), ("INFO", 3), ("DEBUG", 3)])
def test_opencv_4_has_set_log_level_and_no_utils_logging(level: str, opencv_level: int) -> None:
    """OpenCV 4.11: what pip installs beside Debian 12's numpy 1.24 (systemd/install-pi.sh)."""
    opencv4 = LevelRecorder()
    opencv4.utils = SimpleNamespace()
    quiet_opencv(level, opencv4)
    assert opencv4.levels == [opencv_level]


def test_opencv_5_sets_it_through_utils_logging() -> None:
    api = LevelRecorder()
    quiet_opencv("WARNING", SimpleNamespace(utils=SimpleNamespace(logging=api)))
    assert api.levels == [2]


def test_the_installed_opencv_takes_it() -> None:
    quiet_opencv("INFO")
    quiet_opencv("WARNING")
