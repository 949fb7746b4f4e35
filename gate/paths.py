"""Files and folders the gate reads and writes: folders made and proven writable before they are
needed; files read only when they are regular files of a sane size."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path


def ensure_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed and prove a file can be written there; raises OSError if not.

    Checked at start-up, so an unusable path is one clear error instead of a failure at the
    first event (or the first annotated image)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass


def read_regular_file(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, else OSError (with ``strerror``).

    A named pipe would block the read forever and ``/dev/zero`` never ends, so neither is read:
    the file is opened without blocking and checked before a byte is read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
            raise OSError(errno.EINVAL, f"{kind}, not a regular file", str(path))
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"larger than {max_bytes:,} bytes", str(path))
    return data


def utf8_name(path: str | Path) -> str:
    """The path as text for OpenCV, which takes names as UTF-8 and crashes the process on one
    that is not (a file from another system, a name made of raw bytes); OSError for those."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise OSError(errno.EILSEQ, "its name is not valid UTF-8 (rename it)", text) from None
    return text
