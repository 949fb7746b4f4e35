#!/usr/bin/env python3
"""Write the model card of a shipped model from the files that measured it.

    .venv/bin/python scripts/model_card.py gate/models/maskgate-compact-3c-int8.tflite runs/compact-3c \
        [--realcheck benchmarks/results/realcheck.json]

Every figure comes from the model's contract (test-split parity measured at conversion), the
training run (run.json, metrics.json), the real-face check's JSON (``maskgate-train real-check``,
matched to this model by its SHA-256) and the file itself; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gate.contract import file_sha256, read_contract


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _copy_figures(run_dir: Path, folder: Path, with_faces: bool) -> str:
    """The run's plots next to the card (the predictions grid as JPEG: a tenth of the size).

    The predictions grid shows test faces: it is left out when the run's data hold real photos
    (own faces, realmask), which must never be committed.
    """
    import cv2

    folder.mkdir(exist_ok=True)
    for name in ("curves.png", "confusion_matrix.png"):
        (folder / name).write_bytes((run_dir / name).read_bytes())
    grid_path = folder / "predictions.jpg"
    if with_faces:
        cv2.imwrite(str(grid_path), cv2.imread(str(run_dir / "predictions.png")), [cv2.IMWRITE_JPEG_QUALITY, 85])
    else:
        grid_path.unlink(missing_ok=True)
    return folder.name


REALMASK_CREDIT = ("real photos: `realmask` crops of the public GitHub repository "
                   "[chandrikadeb7/Face-Mask-Detection](https://github.com/chandrikadeb7/Face-Mask-Detection) "
                   "(MIT-licensed repository; its authors collected the images from the web), credited as its "
                   "dataset card asks; the images are never committed here")
REALCROWD_CREDIT = ("`realcrowd` crops of the public 853-photo face mask detection set as copied in the public "
                    "GitHub repository [marellanoc/MaskON](https://github.com/marellanoc/MaskON) (MIT-licensed "
                    "repository; rights in individual photos unclear), never committed here")


def _credits(real_dirs: list[str]) -> str:
    return REALMASK_CREDIT + ("; " + REALCROWD_CREDIT if any("realcrowd" in str(d) for d in real_dirs) else "")


def _backbone_row(run: dict) -> str:
    """The pretrained start of a backbone model: which file (and its SHA-256) it was."""
    backbone = run.get("backbone")
    if not backbone:
        return ""
    digest = f", SHA-256 `{backbone['sha256']}`" if backbone.get("sha256") else ""
    return (f"| pretrained start | ImageNet weights of Keras' MobileNetV2 base (`{Path(backbone['weights']).name}`{digest}; "
            f"Keras application weights, Apache-2.0; `weights=\"imagenet\"` in Keras gives the same); head trained "
            f"{backbone['head_epochs']} epochs on frozen features, then fine-tuned from `{backbone['fine_tune_from']}` "
            f"with BatchNorm frozen |\n")


def _train_commands(run_dir: Path, config: dict) -> str:
    """The ``maskgate-train train`` line(s) of a run: a fine-tuned run's base run first."""
    lines = []
    if config.get("init_from"):
        base = Path(config["init_from"]).parent
        lines.append(_train_commands(base, json.loads((base / "run.json").read_text())["config"]))
    split = config["split"]
    extra = "".join(f" --{k.replace('_', '-')} {config[k]}" for k in ("input_size", "augment", "init_from") if config.get(k))
    extra += "".join(f" --real {d}" for d in config.get("real_dirs") or [])
    if config.get("backbone_weights"):  # a backbone run: its two stages, sampling and selection
        extra += f" --backbone-weights {config['backbone_weights']}"
        extra += "".join(f" --{k.replace('_', '-')} {config[k]}" for k in ("head_epochs", "fine_tune_from") if config.get(k))
        if config.get("head_epochs"):
            extra += f" --head-learning-rate {config['head_learning_rate']:g}"
        extra += "".join(f" --{k.replace('_', '-')} {config[k]}" for k, plain in (("sampling", "shuffle"), ("select_on", "all"))
                         if config.get(k, plain) != plain)
    if config.get("steps_per_epoch"):
        extra += f" --steps-per-epoch {config['steps_per_epoch']}"
    if config.get("learning_rate") and (config.get("init_from") or config.get("backbone_weights")):
        extra += f" --learning-rate {config['learning_rate']:g}"
    lines.append(f".venv/bin/maskgate-train train --dataset {config['dataset_dir']} --out {run_dir} --preset {config['preset']} "
                 f"--classes {config['classes']}{extra} --epochs {config['epochs']} --patience {config['patience']} "
                 f"--train-per-class {split['train']} --val-per-class {split['val']} --test-per-class {split['test']}")
    return "\n".join(lines)


