"""The gate against a real Home Assistant Core, as a building would run them (issue 20).

Run by ``scripts/ha_check.sh`` (which installs Home Assistant into its own venv first):

    python scripts/ha_check.py --hass build/ha/venv-2025.4.4/bin/hass --clip build/demo/door-clip.mp4

It starts mosquitto (tests/broker.py: password file and ACL) and Home Assistant on loopback,
onboards Home Assistant and sets up MQTT through its onboarding and config-flow REST APIs, then
runs ``gate-cli run`` (mock GPIO, the clip as the camera, Home Assistant discovery on) and checks
through Home Assistant's REST API, as a dashboard would see it:

1. the gate's entities exist;
2. a model fault (a broken model file) turns the problem entity on, with the reason; the fixed
   model turns it off again;
3. the door entity follows every relay change (from the gate's own log) within 1 s;
4. SIGTERM and SIGKILL make the entities unavailable; after a SIGKILL mid-grant the restarted
   gate never shows the dead run's "unlocked"; the counters do not go back;
5. no warning or error about maskgate (or an MQTT template) in Home Assistant's log.

Exit 0 when every check passed; the last line is ``ha-check: N passed, M failed``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gate.models import default_model_path  # noqa: E402
from gate.mqtt import broker_acl  # noqa: E402
from gate.settings import MqttSettings  # noqa: E402
from tests.broker import GATE_ID, Broker, free_ports  # noqa: E402

HA_USER, HA_PASSWORD = "homeassistant", "ha-secret"
ENTITY = "maskgate_" + GATE_ID.replace("-", "_")
ENTITIES = {
    "door": f"binary_sensor.{ENTITY}_door",
    "problem": f"binary_sensor.{ENTITY}_problem",
    "health": f"sensor.{ENTITY}_health",
    "grants": f"sensor.{ENTITY}_grants",
    "denies": f"sensor.{ENTITY}_denies",
    "last_decision": f"sensor.{ENTITY}_last_decision",
}
UNLOCK_S = 1.5
FOLLOW_LIMIT_S = 1.0


class Checks:
    """Named pass/fail lines, printed as they are decided."""

    def __init__(self) -> None:
        self.passed = self.failed = 0

    def __call__(self, ok: bool, what: str) -> bool:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}", flush=True)
        self.passed += ok
        self.failed += not ok
        return ok


def wait_for(condition: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """The first truthy value of ``condition()`` within ``timeout`` s, else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def utc(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class HomeAssistant:
    """One ``hass`` process on loopback with a fresh configuration folder, and its REST API."""

    def __init__(self, hass: Path, folder: Path) -> None:
        self.folder = folder
        self.port = free_ports(1)[0]
        self.base = f"http://127.0.0.1:{self.port}"
        self.token: str | None = None
        folder.mkdir(parents=True)
        (folder / "configuration.yaml").write_text(
            "homeassistant:\n  name: maskgate check\n  time_zone: UTC\n  unit_system: metric\n  country: DE\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.port}\n"
            "logger:\n  default: info\n"
        )
        self.log_file = folder / "home-assistant.log"
        with (folder / "stdout.log").open("wb") as out:
            self.process = subprocess.Popen([str(hass), "-c", str(folder), "--log-file", str(self.log_file)],
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def call(self, method: str, path: str, body: dict | None = None, *, form: bool = False) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body).encode() if form else json.dumps(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded" if form else "application/json"
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def wait_until_up(self, timeout: float) -> bool:
        def up() -> bool:
            if self.process.poll() is not None:
                raise SystemExit(f"Home Assistant exited with {self.process.returncode}: see {self.folder / 'stdout.log'}")
            try:
                return bool(self.call("GET", "/api/onboarding"))
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False
        return bool(wait_for(up, timeout, every=0.5))

    def onboard(self) -> None:
        """The owner account and the other onboarding steps, as the first-run web page does them."""
        client_id = self.base + "/"
        code = self.call("POST", "/api/onboarding/users", {"client_id": client_id, "name": "Check", "username": "check",
                                                             "password": "check-password-1", "language": "en"})["auth_code"]
        self.token = self.call("POST", "/auth/token", {"grant_type": "authorization_code", "code": code, "client_id": client_id}, form=True)["access_token"]
        self.call("POST", "/api/onboarding/core_config", {})
        self.call("POST", "/api/onboarding/analytics", {})
        self.call("POST", "/api/onboarding/integration", {"client_id": client_id, "redirect_uri": client_id + "?auth_callback=1"})

    def add_mqtt(self, port: int) -> dict:
        """MQTT through its config flow (the "Add integration" dialog): broker, port, user, password."""
        flow = self.call("POST", "/api/config/config_entries/flow", {"handler": "mqtt", "show_advanced_options": False})
        if flow.get("step_id") != "broker":
            return flow
        return self.call("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                         {"broker": "127.0.0.1", "port": port, "username": HA_USER, "password": HA_PASSWORD})

    def state(self, entity_id: str) -> dict | None:
        try:
            return self.call("GET", f"/api/states/{entity_id}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def value(self, name: str) -> str | None:
        state = self.state(ENTITIES[name])
        return None if state is None else state["state"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Gate:
    """``gate-cli --settings FILE run --allow-mock-pins`` from this checkout, JSON log to a file."""

    def __init__(self, folder: Path, settings_file: Path, password: str, runs: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MASKGATE__") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env.update(MASKGATE_MQTT_PASSWORD=password, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
        self.log_file = folder / f"gate-{runs}.log"
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "gate.cli", "--settings", str(settings_file), "run", "--allow-mock-pins"],
                                            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def records(self) -> list[dict]:
        lines = self.log_file.read_text(errors="replace").splitlines(keepends=True)
        return [json.loads(line) for line in lines if line.startswith("{") and line.endswith("\n")]

    def relay_changes(self) -> list[tuple[str, float]]:
        """(on|off, time) for each relay move, from the door's own log lines (written just after the move)."""
        changes: list[tuple[str, float]] = []
        energised = False
        for record in self.records():
            message = record.get("message", "")
            if record.get("logger") != "gate.actuators":
                continue
            if message.startswith("door unlocked for") and not energised:
                energised = True
                changes.append(("on", utc(record["time"])))
            elif message in ("door locked again", "deny: door locked again before the end of its grant") and energised:
                energised = False
                changes.append(("off", utc(record["time"])))
        return changes

    def stop(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)
        self.process.wait(30)


def settings_text(state_dir: Path, clip: Path, model: Path, port: int) -> str:
    return (
        f'[gate]\nid = "{GATE_ID}"\nstate_dir = "{state_dir}"\nlog_format = "json"\n'
        f'[camera]\nsource = "{clip}"\nkind = "file"\nfps = 10\nloop = true\nrealtime = true\n'
        f'[classifier]\nmodel = "{model}"\n'
        '[policy]\nevidence_frames = 3\n'
        f'[door]\npin_factory = "mock"\nunlock_s = {UNLOCK_S}\n'
        f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\nusername = "gate"\nreconnect_min_s = 0.2\nreconnect_max_s = 2.0\n'
        '[mqtt.homeassistant]\nenabled = true\n'
    )


def door_follows_the_relay(ha: HomeAssistant, gate: Gate, check: Checks, seconds: float) -> None:
    """Poll the door entity (every 50 ms) while the clip plays; match each relay move in the gate's
    log with the door entity's change to the same state, by Home Assistant's own ``last_changed``."""
    seen: list[tuple[str, float]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = ha.state(ENTITIES["door"])
        if state is not None and (not seen or seen[-1][0] != state["state"]):
            seen.append((state["state"], utc(state["last_changed"])))
        if len([c for c in gate.relay_changes() if c[0] == "off"]) >= 3:  # three grants with their relocks
            time.sleep(1.0)
            state = ha.state(ENTITIES["door"])
            if state is not None and seen[-1][0] != state["state"]:
                seen.append((state["state"], utc(state["last_changed"])))
            break
        time.sleep(0.05)
    relay = gate.relay_changes()
    print(f"  relay moves in the gate's log: {len(relay)}; door entity changes seen in Home Assistant: {len(seen)}")
    delays: list[float] = []
    missed = 0
    ha_changes = [(s, t) for s, t in seen if s in ("on", "off")]
    for value, at in relay:
        match = next(((s, t) for s, t in ha_changes if s == value and t >= at - 0.05), None)
        if match is None:
            missed += 1
            continue
        delays.append(match[1] - at)
        ha_changes = ha_changes[ha_changes.index(match) + 1:]
    check(len(relay) >= 6, f"the clip moved the relay {len(relay)} times (at least 3 grants and 3 relocks wanted)")
    check(missed == 0, f"every relay move reached the door entity ({missed} missed)")
    if delays:
        check(max(delays) < FOLLOW_LIMIT_S, f"the door entity followed each relay move within {FOLLOW_LIMIT_S:g} s: "
                                            f"delays {', '.join(f'{d * 1000:.0f}' for d in delays)} ms (max {max(delays) * 1000:.0f} ms)")


def unavailable_after(ha: HomeAssistant, gate: Gate, sig: signal.Signals) -> float | None:
    started = time.monotonic()
    gate.stop(sig)
    if wait_for(lambda: all(ha.value(name) == "unavailable" for name in ENTITIES), 10, every=0.02):
        return time.monotonic() - started
    return None


def home_assistant_complaints(log_file: Path) -> tuple[list[str], list[str]]:
    """(lines about maskgate or an MQTT template, other WARNING/ERROR lines) from Home Assistant's log."""
    ours, others = [], []
    for line in log_file.read_text(errors="replace").splitlines():
        if " WARNING " not in line and " ERROR " not in line:
            continue
        lowered = line.lower()
        (ours if any(word in lowered for word in ("maskgate", "value_json", "template", "components.mqtt")) else others).append(line)
    return ours, others


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hass", type=Path, required=True, help="the hass executable of the Home Assistant venv")
    parser.add_argument("--clip", type=Path, required=True, help="the door clip (maskgate-train door-clip)")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "ha" / "run", help="folder for this run (emptied first)")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    check = Checks()
    began = time.monotonic()
    version = subprocess.run([str(args.hass), "--version"], capture_output=True, text=True).stdout.strip()
    print(f"Home Assistant Core {version}, maskgate from {REPO}, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", flush=True)

    users = {"gate": "gate-secret", HA_USER: HA_PASSWORD}
    acl = broker_acl(MqttSettings(homeassistant={"enabled": True}), GATE_ID, "gate") + f"\nuser {HA_USER}\ntopic read #\ntopic write homeassistant/#\n"
    broken = args.work / "model" / "model.tflite"
    broken.parent.mkdir()
    broken.write_text("this is not a model")
    with Broker(args.work, users=users, acl=acl) as broker:
        ha = HomeAssistant(args.hass, args.work / "ha-config")
        gate: Gate | None = None
        try:
            started = time.monotonic()
            check(ha.wait_until_up(300), f"Home Assistant answers on 127.0.0.1:{ha.port} ({time.monotonic() - started:.0f} s after start)")
            ha.onboard()
            entry = ha.add_mqtt(broker.port)
            if not check(entry.get("type") == "create_entry", f"MQTT set up through the config flow: {entry.get('type')} {entry.get('title', entry.get('errors'))}"):
                return 1
            settings_file = args.work / "settings.toml"
            settings_file.write_text(settings_text(args.work / "var", args.clip.resolve(), broken, broker.port))
            runs = 1
            gate = Gate(args.work, settings_file, users["gate"], runs)

            print("1. entities, and a model fault (a broken model file)")
            found = wait_for(lambda: all(ha.state(e) is not None for e in ENTITIES.values()), 60)
            check(bool(found), "entities exist: " + ", ".join(ENTITIES.values()))
            problem = wait_for(lambda: ha.state(ENTITIES["problem"]) if ha.value("problem") == "on" else None, 30)
            reason = (problem or {}).get("attributes", {}).get("reason") or ""
            check(problem is not None and "not a TFLite model" in reason, f"problem entity on, reason attribute: {reason[-70:]!r}")
            check(ha.value("health") == "fault" and ha.value("door") == "off", f"health {ha.value('health')!r}, door {ha.value('door')!r} (locked)")
            shutil.copy(default_model_path().with_suffix(".json"), broken.with_suffix(".json"))
            shutil.copy(default_model_path(), broken)  # the gate retries the model with backoff
            check(bool(wait_for(lambda: ha.value("problem") == "off", 60)), "the fixed model turns the problem entity off")
            check(bool(wait_for(lambda: ha.value("health") == "ok", 30)), f"health {ha.value('health')!r}")

            print("2. the door entity follows the relay")
            door_follows_the_relay(ha, gate, check, seconds=120)
            grants = ha.value("grants")
            last = ha.state(ENTITIES["last_decision"]) or {}
            check(grants is not None and grants.isdigit() and int(grants) >= 3,
                  f"grants {grants}, denies {ha.value('denies')}, last decision {last.get('state')} ({last.get('attributes', {}).get('reason')})")

            print("3. availability, a crash mid-grant, counters")
            took = unavailable_after(ha, gate, signal.SIGTERM)
            check(took is not None, f"SIGTERM: every entity unavailable after {took or float('nan'):.2f} s")
            before = int(grants or 0)
            runs += 1
            gate = Gate(args.work, settings_file, users["gate"], runs)
            check(bool(wait_for(lambda: ha.value("door") == "on", 90, every=0.02)), "restarted, and a grant unlocks the door")
            took = unavailable_after(ha, gate, signal.SIGKILL)
            check(took is not None, f"SIGKILL mid-grant: every entity unavailable after {took or float('nan'):.2f} s (the last will)")
            runs += 1
            gate = Gate(args.work, settings_file, users["gate"], runs)
            first = wait_for(lambda: (v if (v := ha.value("door")) != "unavailable" else None), 60, every=0.01)
            check(first == "off", f"after the crash the door entity comes back {first!r} (off = locked), never the dead run's 'on'")
            wait_for(lambda: ha.value("health") == "ok", 60)  # the new run's own state, not a retained one
            grants = ha.value("grants")
            check(grants is not None and grants.isdigit() and int(grants) >= before,
                  f"grants after two restarts: {grants} (before them: {before}; kept in the state folder)")
            took = unavailable_after(ha, gate, signal.SIGTERM)
            check(took is not None, "SIGTERM: unavailable again")
            gate = None
        finally:
            if gate is not None and gate.process.poll() is None:
                gate.process.kill()
                gate.process.wait()
            ha.stop()
        print("4. Home Assistant's log")
        ours, others = home_assistant_complaints(ha.log_file)
        check(not ours, f"no warning or error about maskgate or an MQTT template ({len(ours)})")
        for line in ours[:20]:
            print("      " + line[:300])
        print(f"  (other warnings/errors in Home Assistant's log, not about maskgate: {len(others)})")
        for line in others[:10]:
            print("      " + line[:200])
    print(f"ha-check: {check.passed} passed, {check.failed} failed ({time.monotonic() - began:.0f} s)")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
