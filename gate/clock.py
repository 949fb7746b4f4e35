"""Wall-clock time, and whether it can be trusted yet.

A Raspberry Pi has no real-time clock: it boots at the time it was last shut down (or 1970) and
jumps, by hours or months, when NTP answers. Durations (the door's unlock time, cooldowns, timers,
latencies) therefore never use wall time: they use ``time.monotonic``. Wall time is only a label
(an event's ``time``) or a comparison with another machine's instant (a remote command's
``expires``). The first is flagged while it is not trusted (``clock_synced`` on the event; order by
``seq``); the second is refused outright (a command's expiry means nothing on a wrong clock).

:class:`SystemClock` asks the kernel (``adjtimex``: NTP clients such as systemd-timesyncd or chrony
clear ``STA_UNSYNC`` once synchronised), falling back to timesyncd's flag file where a system-call
filter refuses ``adjtimex`` (systemd's ``ProtectClock=``). Once synchronised it stays trusted: the
kernel keeps disciplining the clock. Tests pass their own :class:`WallClock`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

TIME_ERROR = 5  # adjtimex(2)'s answer while the clock is not synchronised
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")  # touched by systemd-timesyncd on sync


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


class SystemClock:
    """The machine's clock; ``trust="always"`` for a gate with a real-time clock (or a test bench
    whose container cannot tell), ``"when_synchronised"`` (the default) asks the kernel."""

    def __init__(self, trust: str = "when_synchronised", *, flag_file: Path = TIMESYNC_FLAG) -> None:
        self._always = trust == "always"
        self._flag_file = flag_file
        self._synced = self._always
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def synchronised(self) -> bool:
        with self._lock:
            if not self._synced:
                kernel = _kernel_synchronised()
                self._synced = kernel if kernel is not None else os.path.exists(self._flag_file)
                if self._synced:
                    log.info("wall clock synchronised: event times are trusted, remote unlock accepted")
            return self._synced
