"""sd_notify on real AF_UNIX datagram sockets: path and abstract addresses, watchdog settings, no-op outside systemd."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from avila_edge.systemd import Notifier


def receive(sock: socket.socket) -> list[str]:
    messages = []
    sock.setblocking(False)
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"avila-edge-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    yield "@" + name, sock
    sock.close()


def test_an_abstract_notify_socket_receives_ready_status_watchdog_and_stopping(
    abstract_socket: tuple[str, socket.socket],
) -> None:
    address, sock = abstract_socket
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    notifier.ready("3 points, 1/1 devices connected, seq 0")
    notifier.status("3 points, 1/1 devices connected, seq 42")
    notifier.watchdog()
    notifier.stopping()
    assert receive(sock) == [
        "READY=1\nSTATUS=3 points, 1/1 devices connected, seq 0",
        "STATUS=3 points, 1/1 devices connected, seq 42",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping",
    ]


def test_a_filesystem_notify_socket_receives_the_same(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        Notifier({"NOTIFY_SOCKET": str(path)}).ready("up")
        assert receive(sock) == ["READY=1\nSTATUS=up"]


def test_without_notify_socket_nothing_is_sent_and_no_watchdog_is_expected() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    notifier.ready("up")  # no socket, no error
    notifier.watchdog()
    assert Notifier({}).watchdog_interval is None


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # meant for another process
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_is_pinged_at_half_watchdog_usec_and_only_for_this_process(
    environ: dict[str, str], interval: float | None, tmp_path: Path
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), **environ})
    assert notifier.watchdog_interval == interval


def test_an_unreachable_notify_socket_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "gone"
    Notifier({"NOTIFY_SOCKET": str(missing)}).ready("up")
    assert f"sd_notify to '{missing}' failed" in caplog.text
