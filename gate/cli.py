"""gate-cli: the maintenance tool. Thin commands over the runtime's library functions.

Exit statuses: 0 fine; 1 something failed (an image, a camera, a demo visitor); 2 usage;
78 bad configuration (the value systemd's RestartPreventExitStatus= names).

Settings: ``--settings FILE`` (anywhere on the command line), else ``./settings.toml`` when it
exists, else the built-in defaults (packaged model, assets from :func:`gate.assets.assets_dirs`).
``run`` and ``config check`` never fall back to defaults: no file is a configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, model_validator

from gate.errors import ConfigError, ImageError, MaskgateError, StateError
from gate.logs import configure_logging
from gate.paths import ensure_writable_folder
from gate.preprocess import DEFAULT_MAX_PIXELS
from gate.settings import EXIT_CONFIG, Settings, load_settings, parse_settings, redacted

log = logging.getLogger("gate.cli")

DEFAULT_SETTINGS = Path("settings.toml")


EXIT_USAGE = 2


class UsageError(MaskgateError):
    """A command-line argument that cannot work (exit 2, like argparse's own errors)."""


def _settings(args: argparse.Namespace, *, required: bool = False) -> Settings:
    """The named file, else ./settings.toml if present, else the built-in defaults.

    ``required`` (run, config check): a missing file is a configuration error, never "defaults".
    """
    path: Path = args.settings or DEFAULT_SETTINGS
    try:
        present = path.exists()
    except OSError:  # e.g. a folder we may not look into: load_settings says why
        present = True
    if not present:
        if args.settings is None and not required:
            return parse_settings({}, source="built-in defaults")
        raise ConfigError(f"{path}: no such settings file{'' if args.settings else ' (pass --settings FILE)'}")
    return load_settings(path)


# -- test-image ------------------------------------------------------------------------------


def _single_image_decision(settings: Settings, classifier, observations) -> dict[str, Any]:
    """The decision the gate would take if this image were held in front of it long enough."""
    from gate.policy import DecisionPolicy

    if not observations:
        return {"verdict": None, "reason": "no_face"}
    policy = DecisionPolicy(settings.policy.model_copy(update={"evidence_frames": 1}), classifier.min_confidence)
    decision = policy.update(0.0, observations)
    if decision is None:
        return {"verdict": None, "reason": "uncertain"}
    return {"verdict": decision.verdict, "reason": decision.reason}


def cmd_test_image(args: argparse.Namespace) -> int:
    """Each file is a still photo on its own: its answer never depends on the files before it."""
    import cv2

    from gate.classifier import MaskClassifier
    from gate.policy import FaceObservation
    from gate.preprocess import read_image_rgb
    from gate.types import Box, Detection

    settings = _settings(args)
    if args.max_megapixels <= 0:
        raise UsageError(f"--max-megapixels must be positive, got {args.max_megapixels:g}")
    targets = _annotation_targets(args.annotate, args.paths) if args.annotate else None
    model = args.model or settings.classifier.model
    classifier = MaskClassifier(model, threads=settings.classifier.threads, min_confidence=settings.classifier.min_confidence)
    detector = None
    if not args.assume_face:
        from gate.detector import BlazeFaceDetector

        detector = BlazeFaceDetector(settings.detector)

    failures = 0
    for index, path in enumerate(args.paths):
        result: dict[str, Any] = {"path": str(path), "faces": [], "decision": None, "error": None}
        try:
            image = read_image_rgb(path, int(args.max_megapixels * 1e6))
            height, width = image.shape[:2]
            faces = detector.detect_still(image) if detector else [Detection(Box(0, 0, width, height), 1.0)]
            observations = [FaceObservation(face, classifier.classify(image, None if detector is None else face.box)) for face in faces]
            result["faces"] = [
                {"box": o.detection.box.as_list(), "label": o.classification.label,
                 "scores": {k: round(v, 4) for k, v in o.classification.scores.items()}, "detector_score": round(o.detection.score, 4)}
                for o in observations
            ]
            result["decision"] = _single_image_decision(settings, classifier, observations)
            if targets is not None:
                _annotate(cv2, image, observations, targets[index])
                result["annotated"] = str(targets[index])
        except MaskgateError as exc:
            failures += 1
            result["error"] = str(exc)
        _print_image_result(result, args.json)
    return 1 if failures else 0


def _annotation_targets(folder: Path, paths: list[Path]) -> list[Path]:
    """One output file per input, never two alike, in a folder checked writable before any image.

    The inputs' folders below their common folder are kept (``a/x.jpg`` → ``OUT/a/x.annotated.jpg``)
    and a name still taken (``x.jpg`` and ``x.png``, or a file given twice) gets a number.
    """
    try:
        ensure_writable_folder(folder)
    except OSError as exc:
        raise UsageError(f"--annotate {folder}: not a folder that can be written ({exc.strerror or exc})") from None
    resolved = [Path(os.path.abspath(p)) for p in paths]
    common = Path(os.path.commonpath([p.parent for p in resolved]))
    targets: list[Path] = []
    for path in resolved:
        base = folder / path.parent.relative_to(common)
        target, number = base / f"{path.stem}.annotated.jpg", 1
        while target in targets:
            number += 1
            target = base / f"{path.stem}.annotated-{number}.jpg"
        targets.append(target)
    return targets


_COLOURS = {"with_mask": (0, 200, 0), "without_mask": (220, 0, 0), "incorrect_mask": (255, 160, 0)}


def _annotate(cv2, image, observations, out: Path) -> None:
    canvas = image.copy()
    for o in observations:
        x, y, w, h = o.detection.box.as_list()
        colour = _COLOURS.get(o.classification.label, (255, 255, 255))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, 2)
        text = f"{o.classification.label} {o.classification.confidence:.2f}"
        cv2.putText(canvas, text, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        written = cv2.imwrite(str(out), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    except (OSError, cv2.error) as exc:
        raise ImageError(f"{out}: cannot write the annotated copy ({getattr(exc, 'strerror', None) or exc})") from None
    if not written:
        raise ImageError(f"{out}: cannot write the annotated copy")


def _print_image_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result), flush=True)
        return
    if result["decision"] is None:
        print(f"{result['path']}: ERROR {result['error']}", flush=True)
        return
    decision = result["decision"]
    verdict = decision["verdict"] or "no decision"
    print(f"{result['path']}: {len(result['faces'])} face(s) → {verdict} ({decision['reason']})")
    for face in result["faces"]:
        scores = " ".join(f"{k}={v:.3f}" for k, v in face["scores"].items())
        print(f"  box {face['box']}  {face['label']:<15} {scores}", flush=True)
    if result["error"]:
        print(f"  ERROR {result['error']}", flush=True)


