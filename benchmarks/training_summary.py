#!/usr/bin/env python3
"""Summarise training runs into the table the README quotes.

    .venv/bin/python benchmarks/training_summary.py runs/compact-3c runs/compact-2c runs/seed-2c \
        [--real ../shared/data/realmask]

Reads each run's run.json and metrics.json (written by `maskgate-train train`); writes
benchmarks/results/training.md and .json and prints the table. A run still in progress (only
progress.json and last.keras) is listed at its last finished epoch: validation accuracy there,
and its curves drawn into the run folder. With ``--real``, every run's model (the best
checkpoint, or the last one of a run in progress) is also scored on the real photos of
``DIR/val`` (door view: with_mask on top = grant).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def real_val(model_path: Path, real_dir: Path) -> dict:
    """Binary figures of a Keras model on ``real_dir/val`` (TensorFlow imported only when asked)."""
    import keras

    from training.dataset import class_names, load_real_folder
    from training.train import real_figures

    model = keras.models.load_model(model_path, compile=False)
    classes = class_names(max(2, model.output_shape[-1]))
    subset = load_real_folder(real_dir, classes, int(model.input_shape[1]))["val"]
    return real_figures(model, subset, classes)


def in_progress(run_dir: Path) -> dict:
    """A run that has not finished: figures at its last completed epoch (progress.json), curves drawn."""
    from training.report import plot_curves

    progress = json.loads((run_dir / "progress.json").read_text())
    history = progress["history"]
    plot_curves(history, run_dir / "curves.png")
    config = json.loads((run_dir / "split.json").read_text())
    done = progress["epochs_done"]
    return {
        "run": str(run_dir), "preset": "seed" if "seed" in run_dir.name else "?", "classes": len(config["classes"]),
        "input": config["image_size"], "params": None, "macs_m": None,
        "epochs": f"{done} done (in progress)", "minutes": round(sum(history.get("epoch_seconds", [])) / 60, 1),
        "test_images": None, "test_accuracy": None, "val_accuracy_last": history["val_accuracy"][-1],
        "train_accuracy_last": history["accuracy"][-1], "curves": str(run_dir / "curves.png"),
        "command": f"maskgate-train train --dataset {config['dataset_dir']} --out {run_dir} ... --resume   (see scripts/train_all.sh)",
    }


def summarise(run_dir: Path) -> dict:
    if not (run_dir / "run.json").is_file() and (run_dir / "progress.json").is_file():
        return in_progress(run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = run["config"]
    return {
        "run": str(run_dir),
        "preset": run["preset"],
        "classes": len(run["classes"]),
        "input": run["input_size"],
        "params": run["params"],
        "macs_m": round(run["macs"] / 1e6, 1),
        "epochs": f"{run['epochs_run']} (best {run['best_epoch']})",
        "minutes": round(run["training_seconds"] / 60, 1),
        "test_images": metrics["n_test"],
        "test_accuracy": metrics["accuracy"],
        "command": (
            f"maskgate-train train --dataset {config['dataset_dir']} --out {run_dir} --preset {config['preset']} "
            f"--classes {config['classes']} --epochs {config['epochs']} --patience {config['patience']}"
            + "".join(f" --{key.replace('_', '-')} {config[key]}" for key in ("input_size", "augment", "init_from")
                      if config.get(key) and (key != "input_size" or config.get("real_dirs")))
            + "".join(f" --real {d}" for d in config.get("real_dirs") or [])
            + (f" --learning-rate {config['learning_rate']:g}" if config.get("init_from") else "")
            + (" --train-per-class {train} --val-per-class {val} --test-per-class {test}".format(**config["split"])
               if config.get("real_dirs") else "")
        ),
    }


def _row(r: dict) -> str:
    def number(value, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    accuracy = (f"{100 * r['test_accuracy']:.2f} %" if r.get("test_accuracy") is not None
                else f"(val {100 * r['val_accuracy_last']:.2f} % at the last epoch)")
    real = r.get("real_val")
    real_text = (f"{real['binary_accuracy']:.3f} / {100 * real['false_accept']:.1f} % / {100 * real['false_reject']:.1f} %"
                 if real else "–")
    return (f"| `{r['run']}` | {r['preset']} | {r['classes']} | {r['input']} | {number(r['params'], ',')} | "
            f"{number(r['macs_m'], '')} | {r['epochs']} | {r['minutes']} | {number(r['test_images'], '')} | {accuracy} | {real_text} |")


def _earlier_rows(runs: list[Path]) -> list[dict]:
    """Rows of the previous table whose run folders are gone (another machine or session)."""
    previous = RESULTS / "training.json"
    if not previous.is_file():
        return []
    asked = {str(run) for run in runs}
    return [row for row in json.loads(previous.read_text())
            if row["run"] not in asked and not Path(row["run"]).is_dir()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--real", type=Path, help="realmask-style folder: score each run on its val/ photos")
    args = parser.parse_args()
    rows = [summarise(run) for run in args.runs]
    for row, run in zip(rows, args.runs):
        if args.real:
            model = run / ("model.keras" if (run / "run.json").is_file() else "last.keras")
            row["real_val"] = {"model": model.name, **real_val(model, args.real)}
    kept = _earlier_rows(args.runs)
    lines = [
        "# Training runs",
        "",
        f"Generated by `benchmarks/training_summary.py {' '.join(str(r) for r in args.runs)}"
        f"{f' --real {args.real}' if args.real else ''}`; the runs by `scripts/train_all.sh`.",
        "Test accuracy: the synthetic test split (identities never seen in training). Real val: the real photos of "
        "`realmask/val` (door view: a grant = with_mask on top), binary accuracy / false accept / false reject.",
        "",
        "| run | preset | classes | input | params | MMACs | epochs | minutes (2 CPU cores) | test images | test accuracy | real val |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    lines += [_row(r) for r in rows + kept]
    if kept:
        lines += ["", "Runs of an earlier session (their folders are not on this machine; figures kept from "
                  "benchmarks/results/training.json): " + ", ".join(f"`{r['run']}`" for r in kept) + "."]
    lines += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in rows + kept]
    rows += kept
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "training.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
