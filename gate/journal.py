"""Local JSON-lines journal of every event (camera decisions, exit button, remote commands and
their refusals): labels, scores, reasons and what the relay did, never images.

It is for the installer on site (`tail -f var/decisions.jsonl`); the durable, acknowledged
record that reaches the building is the outbox (:mod:`gate.outbox`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Journal:
    """Appended to from the gate loop and, for manual requests, the button and MQTT threads."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # one writer at a time: whole lines, one rotation
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict[str, Any]) -> None:
        """Write one line and flush it; rotate to ``<name>.1`` past ``max_bytes``."""
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        try:
            with self._lock:
                if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.write(line)
        except OSError as exc:  # a full disk must not stop the door
            log.error("cannot write decision journal %s: %s", self.path, exc)
