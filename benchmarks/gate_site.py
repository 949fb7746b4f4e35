"""Parts the long-running benchmarks share (soak.py, fleet.py): a gate installed in a folder and run
as `gate-cli run` in its own process, a dashboard that collects events as a building's would, and
what /proc says about a process.

Nothing here is a fake of the gate: each gate is the daemon systemd would start, on a synthetic door
clip with gpiozero's mock pins, talking to a real mosquitto (tests/broker.py).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gate.models import default_model_path  # noqa: E402
from tests.settings_files import to_toml  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def door_clip(folder: Path, fps: int, gap_s: float) -> Path:
    """The synthetic door clip (4 visitors, ``gap_s`` of empty door before each), made once per folder."""
    path = folder / f"door-{fps}fps-gap{gap_s:g}.mp4"
    if not path.exists():
        from training.door_clip import make_door_clip

        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.mp4")
        make_door_clip(partial, fps=fps, gap_s=gap_s)
        partial.rename(path)
    return path


def clip_visitors_per_minute(path: Path) -> float:
    """Visitors per minute of a looping clip made by :func:`door_clip`: 4 per pass."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames, fps = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return 4 / (frames / fps) * 60


class GateSite:
    """One installed gate: settings file, state folder, log; :meth:`start` runs `gate-cli run` on them."""

    def __init__(self, folder: Path, gate_id: str, clip: Path, fps: int, mqtt_settings: dict[str, Any], password: str,
                 extra: dict[str, dict[str, Any]] | None = None) -> None:
        self.folder = folder
        self.gate_id = gate_id
        self.state_dir = folder / "var"
        self.settings_file = folder / "settings.toml"
        self.log_file = folder / "gate.log"
        self.clip, self.fps = clip, fps
        self.mqtt = mqtt_settings
        self.password = password
        self.extra = extra or {}
        self.process: subprocess.Popen[bytes] | None = None

    def write_settings(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        sections: dict[str, dict[str, Any]] = {
            "gate": {"id": self.gate_id, "state_dir": str(self.state_dir)},
            "camera": {"source": str(self.clip), "kind": "file", "fps": self.fps, "loop": True, "realtime": True},
            "classifier": {"model": str(default_model_path())},
            "door": {"pin_factory": "mock", "unlock_s": 1.0, "deny_indication_s": 0.5},
            "mqtt": self.mqtt,
        }
        for name, values in self.extra.items():
            sections[name] = {**sections.get(name, {}), **values}
        self.settings_file.write_text(to_toml(sections))

    def start(self) -> None:
        self.write_settings()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MASKGATE__") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env["MASKGATE_MQTT_PASSWORD"] = self.password
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "gate.cli", "--settings", str(self.settings_file), "run", "--allow-mock-pins"],
                                            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def status(self) -> dict[str, Any] | None:
        from gate.health import read_status

        return read_status(self.state_dir)

    def outbox_counts(self) -> dict[str, int]:
        """Rows still pending and the outbox's counters, read without writing (the gate may be running)."""
        path = self.state_dir / "outbox.sqlite3"
        if not path.exists():
            return {"pending": 0, "last_seq": 0, "sent_total": 0, "dropped": 0}
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            return {"pending": db.execute("SELECT count(*) FROM events").fetchone()[0], **counters}
        finally:
            db.close()

    def file_bytes(self, *names: str) -> int:
        """Total size of state files (missing ones count 0)."""
        return sum((self.state_dir / name).stat().st_size for name in names if (self.state_dir / name).exists())


@dataclass(frozen=True)
class ProcessSample:
    rss_kb: int
    threads: int
    fds: int
    cpu_s: float
    write_bytes: int  # bytes this process caused to be sent to storage (/proc/<pid>/io)


def sample_process(pid: int) -> ProcessSample | None:
    """RSS, threads, open fds, CPU time and storage writes of a running process (None once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return ProcessSample(rss_kb=int(fields["VmRSS"].split()[0]), threads=int(fields["Threads"]), fds=fds,
                         cpu_s=(int(stat[11]) + int(stat[12])) / CLK_TCK, write_bytes=int(io["write_bytes"]))


@dataclass(frozen=True)
class Received:
    gate_id: str
    seq: int
    event_id: str
    latency_s: float  # arrival here minus the event's own time (same machine, same clock)


class Dashboard:
    """A building's event consumer: persistent session (clean_start=False, 1 h expiry), QoS 1, on
    ``maskgate/+/events``. Every arrival is kept (duplicates too) and appended to ``log_path`` so a
    resumed run still knows what arrived before."""

    def __init__(self, port: int, user: str, password: str, log_path: Path, client_id: str = "bench-dashboard") -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._port = port
        self._log_path = log_path
        if log_path.exists():
            self.received = [Received(**json.loads(line)) for line in log_path.read_text().splitlines() if line.endswith("}")]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("a", buffering=1)
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self._client.username_pw_set(user, password)
        self._client.reconnect_delay_set(0.2, 2)
        self._client.on_connect = lambda client, *_: client.subscribe("maskgate/+/events", qos=1)
        self._client.on_message = self._on_message

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        from datetime import datetime

        arrived = time.time()
        event = json.loads(message.payload)
        sent = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
        item = Received(event["gate_id"], event["seq"], event["event_id"], round(arrived - sent, 4))
        with self._lock:
            self.received.append(item)
            self._log.write(json.dumps(item.__dict__) + "\n")

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def __enter__(self) -> Dashboard:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self._client.connect("127.0.0.1", self._port, clean_start=False, properties=properties)
        self._client.loop_start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._log.close()


def delivery_report(received: list[Received], last_seq: int, gate_id: str) -> dict[str, Any]:
    """For one gate: every seq 1..last_seq should have arrived once at least, and each first copy in seq order."""
    mine = [r for r in received if r.gate_id == gate_id]
    first: dict[str, Received] = {}
    for r in mine:
        first.setdefault(r.event_id, r)
    seqs = [r.seq for r in first.values()]
    arrived = set(seqs)
    return {
        "published": last_seq,
        "received": len(arrived & set(range(1, last_seq + 1))),
        "lost": sorted(set(range(1, last_seq + 1)) - arrived)[:20],
        "lost_count": len(set(range(1, last_seq + 1)) - arrived),
        "duplicates": len(mine) - len(first),
        "out_of_order": sum(1 for a, b in zip(seqs, seqs[1:]) if b < a),
    }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
