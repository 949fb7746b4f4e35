"""``maskgate-convert``: turn a training run into contracted TFLite model(s), refusing on parity failure.

Exit status: 0 every requested model written, 1 a conversion was refused or failed
(the reason is printed and, for parity, kept in ``X.parity.json``), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from convert.convert import (
    DEFAULT_CALIBRATION_SIZE,
    IO_DTYPES,
    ConversionResult,
    Preset,
    TrainingRun,
    convert_run,
    default_model_name,
    load_run,
)
from gate.errors import MaskgateError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_REFUSED = 0, 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskgate-convert",
        description="Convert a maskgate-train run to TFLite with its contract; "
        "refuses a model that strays from Keras on the test split.",
    )
    parser.add_argument("run_dir", type=Path, help="training run folder (model.keras, run.json, split.json)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--out", type=Path, help="output .tflite (default: models/maskgate-<preset>-<N>c-<quant>.tflite)")
    target.add_argument("--all-presets", type=Path, metavar="OUTDIR", help="write every preset into OUTDIR")
    parser.add_argument("--preset", choices=[p.value for p in Preset], default=Preset.INT8.value)
    parser.add_argument("--io-dtype", choices=sorted(IO_DTYPES), default="int8",
                        help="int8 preset: input/output tensor type")
    parser.add_argument("--calibration-size", type=int, default=DEFAULT_CALIBRATION_SIZE,
                        help="training images used to calibrate int8")
    parser.add_argument("--max-drop", type=float, default=0.5, help="allowed accuracy loss, in points")
    parser.add_argument("--min-agreement", type=float, default=0.99,
                        help="required fraction of test images labelled as Keras labels them")
    parser.add_argument("--min-confidence", type=float,
                        help="contract threshold to write (default: tuned on the run's validation split); "
                             "a grant then needs P(with_mask) at least this")
    parser.add_argument("--min-confidence-night", type=float,
                        help="grant floor for greyscale crops (an IR camera at night); default: --min-confidence")
    parser.add_argument("--threshold-note", help="where --min-confidence was chosen (kept in the contract)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def _summary(result: ConversionResult) -> dict:
    parity = result.parity
    return {
        "model": str(result.model_path),
        "status": "ok",
        "size_bytes": result.size_bytes,
        "quantization": result.contract.quantization,
        "agreement": parity.agreement,
        "keras_accuracy": parity.keras_accuracy,
        "tflite_accuracy": parity.tflite_accuracy,
        "drop_points": parity.drop_points,
        "min_confidence": result.contract.thresholds.min_confidence,
    }


def _line(row: dict) -> str:
    if row["status"] != "ok":
        return f"REFUSED {row['model']}: {row['error']}"
    return (
        f"ok {row['model']}: {row['size_bytes'] / 1024:.1f} KiB, agreement {row['agreement']:.2%}, "
        f"accuracy Keras {row['keras_accuracy']:.2%} → TFLite {row['tflite_accuracy']:.2%} "
        f"({row['drop_points']:+.2f} pt drop), min_confidence {row['min_confidence']:.2f}"
    )


def _convert_one(run: TrainingRun, preset: Preset, out: Path, args: argparse.Namespace) -> dict:
    try:
        result = convert_run(
            run, preset, out, io_dtype=args.io_dtype, calibration_size=args.calibration_size,
            max_drop=args.max_drop, min_agreement=args.min_agreement,
            min_confidence=args.min_confidence, threshold_note=args.threshold_note,
            min_confidence_night=args.min_confidence_night,
        )
    except MaskgateError as exc:
        return {"model": str(out), "status": "refused", "error": str(exc)}
    return _summary(result)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.out is not None and args.out.suffix != ".tflite":
        parser.error(f"--out {args.out}: the model file must end in .tflite (its contract gets .json)")
    for name in ("min_confidence", "min_confidence_night"):
        value = getattr(args, name)
        if value is not None and not 0.0 <= value <= 1.0:
            parser.error(f"--{name.replace('_', '-')} {value}: must be within [0, 1]")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        run = load_run(args.run_dir)
    except MaskgateError as exc:
        print(f"maskgate-convert: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if args.all_presets is not None:
        jobs = [(preset, args.all_presets / default_model_name(run, preset)) for preset in Preset]
    else:
        preset = Preset(args.preset)
        jobs = [(preset, args.out or Path("models") / default_model_name(run, preset))]
    rows = [_convert_one(run, preset, out, args) for preset, out in jobs]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(_line(row), file=sys.stdout if row["status"] == "ok" else sys.stderr)
    return EXIT_OK if all(row["status"] == "ok" for row in rows) else EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
