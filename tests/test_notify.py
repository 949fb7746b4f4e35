"""sd_notify against a real datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gate.notify import Notifier


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2)
        yield sock, path


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_messages_arrive(systemd_socket: tuple[socket.socket, str]) -> None:
    sock, path = systemd_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    notifier.ready()
    notifier.status("classifying\nat 15 fps")
    notifier.watchdog()
    notifier.stopping()
    assert [received(sock) for _ in range(4)] == ["READY=1", "STATUS=classifying at 15 fps", "WATCHDOG=1", "STOPPING=1"]


def test_abstract_namespace_socket() -> None:
    name = f"maskgate-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2)
        Notifier.from_env({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == "READY=1"


def test_no_socket_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    notifier.ready()
    assert notifier.watchdog_interval() is None


def test_watchdog_interval_is_half_the_timeout() -> None:
    assert Notifier.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000"}).watchdog_interval() == 15.0
    other_pid = str(os.getpid() + 1)
    assert Notifier.from_env({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": other_pid}).watchdog_interval() is None


def test_vanished_socket_does_not_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    notifier.watchdog()
    notifier.watchdog()
    assert caplog.text.count("sd_notify") == 1


@pytest.mark.timeout(30)
def test_a_socket_nobody_reads_never_blocks_the_gate(systemd_socket: tuple[socket.socket, str]) -> None:
    """The queue of an unread datagram socket fills up; later messages are dropped, not waited on."""
    _, address = systemd_socket
    notifier = Notifier(address)
    for _ in range(2000):
        notifier.watchdog()
