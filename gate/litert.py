"""LiteRT, the only inference runtime the gate uses.

``ai-edge-litert`` is the supported package; ``tflite-runtime`` (frozen at 2.14, no numpy-2
build, no wheels past Python 3.11) is accepted as a fallback for old Pis.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gate.errors import ModelError
from gate.logs import native_stderr_to_log
from gate.paths import read_regular_file

log = logging.getLogger(__name__)

try:  # pragma: no cover - which branch runs depends on the host
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # pragma: no cover
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
    except ImportError:
        Interpreter = None  # type: ignore[assignment,misc]

_TFLITE_IDENTIFIER = b"TFL3"
#: Larger than any model a Pi could run at a door (ours: 0.1 MB; MediaPipe's pose detector: 3 MB).
MAX_MODEL_BYTES = 512 << 20
#: How LiteRT's C++ starts the lines it prints (its errors also reach the exception we raise).
_NATIVE_LINE = ("INFO: ", "WARNING: ", "ERROR: ")


def load_interpreter(model: str | Path | bytes, num_threads: int = 1) -> Any:
    """Open a TFLite model (path or bytes) and allocate its tensors, or raise ModelError."""
    if Interpreter is None:
        raise ModelError("no LiteRT runtime: pip install ai-edge-litert (or tflite-runtime)")
    name = "<bytes>" if isinstance(model, bytes) else str(model)
    if isinstance(model, bytes):
        content = model
    else:
        try:
            content = read_regular_file(model, MAX_MODEL_BYTES)
        except OSError as exc:
            raise ModelError(f"{name}: cannot read model file ({exc.strerror or exc})") from exc
    if len(content) < 8 or content[4:8] != _TFLITE_IDENTIFIER:
        raise ModelError(f"{name}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    try:
        # its C++ prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." past logging
        with native_stderr_to_log(log, lambda line: line.startswith(_NATIVE_LINE)):
            interpreter = Interpreter(model_content=content, num_threads=num_threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{name}: LiteRT cannot load this model: {exc}") from exc
    return interpreter
