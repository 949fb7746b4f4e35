"""Settings files written by tests and benchmarks (the gate only reads TOML; tomllib has no writer)."""

from __future__ import annotations

import json
from typing import Any


def to_toml(sections: dict[str, dict[str, Any]]) -> str:
    """Just enough TOML for a settings file: tables of scalars and lists, nested tables, None left out."""
    lines: list[str] = []

    def table(name: str, values: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items() if value is not None and not isinstance(value, dict))
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{name}.{key}", value)

    for name, values in sections.items():
        table(name, values)
    return "\n".join(lines) + "\n"