def _sources(config: dict) -> dict:
    """Face sources of the build the run used (its summary.json); empty when it is gone."""
    summary = Path(config["dataset_dir"]) / "summary.json"
    return json.loads(summary.read_text()).get("sources", {}) if summary.is_file() else {}


def _build_command(config: dict) -> str:
    """The ``build-dataset`` line of the run's data, from the build's summary.json (what older builds
    did not record is taken as they did it: each real folder's bare train faces, grouped by its manifest)."""
    path = Path(config["dataset_dir"]) / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    line = f".venv/bin/maskgate-train build-dataset --out {config['dataset_dir']} --per-class {summary.get('per_class', 2000)}"
    if "own_faces_dirs" in summary:
        line += "".join(f" --own-faces {d}" for d in summary["own_faces_dirs"])
        if summary.get("own_faces_groups"):
            line += f" --own-faces-groups {summary['own_faces_groups']}"
        if summary.get("own_faces_split", "identity") != "identity":
            line += f" --own-faces-split {summary['own_faces_split']}"
        return line
    return line + "".join(f" --own-faces {d}/train/without_mask --own-faces-groups {d}/manifest.csv"
                          for d in config.get("real_dirs") or [])


def _real_check(path: Path | None, sha256: str) -> tuple[dict | None, str]:
    """This model's entry in the real-face check's JSON (by SHA-256) and the command that made it."""
    if path is None:
        return None, ""
    payload = json.loads(path.read_text())
    for result in payload.get("models", {}).values():
        if result.get("model_sha256") == sha256:
            return result, payload.get("command", "")
    raise SystemExit(f"{path} has no result for a model with SHA-256 {sha256}: run the real-face check on it first")


def _real_sections(check: dict | None, command: str, run: dict) -> str:
    """Real crop folders (realmask/val, realcrowd/val, ...) and the real-face check, with the threshold's trade-off."""
    from training.realcheck import check_markdown, folders_markdown

    out = []
    keras_val = run.get("real_val")
    if keras_val:
        folders = " + ".join(f"`{Path(d).name}/val`" for d in run["config"].get("real_dirs") or ["realmask"])
        out.append(f"- {folders} ({keras_val['n']} real photos, Keras float model, top class): binary "
                   f"{keras_val['binary_accuracy']:.3f}, false accept {_pct(keras_val['false_accept'])}, "
                   f"false reject {_pct(keras_val['false_reject'])}.")
    if check is not None:
        folders = folders_markdown(check)
        out += ["", f"This int8 file, as the real-face check scored it (`{command}`).", "", folders] if folders else []
        out += ["", "### Real-face check", "", f"Reproduce: `{command}`", "",
                check_markdown("this model", check).split("\n", 1)[1]]
    return "\n".join(out).strip() if out else "No real-photo figures were given to this card (see `--realcheck`)."


def _fairness_section(check: dict | None) -> str:
    """False accept / false reject per skin-tone third, from the real-face check's JSON."""
    from training.realcheck import fairness_markdown

    return fairness_markdown(check) if check is not None else "Not measured: no real-face check was given to this card (see `--realcheck`)."


