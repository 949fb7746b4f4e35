"""gate-cli: the maintenance tool. Thin commands over the runtime's library functions.

Exit statuses: 0 fine; 1 something failed (an image, a camera); 2 usage; 78 bad configuration
(the value systemd's RestartPreventExitStatus= names).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from gate.errors import ConfigError, MaskgateError, StateError
from gate.logs import configure_logging
from gate.settings import EXIT_CONFIG, Settings, load_settings, redacted

log = logging.getLogger("gate.cli")

DEFAULT_SETTINGS = Path("settings.toml")


def _settings(args: argparse.Namespace) -> Settings:
    """settings.toml if present (or named), else the built-in defaults."""
    path: Path | None = args.settings
    if path is None and DEFAULT_SETTINGS.exists():
        path = DEFAULT_SETTINGS
    if path is None:
        return Settings()
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
    import cv2

    from gate.classifier import MaskClassifier
    from gate.policy import FaceObservation
    from gate.preprocess import read_image_rgb
    from gate.types import Box, Detection

    settings = _settings(args)
    model = args.model or settings.classifier.model
    classifier = MaskClassifier(model, threads=settings.classifier.threads, min_confidence=settings.classifier.min_confidence)
    detector = None
    if not args.assume_face:
        from gate.detector import BlazeFaceDetector

        detector = BlazeFaceDetector(settings.detector)
    if args.annotate:
        args.annotate.mkdir(parents=True, exist_ok=True)

    failures = 0
    for path in args.paths:
        result: dict[str, Any] = {"path": str(path), "faces": [], "decision": None, "error": None}
        try:
            image = read_image_rgb(path)
            height, width = image.shape[:2]
            faces = detector.detect(image) if detector else [Detection(Box(0, 0, width, height), 1.0)]
            observations = [FaceObservation(face, classifier.classify(image, None if detector is None else face.box)) for face in faces]
            result["faces"] = [
                {"box": o.detection.box.as_list(), "label": o.classification.label,
                 "scores": {k: round(v, 4) for k, v in o.classification.scores.items()}, "detector_score": round(o.detection.score, 4)}
                for o in observations
            ]
            result["decision"] = _single_image_decision(settings, classifier, observations)
            if args.annotate:
                _annotate(cv2, image, observations, args.annotate / (Path(path).stem + ".annotated.jpg"))
        except MaskgateError as exc:
            failures += 1
            result["error"] = str(exc)
        _print_image_result(result, args.json)
    return 1 if failures else 0


_COLOURS = {"with_mask": (0, 200, 0), "without_mask": (220, 0, 0), "incorrect_mask": (255, 160, 0)}


def _annotate(cv2, image, observations, out: Path) -> None:
    canvas = image.copy()
    for o in observations:
        x, y, w, h = o.detection.box.as_list()
        colour = _COLOURS.get(o.classification.label, (255, 255, 255))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, 2)
        text = f"{o.classification.label} {o.classification.confidence:.2f}"
        cv2.putText(canvas, text, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    cv2.imwrite(str(out), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))


def _print_image_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result), flush=True)
        return
    if result["error"]:
        print(f"{result['path']}: ERROR {result['error']}", flush=True)
        return
    decision = result["decision"]
    verdict = decision["verdict"] or "no decision"
    print(f"{result['path']}: {len(result['faces'])} face(s) → {verdict} ({decision['reason']})")
    for face in result["faces"]:
        scores = " ".join(f"{k}={v:.3f}" for k, v in face["scores"].items())
        print(f"  box {face['box']}  {face['label']:<15} {scores}", flush=True)


# -- run / demo ------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from gate.daemon import serve

    settings = _settings(args)
    configure_logging(settings.gate.log_level, settings.gate.log_format)
    serve(settings)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole gate on the generated door clip: mock GPIO, no broker; decisions printed live."""
    from gate.daemon import serve

    base = _settings(args)
    settings = base.model_copy(
        update={
            "gate": base.gate.model_copy(update={"state_dir": args.state_dir}),
            "camera": base.camera.model_copy(update={"source": str(args.clip), "kind": "file", "loop": False, "realtime": not args.fast}),
            "door": base.door.model_copy(update={"pin_factory": "mock"}),
            "mqtt": base.mqtt.model_copy(update={"enabled": False}),
            "privacy": base.privacy.model_copy(update={"save_faces": False}),
        }
    )
    configure_logging("INFO" if args.verbose else "WARNING", "text")
    script = _clip_script(args.clip)
    fps = script.get("fps", settings.camera.fps)
    print(f"maskgate demo: {args.clip} ({'as fast as possible' if args.fast else 'real time'}; mock relay and LEDs, no broker)", flush=True)
    decided: list[tuple[float, str, str]] = []

    def show(decision, event, frame) -> None:
        video_t = frame.index / fps
        decided.append((video_t, decision.verdict, decision.reason))
        faces = ", ".join(f"{o.classification.label} {o.classification.confidence:.2f}" for o in decision.faces)
        door = "door UNLOCKED" if decision.verdict == "grant" else "door stays locked"
        print(f"  {video_t:5.1f}s  #{event.seq:<3} {decision.verdict.upper():5} {decision.reason:<15} [{faces}]  {door}; "
              f"decided {event.latency_ms:.0f} ms after the face appeared", flush=True)

    health = serve(settings, until_camera_ends=True, on_decision=show)
    if not health:
        print("the gate did not start: see the errors above")
        return 1
    _print_summary(health, script.get("segments", []), decided)
    return 0


