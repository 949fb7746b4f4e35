"""A real mosquitto broker for tests: password file, ACL, TLS and mutual-TLS listeners on free
loopback ports, certificates made by ``openssl`` in a temporary folder.

Usage (also by end-to-end daemon tests)::

    with Broker(tmp_path) as broker:           # started
        link = MqttLink(broker.settings("gate"), "front-door", outbox, password=broker.users["gate"])
        with Subscriber(broker, "maskgate/#") as sub:
            ...
            sub.wait_for(lambda msgs: len(msgs) >= 3)
        broker.restart()                       # same ports; retained messages and sessions persist

``broker.settings(user, tls=False|True|"mutual")`` gives MqttSettings pointing at it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gate.mqtt import broker_acl
from gate.settings import MqttSettings

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
HAVE_MOSQUITTO = all(os.access(p, os.X_OK) for p in (MOSQUITTO, MOSQUITTO_PASSWD)) and shutil.which("openssl") is not None

GATE_ID = "front-door"
USERS = {"gate": "gate-secret", "watcher": "watcher-secret", "operator": "operator-secret"}
#: What a gate needs (see gate.mqtt.broker_acl) plus a read-everything watcher and an operator
#: allowed to send commands. The gate's own lines come from the code so the documented ACL is tested.
EXTRA_ACL = """
user watcher
topic read #

user operator
topic write maskgate/+/command
topic write homeassistant/status
"""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports: all sockets stay bound until every port is chosen,
    so the kernel cannot hand the same port out twice."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(folder: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN=maskgate test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)


def _make_leaf(folder: Path, name: str, ca: str, extensions: str) -> None:
    (folder / f"{name}.ext").write_text(extensions + "\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=folder)


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    wrong_ca_file: Path  # a CA that did not sign the broker's certificate
    server_cert: Path
    server_key: Path
    client_cert: Path  # CN=gate, for the mutual-TLS listener
    client_key: Path

    @classmethod
    def create(cls, folder: Path) -> Certificates:
        folder.mkdir(parents=True, exist_ok=True)
        _make_ca(folder, "ca")
        _make_ca(folder, "wrong-ca")
        _make_leaf(folder, "server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth")
        _make_leaf(folder, "gate", "ca", "extendedKeyUsage=clientAuth")
        return cls(folder / "ca.crt", folder / "wrong-ca.crt", folder / "server.crt", folder / "server.key",
                   folder / "gate.crt", folder / "gate.key")


class Broker:
    """One mosquitto process; ``restart()`` keeps the ports so clients can reconnect."""

    def __init__(self, workdir: Path, users: dict[str, str] | None = None, acl: str | None = None) -> None:
        self.workdir = Path(workdir) / "broker"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.users = dict(USERS if users is None else users)
        self.port, self.tls_port, self.mtls_port = free_ports(3)
        self.certs = Certificates.create(self.workdir / "certs")
        self.ca_file = self.certs.ca_file
        default_acl = broker_acl(MqttSettings(remote_unlock=True, username="gate", tls={"enabled": True}, homeassistant={"enabled": True}), GATE_ID, "gate") + EXTRA_ACL
        self._acl = default_acl if acl is None else acl
        self._write_config(self._acl)
        self._started_once = False
        self._process: subprocess.Popen[bytes] | None = None
        self.log_file = self.workdir / "mosquitto.log"

    def _write_config(self, acl: str) -> None:
        passwords = self.workdir / "passwords"
        passwords.unlink(missing_ok=True)
        for i, (user, password) in enumerate(self.users.items()):
            subprocess.run([MOSQUITTO_PASSWD, "-b", *(["-c"] if i == 0 else []), str(passwords), user, password], check=True, capture_output=True)
        (self.workdir / "acl").write_text(acl)
        c = self.certs
        tls = f"cafile {c.ca_file}\ncertfile {c.server_cert}\nkeyfile {c.server_key}\n"
        config = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwords}",
            f"acl_file {self.workdir / 'acl'}",
            "persistence true",  # like a real broker: retained messages and sessions survive restart()
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "log_type all",
            *(["user root"] if os.geteuid() == 0 else []),
            f"listener {self.port} 127.0.0.1",
            f"listener {self.tls_port} 127.0.0.1",
            tls,
            f"listener {self.mtls_port} 127.0.0.1",
            tls + "require_certificate true\nuse_identity_as_username true",
        ]
        self.config_file = self.workdir / "mosquitto.conf"
        self.config_file.write_text("\n".join(config) + "\n")

    def start(self) -> None:
        """Start mosquitto; a first start that loses a port race (another process took a chosen
        port between choosing and binding) retries on fresh ports. Restarts keep their ports."""
        for attempt in range(3):
            try:
                self._start_once()
                self._started_once = True
                return
            except RuntimeError as error:
                if self._started_once or "Address already in use" not in str(error) or attempt == 2:
                    raise
                self.port, self.tls_port, self.mtls_port = free_ports(3)
                self._write_config(self._acl)

    def _start_once(self) -> None:
        assert self._process is None, "already running"
        log = self.log_file.open("ab")
        self._process = subprocess.Popen([MOSQUITTO, "-c", str(self.config_file)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        for port in (self.port, self.tls_port, self.mtls_port):
            while True:
                if self._process.poll() is not None:
                    self._process = None
                    raise RuntimeError(f"mosquitto exited with {self._process.returncode}:\n{self.log_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"mosquitto did not listen on {port}:\n{self.log_text()}") from None
                    time.sleep(0.05)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def settings(self, user: str | None = "gate", tls: bool | str = False, **overrides: Any) -> MqttSettings:
        """MqttSettings for this broker; tls=True (server-auth TLS) or "mutual" (client certificate)."""
        data: dict[str, Any] = {"enabled": True, "host": "127.0.0.1", "port": self.port, "username": user,
                                "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "keepalive_s": 5}
        if tls:
            data["port"] = self.mtls_port if tls == "mutual" else self.tls_port
            data["tls"] = {"enabled": True, "ca_file": self.ca_file}
            if tls == "mutual":
                data["tls"].update(cert_file=self.certs.client_cert, key_file=self.certs.client_key)
        return MqttSettings(**{**data, **overrides})

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Subscriber:
    """A plain paho client collecting every message on ``topics`` (as the 'watcher' user).

    Its session is persistent (clean_start=False, 1 h expiry), so QoS 1 messages queued for it
    while it reconnects after ``broker.restart()`` are still delivered.
    """

    def __init__(self, broker: Broker, *topics: str, user: str = "watcher") -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._changed = threading.Condition()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{user}-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        self._client.username_pw_set(user, broker.users[user])
        self._client.reconnect_delay_set(0.1, 0.5)
        self._subscribed = threading.Event()
        self._topics = topics or ("#",)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message
        self._broker = broker

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(topic, 1) for topic in self._topics])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self._changed:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, condition: Callable[[list[mqtt.MQTTMessage]], bool], timeout: float = 15.0) -> list[mqtt.MQTTMessage]:
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self.messages), timeout):
                raise AssertionError(f"timed out; got {[(m.topic, m.payload[:80]) for m in self.messages]}")
            return list(self.messages)

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def __enter__(self) -> Subscriber:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self._client.connect("127.0.0.1", self._broker.port, clean_start=False, properties=properties)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("test subscriber could not subscribe")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()