def card(model: Path, run_dir: Path, folder: Path = Path("models"), realcheck: Path | None = None) -> str:
    contract = read_contract(model)
    check, check_command = _real_check(realcheck, file_sha256(model))
    run = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    parity = (contract.metrics or {}).get("test", {})
    config = run["config"]
    classes = list(contract.output.classes)
    counts = run["dataset"]["counts"]
    rows = "\n".join(
        f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        for name, m in metrics["per_class"].items()
    )
    matrix = "\n".join(f"| **{classes[i]}** | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(metrics["confusion_matrix"]))
    size_kib = model.stat().st_size / 1024
    real_photos = bool(config.get("real_dirs")) or "own" in _sources(config)
    figures = _copy_figures(run_dir, folder / f"{model.stem}-report", with_faces=not real_photos)
    threshold = contract.thresholds.min_confidence
    chosen = ((contract.metrics or {}).get("threshold") or {}).get("chosen_on", "the validation split")
    real_dirs = config.get("real_dirs") or []
    data = (f"synthetic faces (GAN faces from `gan-face-generate` and the real bare faces of `realmask/train`, masks "
            f"rendered on MediaPipe face landmarks, hard negatives; see the README) plus the real photos of "
            f"{', '.join(f'`{d}`' for d in real_dirs)} (`train/` to train, `val/` to validate); {_credits(real_dirs)}"
            if real_dirs else "the project's synthetic dataset (GAN faces from `gan-face-generate`, masks rendered on "
            "MediaPipe face landmarks, hard negatives; see the README)")
    night = ("" if contract.thresholds.min_confidence_night is None else
             f" (≥ {contract.thresholds.min_confidence_night:.4g} on greyscale crops: an IR camera at night)")
    agreement = parity.get("min_agreement", 0.99)
    convert_args = f" --min-agreement {agreement:g}" if agreement != 0.99 else ""
    if chosen != "the validation split":
        convert_args += f" --min-confidence {threshold:g}"
        if contract.thresholds.min_confidence_night is not None:
            convert_args += f" --min-confidence-night {contract.thresholds.min_confidence_night:g}"
        convert_args += f" --threshold-note \"{chosen}\""
    return f"""# Model card: `{model.name}`

*Generated by `scripts/model_card.py {model} {run_dir}{f' --realcheck {realcheck}' if realcheck else ''}` from the files that measured it.*

| | |
|---|---|
| task | face crop → {', '.join(classes)} (softmax, in this order) |
| architecture | `{run['preset']}` preset: {run['params']:,} parameters, {run['macs'] / 1e6:.1f} M multiply-accumulates per face |
| input | {contract.input.height}×{contract.input.width} {contract.input.color_order}, raw pixels {list(contract.input.pixel_range)}, square crop with margin {contract.input.crop_margin} around the detector's box |
| quantisation | {contract.quantization}, file {size_kib:.0f} KiB |
| threshold (contract `min_confidence`) | {threshold:.4g}: a face counts only when its top class has at least this probability, so a grant needs P(with_mask) ≥ {threshold:.4g}{night}; chosen on {chosen} |
{_backbone_row(run)}| SHA-256 | `{file_sha256(model)}` |

## How it was made

```sh
{_build_command(config)}
{_train_commands(run_dir, config)}
.venv/bin/maskgate-convert {run_dir} --preset int8 --out {model}{convert_args}
.venv/bin/python scripts/model_card.py {model} {run_dir}{f' --realcheck {realcheck}' if realcheck else ''}
```

Data: {data}. Seed {config['seed']}, synthetic part split by identity from the builder's manifest
(`{run['dataset'].get('split_source')}`), real photos added to train and validation: train
{sum(counts['train'].values())}, validation {sum(counts['val'].values())}, test {sum(counts['test'].values())} images
({'; '.join(f"{name}: " + ', '.join(f'{c} {n}' for c, n in counts[name].items()) for name in ('train', 'val', 'test'))}). Manifest SHA-256 `{run['dataset'].get('manifest_sha256')}`. Trained
{run['epochs_run']} epochs (best: {run['best_epoch']}), {run['training_seconds'] / 60:.0f} min on 2 shared CPU cores;
TensorFlow {run['versions']['tensorflow']}.

## Metrics (synthetic test split, faces never seen in training)

| | accuracy |
|---|---|
| Keras float32 | {_pct(parity.get('keras_accuracy', metrics['accuracy']))} |
| this int8 file through LiteRT | {_pct(parity.get('tflite_accuracy', float('nan')))} |
| int8 vs float: agreement / accuracy drop | {_pct(parity.get('agreement', float('nan')))} / {parity.get('drop_points', float('nan')):.2f} points |

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{rows}

Confusion matrix (rows: true class, columns: predicted, in the order above):

|  | {' | '.join(classes)} |
|---|{'---|' * len(classes)}
{matrix}

![training curves]({figures}/curves.png)
![confusion matrix]({figures}/confusion_matrix.png)
{'' if real_photos else f'![test predictions, mistakes first]({figures}/predictions.jpg)'}

## Real faces

{_real_sections(check, check_command, run)}

## Fairness: skin tone

{_fairness_section(check)}

## Known limits

- **The synthetic figures flatter.** Rendered masks on GAN faces are easier than real ones; the
  real-photo figures above are the ones to trust, and they come from few sources.
- **The threshold trades false rejects for safety.** Below the floor a face is "uncertain": no
  grant, and no decision either until a confident frame comes (the door stays locked).
- The `incorrect_mask` class means "mask below the nose or on the chin"; a mask worn over the
  nose but gaping at the side is `with_mask` to this model. It is learnt from rendered masks only
  (no real nose-exposed photos were available to train on).
- **Retrain on your own photos.** Put face-centred photos of your site's people (consenting
  staff, enrolment photos) in a folder and run
  `maskgate-train build-dataset --out data/site --own-faces DIR` — masks are rendered on them
  the same way, each photo's identity kept in one split — then train and convert as above, and check with
  `gate-cli test-image` on real door captures before switching `classifier.model`.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--realcheck", type=Path, help="the real-face check's JSON (maskgate-train real-check) with this model")
    parser.add_argument("--out", type=Path, help="default: models/MODEL_CARD.md (the card stays in models/, the model ships in gate/models/)")
    args = parser.parse_args()
    out = args.out or Path("models") / "MODEL_CARD.md"
    out.write_text(card(args.model, args.run_dir, out.parent, args.realcheck))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
