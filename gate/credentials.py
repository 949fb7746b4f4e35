"""Secrets (the MQTT password, the preview's token) from a file or an environment variable.

A file is preferred: a systemd credential (``%d/name`` = ``$CREDENTIALS_DIRECTORY/name``, a
root-owned 0600 file the unit loads) never shows up in ``/proc/<pid>/environ``. A blank file counts
as no secret (the unit's empty default credential). Secrets are never logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from gate.errors import ConfigError


def read_secret(key: str, file: Path | None, env_name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The secret from ``file`` when it holds one, else from the ``env_name`` variable, else None.
    ``key`` is the file's dotted settings key, for the error when the file cannot be read."""
    env = os.environ if environ is None else environ
    if file is not None:
        name = str(file)
        if name.startswith("%d/"):
            if "CREDENTIALS_DIRECTORY" not in env:
                raise ConfigError(f"{key} = {name!r} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)")
            name = os.path.join(env["CREDENTIALS_DIRECTORY"], name[3:])
        try:
            with open(name, encoding="utf-8") as handle:
                secret = handle.read().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {name} ({exc.strerror or exc})") from exc
        if secret:
            return secret
    return env.get(env_name) or None
