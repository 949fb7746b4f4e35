"""Wall-clock time, and whether it can be trusted yet.

A Raspberry Pi has no real-time clock: it boots at the time it was last shut down (or 1970) and
jumps, by hours or months, when NTP answers. Durations (the door's unlock time, cooldowns, timers,
latencies) therefore never use wall time: they use ``time.monotonic``. Wall time is only a label
(an event's ``time``) or a comparison with another machine's instant (a remote command's
``expires``). The first is flagged while it is not trusted (``clock_synced`` on the event; order by
``seq``); the second is refused outright (a command's expiry means nothing on a wrong clock).

:class:`SystemClock` asks, in order, until one answers: the kernel (``adjtimex``: NTP clients such
as systemd-timesyncd or chrony clear ``STA_UNSYNC`` once synchronised; systemd's ``ProtectClock=``
refuses even this read-only call, systemd issue 26413), timesyncd's flag file, then ``timedatectl``
(timedated asks the kernel outside our sandbox: chrony and ntpd too). Unsynchronised, it asks again
at most every :data:`RECHECK_S`; once synchronised it stays trusted (the kernel keeps disciplining
the clock). Tests pass their own :class:`WallClock`, or their own checks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

TIME_ERROR = 5  # adjtimex(2)'s answer while the clock is not synchronised
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")  # touched by systemd-timesyncd on sync
RECHECK_S = 10.0


class WallClock(Protocol):
    def now(self) -> datetime:
        """The current UTC time (aware)."""
        ...

    def synchronised(self) -> bool:
        """Whether :meth:`now` can be trusted (NTP has set the clock since boot)."""
        ...


def _kernel_synchronised() -> bool | None:
    """adjtimex(2) read-only: True/False, or None when the call is refused or unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        timex = ctypes.create_string_buffer(256)  # struct timex (208 bytes on 64-bit), zeroed: modes = 0, read only
        state = libc.adjtimex(timex)
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != TIME_ERROR  # TIME_ERROR while STA_UNSYNC is set


def _flag_file_synchronised() -> bool | None:
    """systemd-timesyncd's flag; None (no answer) where it is not there: another NTP client may run."""
    return True if TIMESYNC_FLAG.exists() else None


def _timedatectl_synchronised() -> bool | None:
    """timedated's NTPSynchronized over D-Bus; None without systemd (a container)."""
    try:
        answer = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"yes": True, "no": False}.get(answer.stdout.strip()) if answer.returncode == 0 else None


CHECKS: tuple[Callable[[], bool | None], ...] = (_kernel_synchronised, _flag_file_synchronised, _timedatectl_synchronised)


class SystemClock:
    """The machine's clock; ``trust="always"`` for a gate with a real-time clock (or a test bench
    whose container cannot tell), ``"when_synchronised"`` (the default) asks :data:`CHECKS`."""

    def __init__(self, trust: str = "when_synchronised", *, checks: Sequence[Callable[[], bool | None]] = CHECKS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._synced = trust == "always"
        self._checks = checks
        self._monotonic = monotonic
        self._next_check = float("-inf")
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def synchronised(self) -> bool:
        with self._lock:
            if not self._synced and self._monotonic() >= self._next_check:
                self._next_check = self._monotonic() + RECHECK_S
                self._synced = next((answer for answer in (check() for check in self._checks) if answer is not None), False)
                if self._synced:
                    log.info("wall clock synchronised: event times are trusted, remote unlock accepted")
            return self._synced
