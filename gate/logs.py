"""Logging set-up, done once by the CLI.

``text`` is for a person at a terminal (and journald, which adds its own timestamps);
``json`` gives one object per line with any ``extra=`` fields, for log shippers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # TensorFlow-free, but LiteRT and OpenCV can still be chatty.
    logging.getLogger("PIL").setLevel(logging.WARNING)
    quiet_opencv(level)


#: OpenCV's log levels (the same numbers in OpenCV 4 and 5).
_CV_LOG_ERROR, _CV_LOG_WARNING = 2, 3


def quiet_opencv(level: str, cv2: Any = None) -> None:
    """OpenCV's own log (its "[ WARN:…] … can't open" lines, written past Python's logging) only
    shows with INFO or DEBUG: the gate reports what failed in its own words.

    OpenCV 5 sets it through ``cv2.utils.logging``, OpenCV 4 (what a Pi with Debian 12's numpy 1.24
    gets) through ``cv2.setLogLevel``; ``cv2`` is the module (a fake in tests)."""
    if cv2 is None:
        import cv2
    verbose = logging.getLevelName(level) <= logging.INFO
    api = getattr(cv2.utils, "logging", None) or cv2
    api.setLogLevel(_CV_LOG_WARNING if verbose else _CV_LOG_ERROR)


_NATIVE_STDERR = threading.Lock()


@contextlib.contextmanager
def native_stderr_to_log(logger: logging.Logger, chatter: Callable[[str], bool]) -> Iterator[None]:
    """Native libraries (LiteRT, FFmpeg) write to file descriptor 2 past Python's logging. Within
    this block fd 2 goes to a file; afterwards its ``chatter`` lines become INFO records of
    ``logger`` (shown with --verbose), every other line is written to stderr as it was."""
    with _NATIVE_STDERR, tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep clean
            yield
            return
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if chatter(line):
                    logger.info("%s", line.rstrip().removeprefix("INFO: "))
                elif line.strip():
                    sys.stderr.write(line)
            sys.stderr.flush()
