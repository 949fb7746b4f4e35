"""``gate-cli demo``: the whole gate on a video clip with mock GPIO and no broker, each decision
printed as it is taken, then a summary that checks every visitor against the clip's script.

A finite job: a clip or model that cannot be read is one error and a non-zero exit within
seconds (the daemon's retry-forever is for ``run`` only). The script (who walks up, when, wearing
what) is the JSON that ``maskgate-train door-clip`` writes beside the clip; it is checked before
the clip plays, so a broken one is one line, not a traceback after the clip.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import cv2
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, model_validator

from gate.errors import CameraError, UsageError
from gate.logs import native_stderr_to_log
from gate.paths import read_regular_file, utf8_name
from gate.settings import Settings

log = logging.getLogger(__name__)

Decided = tuple[float, str, str]  # (video time s, verdict, reason)


class Visitor(BaseModel):
    """One visitor of the clip's script: in view from ``start`` to ``end`` (s), wearing ``labels``."""

    model_config = ConfigDict(extra="allow")  # door-clip also writes when they hold still
    start: float = Field(ge=0.0)
    end: float
    labels: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> Visitor:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self


class ClipScript(BaseModel):
    model_config = ConfigDict(extra="allow")
    fps: PositiveFloat | None = None
    segments: list[Visitor] = []


