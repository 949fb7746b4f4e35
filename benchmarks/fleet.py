"""A fleet on one broker: 20 gates, each its own `gate-cli run` process, one mosquitto, one dashboard.

    nice -n 15 .venv/bin/python benchmarks/fleet.py [--gates 20] [--minutes 5] [--out /var/tmp/maskgate-fleet]

Loopback only, bounded in time (two phases of ``--minutes`` plus start-up and drain). Each gate is the
daemon systemd starts, on the synthetic door clip at a low frame rate (5 fps keeps 20 gates on two
cores) with gpiozero's mock pins. The broker (tests/broker.py's mosquitto) has a password and an ACL
per gate (:func:`gate.mqtt.broker_acl`: a gate may write only its own topics) and a read-only
dashboard user; the dashboard subscribes to ``maskgate/+/events`` with a persistent session at QoS 1.

Two phases: visitors at a realistic rate (one a minute per door: 56 s of empty door between
visitors) and at 10x that (1.5 s between them: 10.8 a minute per door, at 5 fps ~13). In each phase
the broker is restarted twice (at 1/4 and 3/4 of it, down 5 s) and one gate is SIGKILLed at 1/2 and
started again 5 s later (as systemd would). At the end the broker stays up until every outbox is
empty, the gates stop (SIGTERM), and each gate's seqs 1..last_seq are looked up among the
dashboard's arrivals: lost, duplicates, order (first copies in seq order), end-to-end latency
(arrival minus the event's time, same clock) p50/p99; broker and gate CPU (share of one core over
the phase) and RSS. Writes benchmarks/results/fleet.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gate_site import REPO, Dashboard, GateSite, clip_visitors_per_minute, delivery_report, door_clip, percentile, sample_process  # noqa: E402

from tests.broker import Broker  # noqa: E402
from gate.mqtt import broker_acl  # noqa: E402
from gate.settings import MqttSettings  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
FPS = 5
RATES = {"realistic": 56.0, "10x": 1.5}  # gap_s of empty door before each visitor
DOWN_S = 5.0
log = logging.getLogger("fleet")


class Usage:
    """CPU seconds and peak RSS of a set of processes, followed across restarts (pid by pid)."""

    def __init__(self) -> None:
        self.cpu: dict[int, float] = {}
        self.rss_kb: dict[int, int] = {}

    def sample(self, pid: int) -> None:
        s = sample_process(pid)
        if s is not None:
            self.cpu[pid] = s.cpu_s
            self.rss_kb[pid] = max(self.rss_kb.get(pid, 0), s.rss_kb)


def run_phase(name: str, gap_s: float, args: argparse.Namespace, broker: Broker, users: dict[str, str]) -> dict[str, Any]:
    clip = door_clip(args.out, fps=FPS, gap_s=gap_s)
    sites = []
    for i in range(1, args.gates + 1):
        gate_id, user = f"door-{i:02d}", f"gate{i:02d}"
        mqtt = broker.settings(user).model_dump(mode="json", exclude_none=True)
        mqtt.update(reconnect_min_s=0.5, reconnect_max_s=5.0, health_interval_s=30.0)
        sites.append(GateSite(args.out / name / gate_id, gate_id, clip, FPS, mqtt, users[user]))
    gate_usage, broker_usage = Usage(), Usage()
    with Dashboard(broker.port, "dashboard", users["dashboard"], args.out / name / "received.jsonl", client_id=f"dashboard-{name}") as dashboard:
        for site in sites:
            site.start()
        deadline = time.monotonic() + 300
        while not all((site.status() or {}).get("state") == "running" for site in sites):  # models loaded, frames flowing
            if time.monotonic() > deadline or not all(site.running for site in sites):
                raise SystemExit(f"{name}: not every gate started; see {args.out / name}/*/gate.log")
            time.sleep(1)
        log.info("%s: %d gates running, %.1f visitors/min each", name, len(sites), clip_visitors_per_minute(clip))
        seconds = args.minutes * 60
        started = time.monotonic()
        cpu_start = {site.pid: sample_process(site.pid).cpu_s for site in sites}
        broker_cpu_start = sample_process(broker._process.pid).cpu_s
        plan = [(0.25, "broker"), (0.5, "kill"), (0.75, "broker")]
        victim = sites[len(sites) // 3]
        restart_victim_at = None
        while time.monotonic() - started < seconds:
            elapsed = (time.monotonic() - started) / seconds
            if plan and elapsed >= plan[0][0]:
                _, what = plan.pop(0)
                if what == "broker":
                    broker_usage.sample(broker._process.pid)
                    log.info("%s: broker restart (down %.0f s)", name, DOWN_S)
                    broker.stop()
                    time.sleep(DOWN_S)
                    broker.start()
                else:
                    gate_usage.sample(victim.pid)
                    log.info("%s: SIGKILL %s (pid %d)", name, victim.gate_id, victim.pid)
                    victim.stop(signal.SIGKILL)
                    restart_victim_at = time.monotonic() + DOWN_S
            if restart_victim_at is not None and time.monotonic() >= restart_victim_at:
                victim.start()
                cpu_start[victim.pid] = 0.0
                restart_victim_at = None
            for site in sites:
                if site.running:
                    gate_usage.sample(site.pid)
            broker_usage.sample(broker._process.pid)
            time.sleep(2)
        wall = time.monotonic() - started
        deadline = time.monotonic() + 120
        while any(site.outbox_counts()["pending"] for site in sites) and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(3)  # the last acknowledged events on their way to the dashboard
        for site in sites:
            site.stop()
        received = dashboard.snapshot()
    per_gate = {site.gate_id: delivery_report(received, site.outbox_counts()["last_seq"], site.gate_id) for site in sites}
    latencies = sorted(r.latency_s for r in received)
    total_gate_cpu = sum(cpu - cpu_start.get(pid, 0.0) for pid, cpu in gate_usage.cpu.items())
    broker_cpu = sum(broker_usage.cpu.values()) - broker_cpu_start
    totals = {k: sum(r[k] for r in per_gate.values()) for k in ("published", "received", "lost_count", "duplicates", "out_of_order")}
    return {
        "gates": len(sites), "visitors_per_min_per_gate": round(clip_visitors_per_minute(clip), 1), "seconds": round(wall),
        **totals, "latency_p50_s": percentile(latencies, 50), "latency_p99_s": percentile(latencies, 99),
        "killed": victim.gate_id, "broker_restarts": 2,
        "gates_cpu_share_of_one_core": round(total_gate_cpu / wall, 3),
        "gate_rss_mb_max": round(max(gate_usage.rss_kb.values()) / 1024, 1),
        "gate_rss_mb_mean": round(sum(gate_usage.rss_kb.values()) / len(gate_usage.rss_kb) / 1024, 1),
        "broker_cpu_share_of_one_core": round(broker_cpu / wall, 4), "broker_rss_mb_max": round(max(broker_usage.rss_kb.values()) / 1024, 1),
        "broker_cpu_ms_per_event": round(broker_cpu * 1000 / max(1, totals["published"]), 3),
        "per_gate": per_gate,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gates", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=5.0, help="length of each phase (realistic, 10x)")
    parser.add_argument("--out", type=Path, default=Path("/var/tmp/maskgate-fleet"))
    parser.add_argument("--phases", nargs="+", default=list(RATES), choices=list(RATES))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    users = {f"gate{i:02d}": f"gate-{i:02d}-secret" for i in range(1, args.gates + 1)} | {"dashboard": "dashboard-secret"}
    acl = "".join(broker_acl(MqttSettings(username=user), f"door-{user[4:]}", user) + "\n" for user in users if user != "dashboard")
    acl += "user dashboard\ntopic read maskgate/#\n"
    results: dict[str, Any] = {}
    with Broker(args.out, users=users, acl=acl) as broker:
        for name in args.phases:
            results[name] = run_phase(name, RATES[name], args, broker, users)
            log.info("%s: %s", name, {k: v for k, v in results[name].items() if k != "per_gate"})
    date = datetime.now(timezone.utc).date().isoformat()
    command = "nice -n 15 .venv/bin/python benchmarks/fleet.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet.json").write_text(json.dumps({"date": date, "command": command, "fps": FPS, **results}, indent=1) + "\n")
    lines = [f"# Fleet on one broker ({date})", "", f"Command: `{command}`", "",
             "| phase | gates | visitors/min/gate | events | received | lost | duplicates | out of order | latency p50 / p99 | gates CPU (cores) | gate RSS mean / max | broker CPU (cores) | broker RSS | broker CPU per event |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['gates']} | {r['visitors_per_min_per_gate']} | {r['published']} | {r['received']} | {r['lost_count']} | {r['duplicates']} | "
                     f"{r['out_of_order']} | {r['latency_p50_s'] * 1000:.0f} ms / {r['latency_p99_s']:.1f} s | {r['gates_cpu_share_of_one_core']} | "
                     f"{r['gate_rss_mb_mean']} / {r['gate_rss_mb_max']} MB | {r['broker_cpu_share_of_one_core']} | {r['broker_rss_mb_max']} MB | {r['broker_cpu_ms_per_event']} ms |")
    lines += ["", "Each phase: broker restarted twice (down 5 s), one gate SIGKILLed and started again 5 s later."]
    (RESULTS / "fleet.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["lost_count"] == 0 and r["out_of_order"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