# -- run / demo ------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from gate.daemon import serve

    settings = _settings(args, required=True)
    if settings.door.pin_factory == "mock" and not args.allow_mock_pins:
        raise ConfigError(
            'door.pin_factory = "mock": the relay would never move. Set the board\'s pin factory '
            "(lgpio on a Raspberry Pi) or, to run without hardware on purpose, pass --allow-mock-pins"
        )
    configure_logging(settings.gate.log_level, settings.gate.log_format)
    serve(settings)
    return 0


def _demo_state_dir(settings: Settings) -> Path:
    """The demo's own state folder: `demo/` inside the one `run` uses, never the real outbox."""
    return settings.gate.state_dir / "demo"


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole gate on the generated door clip: mock GPIO, no broker; decisions printed live.

    Exit 1 when the gate got a visitor wrong (verdict or reason), decided one visitor more than once,
    or decided with nobody at the door, so the first command a newcomer runs never hides a wrong answer.
    """
    from gate.daemon import serve

    base = _settings(args)
    settings = base.model_copy(
        update={
            "gate": base.gate.model_copy(update={"state_dir": args.state_dir or _demo_state_dir(base)}),
            "camera": base.camera.model_copy(update={"source": str(args.clip), "kind": "file", "loop": False, "realtime": not args.fast}),
            "door": base.door.model_copy(update={"pin_factory": "mock"}),  # the demo is mock pins by definition
            "mqtt": base.mqtt.model_copy(update={"enabled": False}),
            "privacy": base.privacy.model_copy(update={"save_faces": False}),
        }
    )
    configure_logging("INFO" if args.verbose else "WARNING", "text")
    script = _clip_script(args.clip)
    fps = script.fps or settings.camera.fps
    print(f"maskgate demo: {args.clip} ({'as fast as possible' if args.fast else 'real time'}; mock relay and LEDs, no broker; "
          f"state in {settings.gate.state_dir})", flush=True)
    decided: list[tuple[float, str, str]] = []

    def show(decision, event, frame) -> None:
        video_t = frame.index / fps
        decided.append((video_t, decision.verdict, decision.reason))
        faces = ", ".join(f"{o.classification.label} {o.classification.confidence:.2f}" for o in decision.faces)
        door = {"energised": "door UNLOCKED", "released": "door LOCKED again"}.get(event.relay, "door stays locked")
        print(f"  {video_t:5.1f}s  #{event.seq:<3} {decision.verdict.upper():5} {decision.reason:<15} [{faces}]  {door}; "
              f"decided {event.latency_ms:.0f} ms after the face appeared", flush=True)

    health = serve(settings, until_camera_ends=True, on_decision=show)
    if not health:
        print("the gate did not start: see the errors above")
        return 1
    _print_health(health)
    wrong = _print_visitors(script.segments, decided, settings.policy.rule)
    return 1 if wrong else 0


class _Visitor(BaseModel):
    """One visitor of the clip's script: in view from ``start`` to ``end`` (s), wearing ``labels``."""

    model_config = ConfigDict(extra="allow")  # door-clip also writes when they hold still
    start: float = Field(ge=0.0)
    end: float
    labels: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> _Visitor:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self


