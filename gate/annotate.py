"""Images gate-cli writes when asked: annotated copies of stills (``test-image --annotate``),
where each goes and the boxes and labels drawn on it, and a camera frame (``test-camera --save``).
The box and label drawing is shared with the live preview (:mod:`gate.preview.draw`). Nothing here
runs unless the operator asks for it."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from gate.errors import ImageError, UsageError
from gate.paths import ensure_writable_folder, utf8_name
from gate.policy import FaceObservation
from gate.types import Box

#: RGB colour of a face's box by its label (a class a custom model adds is drawn white).
LABEL_COLOURS = {"with_mask": (0, 200, 0), "without_mask": (220, 0, 0), "incorrect_mask": (255, 160, 0)}
OTHER_LABEL_COLOUR = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LINE_PX = 16


def annotation_targets(folder: Path, paths: list[Path]) -> list[Path]:
    """One output file per input, never two alike, in a folder checked writable before any image.

    The inputs' folders below their common folder are kept (``a/x.jpg`` → ``OUT/a/x.annotated.jpg``),
    never more: inputs with nothing in common but ``/`` go straight into ``OUT``. A name still taken
    (``x.jpg`` and ``x.png``, a file given twice) gets a number.
    """
    try:
        ensure_writable_folder(folder)
    except OSError as exc:
        raise UsageError(f"--annotate {folder}: not a folder that can be written ({exc.strerror or exc})") from None
    resolved = [Path(os.path.abspath(p)) for p in paths]
    common = Path(os.path.commonpath([p.parent for p in resolved]))
    targets: list[Path] = []
    for path in resolved:
        below = path.parent.relative_to(common)
        base = folder if common == Path(common.anchor) else folder / below
        target, number = base / f"{path.stem}.annotated.jpg", 1
        while target in targets:
            number += 1
            target = base / f"{path.stem}.annotated-{number}.jpg"
        targets.append(target)
    return targets


def write_annotated(image: np.ndarray, observations: list[FaceObservation], out: Path) -> None:
    """The RGB ``image`` with each face's box and label drawn on it, as a JPEG at ``out``."""
    canvas = image.copy()
    for o in observations:
        label = o.classification.label
        draw_box(canvas, o.detection.box, LABEL_COLOURS.get(label, OTHER_LABEL_COLOUR), [f"{label} {o.classification.confidence:.2f}"])
    write_image(canvas, out, "the annotated copy")


def draw_box(canvas: np.ndarray, box: Box, colour: tuple[int, int, int], lines: list[str], thickness: int = 2) -> None:
    """A box with its text lines above it, on ``canvas`` in place (stills here, the live preview's frames)."""
    x, y, w, h = box.as_list()
    cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, thickness, cv2.LINE_AA)
    top = max(14, y - 6 - _LINE_PX * (len(lines) - 1))
    for number, line in enumerate(lines):
        draw_label(canvas, line, (x, top + _LINE_PX * number), colour)


def draw_label(canvas: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """Text on a dark band, readable on any background; ``origin`` is its baseline's left end."""
    (width, height), baseline = cv2.getTextSize(text, _FONT, 0.45, 1)
    x, y = origin
    cv2.rectangle(canvas, (x - 2, y - height - 3), (x + width + 2, y + baseline), (0, 0, 0), cv2.FILLED)
    cv2.putText(canvas, text, (x, y), _FONT, 0.45, colour, 1, cv2.LINE_AA)


def check_image_target(path: Path) -> None:
    """UsageError unless ``path`` names an image format OpenCV writes, in a folder that exists and
    can be written: said before any work, not as a failure at its end."""
    try:
        utf8_name(path)  # written by Python, but OpenCV is asked about its extension
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    if not cv2.haveImageWriter(str(path)):
        raise UsageError(f"{path}: not an image file name OpenCV can write (use .jpg or .png)")
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"{path}: cannot write there (not a file in a folder that exists and can be written)")


def write_image(image: np.ndarray, out: Path, what: str = "the image") -> None:
    """An RGB image to ``out`` (its folder made if needed), or ImageError saying why not."""
    try:  # encoded here and written by Python: OpenCV would crash on a name that is not UTF-8
        encoded, data = cv2.imencode(out.suffix or ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not encoded:
            raise ImageError(f"{out}: cannot write {what} (OpenCV cannot encode {out.suffix or 'it'})")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data.tobytes())
    except (OSError, cv2.error) as exc:
        raise ImageError(f"{out}: cannot write {what} ({getattr(exc, 'strerror', None) or str(exc).strip().splitlines()[-1]})") from None
