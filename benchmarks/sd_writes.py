"""Bytes a gate writes to its storage per day, at idle and at a busy door (what wears out an SD card).

    nice -n 15 .venv/bin/python benchmarks/sd_writes.py [--minutes 8] [--out /var/tmp/maskgate-sd]

Three phases, each `gate-cli run` (the daemon systemd starts) for ``--minutes`` after a one-minute
warm-up, MQTT on (a real mosquitto on loopback, health every 30 s), the journal on:

* ``idle, status in state_dir``: an empty door (a still corridor with sensor noise, 5 fps); the
  status file in the state folder, as before ``gate.runtime_dir`` existed;
* ``idle``: the same, the status file in a RAM folder (``gate.runtime_dir`` on /dev/shm, as the
  systemd unit puts it in /run/maskgate);
* ``busy``: the synthetic door clip looping at 10 fps: 10.8 visitors a minute (10x a busy office
  door), each decision recorded (outbox, fsynced), journaled, logged and published.

Measured: ``write_bytes`` of the gate process (/proc/<pid>/io: bytes it sent towards the block
device, counted when pages are dirtied: an upper bound of data writes, without the file system's
own journal and metadata) plus the bytes it logged (journald would store them); the state files'
sizes beside. The state folder must be on a real disk (--out), not a tmpfs. Per day = measured x
86400 / seconds measured. Writes benchmarks/results/sd_writes.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gate_site import REPO, GateSite, clip_visitors_per_minute, door_clip, sample_process  # noqa: E402

from tests.broker import EXTRA_ACL, USERS, Broker  # noqa: E402
from gate.mqtt import broker_acl  # noqa: E402
from gate.settings import MqttSettings  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
GATE_ID = "sd-door"
STATE_FILES = ("outbox.sqlite3", "outbox.sqlite3-wal", "decisions.jsonl", "decisions.jsonl.1", "status.json", "remote_command_ids.json")
log = logging.getLogger("sd_writes")


def empty_door_clip(folder: Path, fps: int = 5, seconds: int = 20) -> Path:
    """A still corridor with sensor noise: nobody at the door."""
    import cv2
    import numpy as np

    path = folder / f"empty-{fps}fps.mp4"
    if path.exists():
        return path
    rng = np.random.default_rng(3)
    scene = np.full((480, 640, 3), 120, np.uint8)
    for _ in range(6):
        x, y, w, h = (int(v) for v in rng.integers(0, 400, 4))
        cv2.rectangle(scene, (x, y), (x + w // 2, y + h // 2), tuple(int(c) for c in rng.integers(30, 220, 3)), -1)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    for _ in range(fps * seconds):
        writer.write(np.clip(scene + rng.normal(0, 3, scene.shape), 0, 255).astype(np.uint8))
    writer.release()
    return path


def measure(site: GateSite, warmup_s: float, seconds: float) -> dict[str, Any]:
    site.start()
    try:
        time.sleep(warmup_s)
        start, log_start, files_start = sample_process(site.pid), site.log_file.stat().st_size, site.file_bytes(*STATE_FILES)
        seq_start = site.outbox_counts()["last_seq"]
        began = time.monotonic()
        time.sleep(seconds)
        end, log_end, files_end = sample_process(site.pid), site.log_file.stat().st_size, site.file_bytes(*STATE_FILES)
        elapsed = time.monotonic() - began
        events = site.outbox_counts()["last_seq"] - seq_start
    finally:
        site.stop()
    if start is None or end is None:
        raise SystemExit(f"the gate exited during the measurement; see {site.log_file}")
    per_day = 86400 / elapsed
    written, logged = end.write_bytes - start.write_bytes, log_end - log_start
    return {"seconds": round(elapsed), "write_bytes": written, "log_bytes": logged, "state_files_growth": files_end - files_start,
            "events": events, "mb_per_day": round((written + logged) * per_day / 1e6, 2),
            "disk_mb_per_day": round(written * per_day / 1e6, 2), "log_mb_per_day": round(logged * per_day / 1e6, 2),
            "cpu_s": round(end.cpu_s - start.cpu_s, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="measured minutes per phase (after a 1 min warm-up)")
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("/var/tmp/maskgate-sd"), help="work folder, on the disk being measured")
    parser.add_argument("--phases", nargs="+", default=["idle_state_dir", "idle", "busy"], choices=["idle_state_dir", "idle", "busy"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    ram = Path("/dev/shm") / f"maskgate-sd-{int(time.time())}"
    clips = {"empty": (empty_door_clip(args.out), 5), "busy": (door_clip(args.out, fps=10, gap_s=1.5), 10)}
    acl = broker_acl(MqttSettings(username="gate"), GATE_ID, "gate") + EXTRA_ACL
    results: dict[str, Any] = {}
    with Broker(args.out, acl=acl) as broker:
        mqtt = broker.settings("gate").model_dump(mode="json", exclude_none=True)
        mqtt.update(health_interval_s=30.0)
        for phase in args.phases:
            clip, fps = clips["busy" if phase == "busy" else "empty"]
            gate = {"runtime_dir": None if phase == "idle_state_dir" else str(ram / phase)}
            site = GateSite(args.out / phase, GATE_ID, clip, fps, mqtt, USERS["gate"], extra={"gate": gate})
            log.info("%s: %.0f s warm-up, then %.1f min", phase, args.warmup_s, args.minutes)
            results[phase] = measure(site, args.warmup_s, args.minutes * 60)
            log.info("%s: %s", phase, results[phase])
    shutil.rmtree(ram, ignore_errors=True)
    date = datetime.now(timezone.utc).date().isoformat()
    command = "nice -n 15 .venv/bin/python benchmarks/sd_writes.py " + " ".join(sys.argv[1:])
    busy_rate = round(clip_visitors_per_minute(clips["busy"][0]), 1)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "sd_writes.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}  # phases not run now keep their last figures
    report = {**earlier, "busy_visitors_per_min": busy_rate, **{phase: {**r, "date": date, "command": command} for phase, r in results.items()}}
    path.write_text(json.dumps(report, indent=1) + "\n")
    names = {"idle_state_dir": "idle, status file in state_dir (before)", "idle": "idle, status file in RAM (runtime_dir)", "busy": f"busy door, {busy_rate} visitors/min"}
    lines = ["# Bytes written per day", "",
             "| phase | date | measured | events | disk writes MB/day | log MB/day | total MB/day | command |", "|---|---|---|---|---|---|---|---|"]
    for phase in names:
        if phase in report:
            r = report[phase]
            lines.append(f"| {names[phase]} | {r.get('date', '')} | {r['seconds']} s | {r['events']} | {r['disk_mb_per_day']} | {r['log_mb_per_day']} | "
                         f"**{r['mb_per_day']}** | `{r.get('command', '')}` |")
    (RESULTS / "sd_writes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