class _ClipScript(BaseModel):
    model_config = ConfigDict(extra="allow")
    fps: PositiveFloat | None = None
    segments: list[_Visitor] = []


def _clip_script(clip: Path) -> _ClipScript:
    """The clip's ground truth (who walks up, when, wearing what), written beside it by door-clip;
    checked before the clip is played, so a broken one is a one-line error, not a traceback after it."""
    script = clip.with_suffix(".json")
    if not script.exists():
        return _ClipScript()
    try:
        return _ClipScript.model_validate(json.loads(script.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{script}: not the clip's ground-truth JSON ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the file'}: {'must be a JSON object' if e['type'] == 'model_type' else e['msg']}"
                             for e in exc.errors())
        raise UsageError(f"{script}: not the clip's ground-truth JSON ({problems})") from None


def _expected(rule: str, labels: list[str]) -> tuple[str, str]:
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


def _print_health(health: dict[str, Any]) -> None:
    decisions = health["decisions"]
    print("summary:")
    print(f"  {health['frames']} frames, {health['faces']} faces classified, {health['fps']:.1f} frames/s processed")
    print(f"  decisions: {decisions.get('grant', 0)} grant, {decisions.get('deny', 0)} deny")
    print("  stage latency (ms, smoothed): " + ", ".join(f"{k} {v:.1f}" for k, v in health["stage_ms"].items()))


def _print_visitors(segments: list[_Visitor], decided: list[tuple[float, str, str]], rule: str) -> int:
    """Each visitor against the decisions taken while they were in view (arrival to leaving): one
    visitor, one decision, the expected verdict and reason. Marks [MISMATCH] (none, or a wrong
    one), [REPEAT] (right, but more than one) and [EXTRA] (a decision with nobody in view).
    Returns the number of visitors not [ok] plus extra decisions."""
    if not segments:
        return 0
    extra = [d for d in decided if not any(s.start <= d[0] <= s.end for s in segments)]
    wrong = 0
    for number, segment in enumerate(segments, 1):
        verdict, reason = _expected(rule, segment.labels)
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


# -- test-camera -----------------------------------------------------------------------------


def cmd_test_camera(args: argparse.Namespace) -> int:
    import cv2

    from gate.camera import open_camera

    settings = _settings(args)
    print(f"opening {settings.camera.source} ({settings.camera.kind})", flush=True)
    deadline = time.monotonic() + args.seconds
    first = last = None
    count = 0
    with open_camera(settings.camera) as camera:
        while time.monotonic() < deadline:
            frame = camera.read(timeout=0.5)
            if frame is None:
                if camera.status.state in ("failed", "ended") and first is None and camera.status.reopens > 0:
                    break
                continue
            first = first or frame
            last = frame
            count += 1
        status = camera.status
    if first is None:
        print(f"FAILED: no frame in {args.seconds:.0f} s ({status.state}: {status.detail})")
        return 1
    height, width = first.image.shape[:2]
    span = last.timestamp - first.timestamp
    fps = (count - 1) / span if span > 0 else 0.0
    print(f"ok: {width}x{height}, {fps:.1f} frames/s over {count} frames, dropped {status.dropped}, reopens {status.reopens}")
    if args.save:
        cv2.imwrite(str(args.save), cv2.cvtColor(last.image, cv2.COLOR_RGB2BGR))
        print(f"saved one frame to {args.save}")
    return 0


# -- door ------------------------------------------------------------------------------------


def cmd_door(args: argparse.Namespace) -> int:
    """Drive the relay pin inactive: the unit's ExecStopPost=, after any death of the daemon."""
    from gate.actuators import release_relay

    door = _settings(args).door
    level = release_relay(door)
    print(f"relay on pin {door.relay_pin} released: pin {'high' if level else 'low'} (relay active {'high' if door.relay_active_high else 'low'})", flush=True)
    return 0


