"""Benchmark every conversion preset of one training run: size, MACs, LiteRT latency, test accuracy.

    .venv/bin/python benchmarks/bench_models.py RUN_DIR [--models DIR] [--runs 200] [--warmup 20]

Presets missing from ``--models`` are converted first (with the usual parity check). Latency is
the full ``MaskClassifier.classify`` call on a model-sized test image (pixel table + invoke +
output reading), median of ``--runs`` calls after ``--warmup``, with 1 and 2 LiteRT threads.
Writes ``benchmarks/results/models.md`` and ``models.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path

from convert.convert import Preset, TrainingRun, convert_run, default_model_name, load_run, load_subset_images
from convert.parity import tflite_probabilities
from gate.classifier import MaskClassifier
from gate.litert import load_interpreter
from training.models import count_macs

log = logging.getLogger(__name__)

RESULTS = Path(__file__).parent / "results"
THREADS = (1, 2)


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cpu": cpu,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "ai-edge-litert": version("ai-edge-litert"),
        "tensorflow": version("tensorflow-cpu") if version("tensorflow-cpu") != "not installed" else version("tensorflow"),
    }


def median_latency_ms(classifier: MaskClassifier, image, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        classifier.classify(image)
    samples = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        classifier.classify(image)
        samples.append(time.perf_counter_ns() - started)
    return statistics.median(samples) / 1e6


def ensure_models(run: TrainingRun, models_dir: Path) -> dict[Preset, Path]:
    paths = {}
    for preset in Preset:
        path = models_dir / default_model_name(run, preset)
        if not path.exists():
            log.info("converting %s", path)
            convert_run(run, preset, path)
        paths[preset] = path
    return paths


def benchmark(run_dir: Path, models_dir: Path, runs: int, warmup: int) -> dict:
    run = load_run(run_dir)
    paths = ensure_models(run, models_dir)
    images, labels = load_subset_images(run, "test")
    macs = count_macs(run.model)
    rows = []
    for preset, path in paths.items():
        row = {"preset": preset.value, "model": path.name, "size_kib": round(path.stat().st_size / 1024, 1),
               "macs_millions": round(macs / 1e6, 2)}
        row["input"] = load_interpreter(path).get_input_details()[0]["dtype"].__name__
        for threads in THREADS:
            classifier = MaskClassifier(path, threads=threads)
            row[f"latency_ms_{threads}t"] = round(median_latency_ms(classifier, images[0], runs, warmup), 3)
        probabilities = tflite_probabilities(classifier, images)
        row["test_accuracy"] = round(float((probabilities.argmax(1) == labels).mean()), 4)
        rows.append(row)
        log.info("%s", row)
    return {
        "run_dir": str(run_dir), "architecture": run.preset, "classes": list(run.classes),
        "input_size": list(run.input_size), "test_images": int(len(labels)),
        "runs": runs, "warmup": warmup, "machine": machine_info(), "results": rows,
    }


def markdown(report: dict) -> str:
    machine = report["machine"]
    height, width = report["input_size"]
    lines = [
        f"# Model benchmark: `{report['architecture']}` {height}×{width}, {len(report['classes'])} classes",
        "",
        f"Run `{report['run_dir']}`, test split of {report['test_images']} images. Latency = median of "
        f"{report['runs']} `MaskClassifier.classify` calls after {report['warmup']} warm-up "
        "(model-sized input, so no resize).",
        "",
        f"Machine: {machine['cpu']} ({machine['machine']}), Python {machine['python']}, "
        f"ai-edge-litert {machine['ai-edge-litert']}, TensorFlow {machine['tensorflow']}. "
        "Shared CPU: other processes may inflate latencies.",
        "",
        "| preset | input | size (KiB) | MMACs | latency 1 thread (ms) | latency 2 threads (ms) | test accuracy |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        lines.append(
            f"| {row['preset']} | {row['input']} | {row['size_kib']} | {row['macs_millions']} | "
            f"{row['latency_ms_1t']} | {row['latency_ms_2t']} | {row['test_accuracy']:.2%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--models", type=Path, help="folder with (or for) the converted presets; default models/")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = benchmark(args.run_dir, args.models or Path("models"), args.runs, args.warmup)
    args.results.mkdir(parents=True, exist_ok=True)
    table = markdown(report)
    (args.results / "models.md").write_text(table, encoding="utf-8")
    (args.results / "models.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