def _clip_script(clip: Path) -> dict[str, Any]:
    """The clip's ground truth (who walks up, when, wearing what), written beside it by door-clip."""
    script = clip.with_suffix(".json")
    return json.loads(script.read_text()) if script.exists() else {}


def _print_summary(health: dict[str, Any], segments: list[dict[str, Any]], decided: list[tuple[float, str, str]]) -> None:
    decisions = health["decisions"]
    print("summary:")
    print(f"  {health['frames']} frames, {health['faces']} faces classified, {health['fps']:.1f} frames/s processed")
    print(f"  decisions: {decisions.get('grant', 0)} grant, {decisions.get('deny', 0)} deny")
    print("  stage latency (ms, smoothed): " + ", ".join(f"{k} {v:.1f}" for k, v in health["stage_ms"].items()))
    for number, segment in enumerate(segments, 1):
        labels = segment["labels"]
        expected = "grant" if all(label == "with_mask" for label in labels) else "deny"
        got = [verdict for t, verdict, _ in decided if segment["start"] <= t <= segment["end"]]
        mark = "ok" if got and got[0] == expected else "MISMATCH"
        print(f"  visitor {number} ({' + '.join(labels)}): expected {expected}, gate said {', '.join(got) or 'nothing'}  [{mark}]")


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
    settings = _settings(args)
    if args.action == "show":
        print(json.dumps(redacted(settings), indent=2))
    else:
        print(f"{args.settings or DEFAULT_SETTINGS}: ok")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from gate.health import format_status, read_status

    settings = _settings(args)
    print(format_status(read_status(settings.gate.state_dir)))
    return 0


def cmd_assets(args: argparse.Namespace) -> int:
    from gate import assets

    wanted = assets.RUNTIME_ASSETS + (assets.TRAINING_ASSETS if args.training else ())
    for path in assets.fetch(wanted, args.dir):
        print(f"ok {path}")
    return 0


# -- entry point -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from gate.assets import DEFAULT_ASSETS_DIR

    parser = argparse.ArgumentParser(prog="gate-cli", description="maskgate: face-mask compliance gate")
    parser.add_argument("--settings", type=Path, default=None, help="settings file (default: ./settings.toml if present)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("test-image", help="classify the faces in image files and show the gate's decision")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--json", action="store_true", help="one JSON object per line and image")
    p.add_argument("--assume-face", action="store_true", help="each image is one face crop: skip detection")
    p.add_argument("--annotate", type=Path, help="write annotated copies into this folder")
    p.add_argument("--model", type=Path, help="override classifier.model")
    p.set_defaults(func=cmd_test_image)

    p = sub.add_parser("run", help="run the gate daemon (systemd starts this)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the whole gate on a video clip with mock GPIO and no broker")
    p.add_argument("--clip", type=Path, required=True)
    p.add_argument("--state-dir", type=Path, default=Path("build/demo/var"))
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

    p = sub.add_parser("status", help="the running gate's state: door, camera, outbox, last decision")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("assets", help="fetch the third-party model files (MediaPipe) from PyPI")
    p.add_argument("action", choices=["fetch"])
    p.add_argument("--dir", type=Path, default=DEFAULT_ASSETS_DIR)
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
    except MaskgateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