# -- config / status / assets ----------------------------------------------------------------


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args, required=args.action == "check")
    if args.action == "show":
        print(json.dumps(redacted(settings), indent=2))
    else:
        print(f"{args.settings or DEFAULT_SETTINGS}: ok")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 0 whether the gate runs or not (the first line says which); 1 if the file is unreadable."""
    from gate.health import format_status, read_status

    settings = _settings(args)
    state_dir = _demo_state_dir(settings) if args.demo else settings.gate.state_dir
    try:
        status = read_status(state_dir)
        print(format_status(status, state_dir.absolute()))
        if status is None and not args.demo and read_status(_demo_state_dir(settings)) is not None:
            print("          (a demo ran with these settings: gate-cli status --demo)")
    except StateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_assets(args: argparse.Namespace) -> int:
    from gate import assets

    if args.action == "where":
        used = args.dir or assets.DEFAULT_ASSETS_DIR
        for folder in assets.assets_dirs():
            print(f"{'*' if folder == used else ' '} {folder}")
        print(f"(searched in this order: $MASKGATE_ASSETS alone when set; * = used){'' if used in assets.assets_dirs() else f'; used: {used}'}")
        return 0
    wanted = assets.RUNTIME_ASSETS + (assets.TRAINING_ASSETS if args.training else ())
    for path in assets.fetch(wanted, args.dir or assets.DEFAULT_ASSETS_DIR):
        print(f"ok {path}")
    return 0


# -- entry point -----------------------------------------------------------------------------


def version_text() -> str:
    """The version and the packaged default model's SHA-256 (what a support call asks first)."""
    from gate import __version__
    from gate.contract import file_sha256
    from gate.models import default_model_path

    model = default_model_path()
    sha = file_sha256(model) if model.is_file() else "MISSING"
    return f"gate-cli {__version__}\ndefault model {model.name} sha256 {sha}"


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, default: Any = argparse.SUPPRESS, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """Sub-commands accept ``--settings`` too, so it works anywhere on the command line."""

    def add_subparsers(self, **kwargs: Any) -> argparse._SubParsersAction:
        action = super().add_subparsers(**kwargs)
        add_parser = action.add_parser

        def add_with_settings(name: str, **options: Any) -> argparse.ArgumentParser:
            parser = add_parser(name, **options)
            parser.add_argument("--settings", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            return parser

        action.add_parser = add_with_settings  # type: ignore[method-assign]
        return action


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gate-cli", description="maskgate: face-mask compliance gate")
    parser.add_argument("--settings", type=Path, default=None,
                        help="settings file, anywhere on the command line (default: ./settings.toml if present, else built-in defaults)")
    parser.add_argument("--version", action=_VersionAction, help="print the version and the default model's SHA-256")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("test-image", help="classify the faces in image files and show the gate's decision")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--json", action="store_true", help="one JSON object per line and image")
    p.add_argument("--assume-face", action="store_true", help="each image is one face crop: skip detection")
    p.add_argument("--annotate", type=Path, help="write annotated copies into this folder")
    p.add_argument("--model", type=Path, help="override classifier.model")
    p.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_PIXELS / 1e6,
                   help=f"refuse larger images, from their header, before decoding (default {DEFAULT_MAX_PIXELS / 1e6:g}: sized for a Pi)")
    p.set_defaults(func=cmd_test_image)

    p = sub.add_parser("run", help="run the gate daemon (systemd starts this); the settings file must exist")
    p.add_argument("--allow-mock-pins", action="store_true", help='accept door.pin_factory = "mock" (tests, a bench without relay)')
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the whole gate on a video clip with mock GPIO and no broker")
    p.add_argument("--clip", type=Path, required=True)
    p.add_argument("--state-dir", type=Path, default=None, help="default: demo/ inside gate.state_dir (`status --demo` reads it)")
    p.add_argument("--fast", action="store_true", help="process the clip as fast as possible instead of in real time")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("test-camera", help="open the configured camera and report resolution and frame rate")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--save", type=Path, help="save the last frame here")
    p.set_defaults(func=cmd_test_camera)

    p = sub.add_parser("door", help="door hardware: `release` drives the relay pin inactive (systemd's stop hook; the daemon must be stopped)")
    p.add_argument("action", choices=["release"])
    p.set_defaults(func=cmd_door)

    p = sub.add_parser("config", help="check or show the settings")
    p.add_argument("action", choices=["check", "show"])
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("status", help="the gate's state: running or not since when, door, camera, outbox, last decision")
    p.add_argument("--demo", action="store_true", help="the last demo's status instead of the daemon's")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("assets", help="fetch the third-party model files (MediaPipe) from PyPI, or show where they are looked for")
    p.add_argument("action", choices=["fetch", "where"])
    p.add_argument("--dir", type=Path, default=None, help="default: $MASKGATE_ASSETS, else the first folder of `assets where`")
    p.add_argument("--training", action="store_true", help="also the dataset builder's files")
    p.set_defaults(func=cmd_assets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        configure_logging("INFO", "text")
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StateError as exc:  # a corrupt outbox: restarting would not help, repairing it will
        print(f"state error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UsageError as exc:
        print(f"gate-cli: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MaskgateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
