"""systemd's sd_notify protocol, written out (a datagram to ``$NOTIFY_SOCKET``; no dependency).

``Type=notify`` units tell systemd they are ready (``READY=1``), alive (``WATCHDOG=1``, at least
every ``$WATCHDOG_USEC``), what they are doing (``STATUS=...``) and that they are stopping.
Outside systemd the variable is unset and every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages; a failed send is logged once and never raises (the gate keeps going)."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())  # the watchdog may be meant for another process
        return cls(env.get("NOTIFY_SOCKET") or None, int(usec) if usec.isdigit() and mine else None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half the systemd timeout), or None when not watched."""
        if not self._watchdog_usec:
            return None
        return self._watchdog_usec / 1e6 / 2

    def ready(self) -> None:
        self.send("READY=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self.send("STATUS=" + text.replace("\n", " "))

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            # Non-blocking: if nobody reads the socket, the gate must not hang on it (the message is
            # dropped and the watchdog, not a stuck send, decides what happens next).
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
                sock.connect(self._address)
                sock.sendall(message.encode("utf-8"))
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify to %r failed: %s (systemd may restart us on watchdog timeout)", self._address, exc)
                self._warned = True


def _socket_address(address: str) -> str | bytes:
    """``@name`` is Linux's abstract namespace: a leading NUL byte instead of a path."""
    if address.startswith("@"):
        return b"\0" + address[1:].encode("utf-8")
    return address
