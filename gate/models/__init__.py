"""The default mask classifier, shipped inside the package (``.tflite`` + its ``.json`` contract).

Installed as package data, so ``gate-cli`` finds it from any folder and after a plain
``pip install``. Shipping a new default model = replacing these two files and, if its
name changes, :data:`DEFAULT_MODEL_NAME`.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_NAME = "maskgate-mobilenetv2-0.35-3c-int8.tflite"


def default_model_path() -> Path:
    """Absolute path of the packaged default classifier (its contract sits beside it)."""
    return Path(__file__).resolve().parent / DEFAULT_MODEL_NAME
