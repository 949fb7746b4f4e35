"""Accelerated soak: one gate at 10x a realistic visitor rate, the broker flapping, sampled every minute.

    nice -n 15 .venv/bin/python benchmarks/soak.py --hours 2 [--out /tmp/maskgate-soak] [--resume]
    .venv/bin/python benchmarks/soak.py --plot-only --out /tmp/maskgate-soak

What runs: `gate-cli run` (the daemon systemd starts) on the synthetic door clip looping in real time
at 10 fps (4 visitors per 22 s pass: 10.8 a minute, about 10x a busy office door's one a minute),
mock pins, a real mosquitto with passwords and ACLs (tests/broker.py) and a dashboard subscriber
(persistent session, QoS 1). The broker is stopped for ``--down-s`` every ``--flap-every-s``.

Each minute: the gate's RSS, open fds, threads, CPU, bytes written to storage (/proc), outbox rows
pending and the outbox files' size (database + WAL), the journal's size (with its .1). At the end
the broker stays up until the outbox is empty, the gate is stopped with SIGTERM, and every seq the
outbox numbered (1..last_seq) is looked up among the dashboard's arrivals: lost, duplicates, order.

Growth: after a warm-up (``--warmup-min``) each series' least-squares slope per hour, and its last
sample against its first after warm-up. ``--resume`` keeps the out folder (state, arrivals,
samples) and appends, so a soak can be continued in several sittings. Writes
benchmarks/results/soak.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gate_site import REPO, Dashboard, GateSite, clip_visitors_per_minute, delivery_report, door_clip, percentile, sample_process  # noqa: E402

from tests.broker import EXTRA_ACL, USERS, Broker  # noqa: E402
from gate.mqtt import broker_acl  # noqa: E402
from gate.settings import MqttSettings  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
GATE_ID = "soak-door"
SERIES = {  # key: (label, unit)
    "rss_mb": ("RSS", "MB"),
    "fds": ("open fds", ""),
    "threads": ("threads", ""),
    "outbox_rows": ("outbox rows pending", ""),
    "outbox_mb": ("outbox files (db + WAL)", "MB"),
    "journal_mb": ("journal (+ .1)", "MB"),
}
log = logging.getLogger("soak")


def sample(site: GateSite, started: float, offset_min: float, broker_up: bool) -> dict[str, Any] | None:
    proc = sample_process(site.pid)
    if proc is None:
        return None
    counts = site.outbox_counts()
    return {
        "t_min": round(offset_min + (time.monotonic() - started) / 60, 2),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rss_mb": round(proc.rss_kb / 1024, 1), "fds": proc.fds, "threads": proc.threads,
        "cpu_s": round(proc.cpu_s, 1), "write_bytes": proc.write_bytes,
        "outbox_rows": counts["pending"], "last_seq": counts["last_seq"], "dropped": counts["dropped"],
        "outbox_mb": round(site.file_bytes("outbox.sqlite3", "outbox.sqlite3-wal") / 1e6, 3),
        "journal_mb": round(site.file_bytes("decisions.jsonl", "decisions.jsonl.1") / 1e6, 3),
        "broker_up": broker_up,
    }


def growth(samples: list[dict[str, Any]], warmup_min: float) -> dict[str, dict[str, float]]:
    """Per series after warm-up: least-squares slope per hour, first and last value."""
    after = [s for s in samples if s["t_min"] >= warmup_min]
    report = {}
    for key in SERIES:
        if len(after) < 3:
            break
        xs, ys = [s["t_min"] / 60 for s in after], [float(s[key]) for s in after]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
        report[key] = {"slope_per_h": round(slope, 3), "first": ys[0], "last": ys[-1], "max": max(ys)}
    return report


def plot(samples: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(SERIES), 1, figsize=(9, 11), sharex=True)
    t = [s["t_min"] / 60 for s in samples]
    for ax, (key, (label, unit)) in zip(axes, SERIES.items()):
        ax.plot(t, [s[key] for s in samples], lw=1.2)
        for a, b in zip(samples, samples[1:]):
            if not a["broker_up"]:
                ax.axvspan(a["t_min"] / 60, b["t_min"] / 60, color="tab:red", alpha=0.12, lw=0)
        ax.set_ylabel(f"{label}\n({unit})" if unit else label, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("hours (red: a sample taken while the broker was down)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_results(out: Path, args: argparse.Namespace, samples: list[dict[str, Any]], delivery: dict[str, Any] | None, meta: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    hours = samples[-1]["t_min"] / 60 if samples else 0.0
    report = {"date": datetime.now(timezone.utc).date().isoformat(), "hours": round(hours, 2), "warmup_min": args.warmup_min,
              **meta, "growth": growth(samples, args.warmup_min), "delivery": delivery, "samples": samples}
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(samples, RESULTS / "soak.png", f"maskgate soak {report['date']}: one gate, {meta.get('visitors_per_min', '?')} visitors/min, "
         f"broker down {args.down_s:g} s every {args.flap_every_s:g} s, {hours:.2f} h")
    lines = [f"# Soak ({report['date']}, {hours:.2f} h)", "",
             f"Command: `{meta.get('command', '')}`", "",
             "| series | after warm-up: first | last | max | slope per hour |", "|---|---|---|---|---|"]
    for key, g in report["growth"].items():
        label, unit = SERIES[key]
        lines.append(f"| {label} {unit} | {g['first']:g} | {g['last']:g} | {g['max']:g} | {g['slope_per_h']:+g} |")
    if delivery:
        lines += ["", f"Delivery: {delivery['published']} events numbered, {delivery['received']} received, "
                  f"{delivery['lost_count']} lost, {delivery['duplicates']} duplicates, {delivery['out_of_order']} out of order; "
                  f"outbox dropped {meta.get('dropped', 0)}; broker outages {meta.get('outages', 0)}."]
    (RESULTS / "soak.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=2.0, help="how long to run (this sitting)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/maskgate-soak"), help="work folder (state, arrivals, samples)")
    parser.add_argument("--resume", action="store_true", help="continue the soak in --out instead of starting afresh")
    parser.add_argument("--plot-only", action="store_true", help="only rewrite results from --out's samples")
    parser.add_argument("--sample-s", type=float, default=60.0)
    parser.add_argument("--flap-every-s", type=float, default=300.0)
    parser.add_argument("--down-s", type=float, default=30.0)
    parser.add_argument("--warmup-min", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    samples_file = args.out / "samples.jsonl"
    meta_file = args.out / "meta.json"
    if args.plot_only:
        samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        write_results(args.out, args, samples, meta.get("delivery"), meta)
        return 0
    if args.out.exists() and not args.resume:
        import shutil

        shutil.rmtree(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()] if samples_file.exists() else []
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {"outages": 0}
    offset = samples[-1]["t_min"] + args.sample_s / 60 if samples else 0.0

    clip = door_clip(args.out, fps=10, gap_s=1.5)
    meta["visitors_per_min"] = round(clip_visitors_per_minute(clip), 1)
    meta["command"] = "nice -n 15 .venv/bin/python benchmarks/soak.py " + " ".join(sys.argv[1:])
    meta_file.write_text(json.dumps(meta, indent=1))  # --plot-only during the run reads it
    acl = broker_acl(MqttSettings(username="gate"), GATE_ID, "gate") + EXTRA_ACL
    broker = Broker(args.out, acl=acl)
    broker.start()
    mqtt = broker.settings("gate").model_dump(mode="json", exclude_none=True)
    mqtt.update(reconnect_min_s=0.5, reconnect_max_s=5.0, health_interval_s=30.0)
    site = GateSite(args.out / "gate", GATE_ID, clip, 10, mqtt, USERS["gate"])
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    delivery = None
    with Dashboard(broker.port, "watcher", USERS["watcher"], args.out / "received.jsonl") as dashboard, samples_file.open("a", buffering=1) as out:
        site.start()
        started = time.monotonic()
        end = started + args.hours * 3600
        next_sample, next_flap, back_at = started + 5, started + args.flap_every_s, None
        try:
            while not stop["now"] and time.monotonic() < end:
                now = time.monotonic()
                if not site.running:
                    raise SystemExit(f"the gate exited ({site.process.returncode}); see {site.log_file}")
                if back_at is None and now >= next_flap:
                    log.info("broker down for %.0f s", args.down_s)
                    broker.stop()
                    meta["outages"] += 1
                    back_at = now + args.down_s
                elif back_at is not None and now >= back_at:
                    broker.start()
                    back_at, next_flap = None, now + args.flap_every_s
                if now >= next_sample:
                    row = sample(site, started, offset, back_at is None)
                    if row:
                        samples.append(row)
                        out.write(json.dumps(row) + "\n")
                        log.info("t=%.1f min rss %.1f MB fds %d threads %d outbox %d rows %.2f MB journal %.2f MB seq %d",
                                 row["t_min"], row["rss_mb"], row["fds"], row["threads"], row["outbox_rows"], row["outbox_mb"], row["journal_mb"], row["last_seq"])
                    next_sample += args.sample_s
                time.sleep(0.5)
            if back_at is not None:
                broker.start()
            deadline = time.monotonic() + 120
            while site.outbox_counts()["pending"] and time.monotonic() < deadline:
                time.sleep(1)
            time.sleep(2)  # the last PUBACKed events on their way to the dashboard
        finally:
            site.stop()
            broker.stop()
        counts = site.outbox_counts()
        delivery = delivery_report(dashboard.snapshot(), counts["last_seq"], GATE_ID)
        latencies = [r.latency_s for r in dashboard.snapshot()]
        delivery.update(latency_p50_s=percentile(latencies, 50), latency_p99_s=percentile(latencies, 99))
        meta.update(delivery=delivery, dropped=counts["dropped"])
    meta_file.write_text(json.dumps(meta, indent=1))
    write_results(args.out, args, samples, delivery, meta)
    log.info("delivery: %s", delivery)
    return 0 if delivery and delivery["lost_count"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