def read_clip_script(clip: Path) -> ClipScript:
    """The clip's ground truth beside it (``clip.json``), or an empty script when there is none."""
    script = clip.with_suffix(".json")
    try:
        if not script.exists():
            return ClipScript()
        return ClipScript.model_validate(json.loads(read_regular_file(script, 1 << 20).decode("utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"{script}: not the clip's ground-truth JSON ({getattr(exc, 'strerror', None) or exc})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the file'}: "
                             f"{'must be a JSON object' if e['type'] == 'model_type' else e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise UsageError(f"{script}: not the clip's ground-truth JSON ({problems})") from None


def demo_state_dir(settings: Settings) -> Path:
    """The demo's own state folder: `demo/` inside the one `run` uses, never the real outbox."""
    return settings.gate.state_dir / "demo"


def demo_settings(base: Settings, clip: Path, *, fast: bool, state_dir: Path | None) -> Settings:
    """``base`` with the clip as a non-looping camera, mock pins, no broker, no face images saved."""
    return base.model_copy(
        update={
            "gate": base.gate.model_copy(update={"state_dir": state_dir or demo_state_dir(base), "runtime_dir": None}),
            "camera": base.camera.model_copy(update={"source": str(clip), "kind": "file", "loop": False, "realtime": not fast}),
            "door": base.door.model_copy(update={"pin_factory": "mock"}),  # the demo is mock pins by definition
            "mqtt": base.mqtt.model_copy(update={"enabled": False}),
            "privacy": base.privacy.model_copy(update={"save_faces": False}),
        }
    )


def check_clip(clip: Path) -> None:
    """CameraError unless the clip's first frame decodes: a clip that cannot be played is said at
    once, before the gate starts (FFmpeg's own complaints go to the log, shown with --verbose)."""
    if not clip.exists():
        raise CameraError(f"{clip}: no such video file")
    if not clip.is_file():
        raise CameraError(f"{clip}: a folder, device or pipe, not a video file")
    try:
        name = utf8_name(clip)
    except OSError as exc:
        raise CameraError(f"{clip}: {exc.strerror}") from None
    with native_stderr_to_log(log, lambda line: True):
        capture = cv2.VideoCapture(name, cv2.CAP_FFMPEG)
        try:
            playable = capture.isOpened() and capture.read()[0]
        finally:
            capture.release()
    if not playable:
        raise CameraError(f"{clip}: not a video FFmpeg can decode")


class ClipDoor:
    """What the door does, on the clip's clock: the demo's door column, so ``--fast`` says what real
    time says (the mock relay's timers run on the computer's clock, and at 20 times the speed a grant
    would still hold it open a hundred clip-seconds later)."""

    def __init__(self, unlock_s: float) -> None:
        self._unlock_s = unlock_s
        self._open_until = float("-inf")

    def after(self, t: float, verdict: str, relay: str, reason: str) -> str:
        """The door after a decision at clip time ``t`` whose event did ``relay`` to the relay."""
        if relay == "energised":
            self._open_until = t + self._unlock_s
            return "door UNLOCKED"
        if verdict == "grant":  # refused: the door is in a fault
            return f"door stays locked ({reason})"
        was_open, self._open_until = t < self._open_until, float("-inf")
        return "door LOCKED again" if was_open else "door stays locked"


def run_demo(settings: Settings, clip: Path) -> int:
    """Play the clip through the gate (``settings`` from :func:`demo_settings`); exit status 1 when
    the gate got a visitor wrong (verdict or reason), decided one more than once, or decided with
    nobody at the door, so the first command a newcomer runs never hides a wrong answer."""
    from gate.daemon import serve

    script = read_clip_script(clip)
    check_clip(clip)
    fps = script.fps or settings.camera.fps
    pace = "real time" if settings.camera.realtime else "as fast as possible"
    print(f"maskgate demo: {clip} ({pace}; mock relay and LEDs, no broker; state in {settings.gate.state_dir})", flush=True)
    if settings.preview.enabled:
        print(f"live view: http://{settings.preview.host}:{settings.preview.port}/ ([preview] in the settings)", flush=True)
    decided: list[Decided] = []
    door_on_clip = ClipDoor(settings.door.unlock_s)

    def show(decision, event, frame) -> None:
        video_t = frame.index / fps
        decided.append((video_t, decision.verdict, decision.reason))
        faces = ", ".join(f"{o.classification.label} {o.classification.confidence:.2f}" for o in decision.faces)
        door = door_on_clip.after(video_t, decision.verdict, event.relay, event.reason)
        print(f"  {video_t:5.1f}s  #{event.seq:<3} {decision.verdict.upper():5} {decision.reason:<15} [{faces}]  {door}; "
              f"decided {event.latency_ms:.0f} ms after the face appeared", flush=True)

    door_log = logging.getLogger("gate.actuators")  # the column above says what the door does
    level = door_log.level
    door_log.setLevel(logging.INFO if logging.getLogger().level <= logging.INFO else logging.ERROR)
    try:
        health = serve(settings, until_camera_ends=True, on_decision=show)
    finally:
        door_log.setLevel(level)
    camera = health.get("camera", {})
    if camera.get("state") == "failed":
        raise CameraError(f"{clip}: cannot play the clip ({camera.get('detail')})")
    print_health(health)
    wrong = print_visitors(script.segments, decided, settings.policy.rule)
    return 1 if wrong else 0


def expected_decision(rule: str, labels: list[str]) -> tuple[str, str]:
    """The decision for a visitor from the clip's ground truth, by the README's rules (an oracle
    independent of gate.policy, so a policy that maps labels wrongly is caught too)."""
    if rule == "any_masked" and "with_mask" in labels:
        return "grant", "any_masked"
    if all(label == "with_mask" for label in labels):
        verdict, reason = "grant", "all_masked"
    elif "without_mask" in labels:
        verdict, reason = "deny", "no_mask"
    else:
        verdict, reason = "deny", "incorrect_mask"
    return ("deny", "observed_" + reason) if rule == "observe" else (verdict, reason)


def print_health(health: dict[str, Any]) -> None:
    decisions = health["decisions"]
    print("summary:")
    print(f"  {health['frames']} frames, {health['faces']} faces classified, {health['fps']:.1f} frames/s processed")
    print(f"  decisions: {decisions.get('grant', 0)} grant, {decisions.get('deny', 0)} deny")
    print("  stage latency (ms, smoothed): " + ", ".join(f"{k} {v:.1f}" if v else f"{k} not run" for k, v in health["stage_ms"].items()))


def print_visitors(segments: list[Visitor], decided: list[Decided], rule: str) -> int:
    """Each visitor against the decisions taken while they were in view (arrival to leaving): one
    visitor, one decision, the expected verdict and reason. Marks [MISMATCH] (none, or a wrong
    one), [REPEAT] (right, but more than one) and [EXTRA] (a decision with nobody in view).
    Returns the number of visitors not [ok] plus extra decisions."""
    if not segments:
        return 0
    extra = [d for d in decided if not any(s.start <= d[0] <= s.end for s in segments)]
    wrong = 0
    for number, segment in enumerate(segments, 1):
        verdict, reason = expected_decision(rule, segment.labels)
        got = [d for d in decided if segment.start <= d[0] <= segment.end]
        said = "; ".join(f"{t:.1f} s {v} ({r})" for t, v, r in got) or "nothing"
        right = bool(got) and all((v, r) == (verdict, reason) for _, v, r in got)
        tag = "MISMATCH" if not right else "REPEAT" if len(got) > 1 else "ok"
        wrong += tag != "ok"
        print(f"  visitor {number} ({' + '.join(segment.labels)}): expected {verdict} ({reason}), gate said {said}  [{tag}]")
        if tag != "ok":
            print(f"  [{tag}] visitor {number}: expected {verdict} ({reason}){' once' if tag == 'REPEAT' else ''}, got {said}")
    for t, v, r in extra:
        print(f"  [EXTRA] {t:.1f} s: {v} ({r}) with nobody at the door")
    print(f"  {len(segments) - wrong} of {len(segments)} visitors right" + (f"; {len(extra)} decision(s) with nobody at the door" if extra else ""))
    return wrong + len(extra)
