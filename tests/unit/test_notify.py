"""sd_notify: the address forms, the watchdog settings, datagrams on a real socket."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestrator.notify import Notifier, socket_address, watchdog_interval


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket in the abstract namespace; yields (NOTIFY_SOCKET value, socket)."""
    name = f"leadflow-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    yield "@" + name, sock
    sock.close()


def test_addresses() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@leadflow/x") == b"\0leadflow/x"


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "4242"}, 0.5),
    ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "4243"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "x"}, None),
])
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env, 4242) == expected


def test_messages_arrive_as_datagrams_in_the_abstract_namespace(
    abstract_socket: tuple[str, socket.socket],
) -> None:
    address, sock = abstract_socket
    notifier = Notifier(address, watchdog_s=10.0)
    assert notifier.enabled
    assert notifier.ready("2 files in flight\nsecond line")
    assert notifier.watchdog()
    assert notifier.stopping()
    got = [sock.recv(4096).decode() for _ in range(3)]
    assert got == ["READY=1\nSTATUS=2 files in flight second line", "WATCHDOG=1",
                   "STOPPING=1\nSTATUS=stopping"]
    assert notifier.reloading()
    reloading = sock.recv(4096).decode().split("\n")
    assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")


def test_a_path_socket_and_from_env(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    try:
        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000",
               "WATCHDOG_PID": str(os.getpid())}
        notifier = Notifier.from_env(env)
        assert notifier.watchdog_s == 2.0
        assert notifier.status("ok")
        assert sock.recv(100) == b"STATUS=ok"
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_env({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled and notifier.watchdog_s is None
    assert not notifier.ready("x") and not notifier.watchdog() and not notifier.stopping()
    assert list(notifier.sent) == []


def test_a_missing_socket_is_logged_once_and_never_raises(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))
    with capture_logs() as logs:
        assert not notifier.ready("x")
        assert not notifier.watchdog()
    assert [e["event"] for e in logs] == ["notify_failed"]
    assert logs[0]["log_level"] == "warning"
