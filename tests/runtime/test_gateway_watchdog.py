"""The systemd watchdog is fed only while the journal commits: a stuck writer withholds the pings."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import msgspec
import pytest

from avila_edge.core import SystemClock
from avila_edge.journal import Entry
from avila_edge.runtime import gateway as gateway_module
from avila_edge.runtime.gateway import Gateway
from avila_edge.systemd import Notifier

from .counting_driver import counting_plugins, counting_site


class NotifySocket:
    """The receiving end of ``$NOTIFY_SOCKET``, read continuously by a thread as systemd does (a full
    datagram queue would block the sender)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self._lock = threading.Lock()
        self._messages: list[str] = []
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name="notify-socket-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            with self._lock:
                self._messages.append(message)

    def drain(self) -> list[str]:
        """Messages received since the last drain."""
        with self._lock:
            messages, self._messages = self._messages, []
        return messages

    async def wait_for(self, word: str, within: float = 15.0) -> list[str]:
        """Wait until a message containing ``word`` arrives; return what arrived meanwhile."""
        seen: list[str] = []
        async with asyncio.timeout(within):
            while not any(word in m for m in seen):
                await asyncio.sleep(0.02)
                seen += self.drain()
        return seen

    def close(self) -> None:
        self._stop.set()
        self._reader.join(5)
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    receiver = NotifySocket(tmp_path / "notify.sock")
    yield receiver
    receiver.close()


async def test_ready_comes_once_http_answers_and_an_idle_journal_still_feeds_the_watchdog(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "200000"})
    config = msgspec.structs.replace(counting_site(tmp_path / "state"), devices=())  # nothing is ever appended
    async with (
        Gateway.running(config, clock=SystemClock(), plugins=counting_plugins(), notifier=notifier) as gateway,
        aiohttp.ClientSession() as http,
    ):
        ready = next(m for m in await notify_socket.wait_for("READY=1") if "READY=1" in m)
        assert ready == "READY=1\nSTATUS=0 points, 0/0 devices connected, seq 0"
        async with http.get(f"{gateway.http_url}/healthz") as r:
            assert r.status == 200
        for _ in range(3):
            await notify_socket.wait_for("WATCHDOG=1")
        assert gateway.journal.next_seq == 0
    assert any("STOPPING=1" in m for m in notify_socket.drain())


async def test_watchdog_pings_stop_while_a_commit_is_stuck_and_resume_after(
    tmp_path: Path, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_module, "WATCHDOG_FLUSH_LIMIT", 0.5)
    notifier = Notifier({"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "200000"})
    entered, release = threading.Event(), threading.Event()

    def stuck_disk(conn: object, entries: Sequence[Entry]) -> None:
        entered.set()
        release.wait(60)

    config = counting_site(tmp_path / "state")
    async with (
        Gateway.running(config, clock=SystemClock(), plugins=counting_plugins(), notifier=notifier) as gateway,
        aiohttp.ClientSession() as http,
    ):
        try:
            assert any("READY=1" in m for m in await notify_socket.wait_for("READY=1"))
            await notify_socket.wait_for("WATCHDOG=1")

            gateway.journal._writer_store().hooks.append(stuck_disk)  # the SD card stops answering
            assert await asyncio.to_thread(entered.wait, 15)
            await asyncio.sleep(1.0)  # a ping whose flush began before the stall may still arrive
            notify_socket.drain()
            await asyncio.sleep(1.5)
            assert not any("WATCHDOG=1" in m for m in notify_socket.drain())
            async with http.get(f"{gateway.http_url}/healthz") as r:
                assert r.status == 503
                assert "journal is not committing" in (await r.json())["problems"]
        finally:
            gateway.journal._writer_store().hooks.clear()
            release.set()
        await notify_socket.wait_for("WATCHDOG=1")
        async with http.get(f"{gateway.http_url}/healthz") as r:
            assert r.status == 200
    assert any("STOPPING=1" in m for m in notify_socket.drain())
