"""Folders the gate writes to: made and proven writable before they are needed."""

from __future__ import annotations

import tempfile
from pathlib import Path


def ensure_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed and prove a file can be written there; raises OSError if not.

    Checked at start-up, so an unusable path is one clear error instead of a failure at the
    first event (or the first annotated image)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass
