"""The Mosquitto rig: real broker processes on free loopback ports, checked with Debian's clients."""

from __future__ import annotations

import asyncio
import socket
import subprocess

import pytest

from hil.mosquitto import Mosquitto


def _pub(broker: Mosquitto, *extra: str, port: int | None = None) -> subprocess.CompletedProcess[str]:
    args = ["mosquitto_pub", "-h", broker.host, "-p", str(port or broker.port), "-t", "t", "-m", "1", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def test_the_broker_listens_on_loopback_and_stop_start_keep_the_port() -> None:
    with Mosquitto() as broker:
        port = broker.port
        assert _pub(broker).returncode == 0
        broker.stop()
        assert not broker.running
        assert not _listening(broker.host, port)
        broker.start()
        assert broker.port == port
        assert _pub(broker).returncode == 0
        broker.restart()
        assert _pub(broker).returncode == 0
        assert "listener" in broker.config_file.read_text()
        assert "max_queued_messages 0" in broker.config_file.read_text()
        assert "persistence false" in broker.config_file.read_text()
    assert not broker.workdir.exists()


def test_a_password_file_refuses_anonymous_and_wrong_logins() -> None:
    with Mosquitto(users={"gw": "pw1"}, allow_anonymous=False) as broker:
        assert _pub(broker, "-u", "gw", "-P", "pw1").returncode == 0
        assert _pub(broker, "-u", "gw", "-P", "nope").returncode != 0
        assert _pub(broker).returncode != 0


def test_the_tls_listener_needs_a_client_certificate_signed_by_its_ca() -> None:
    with Mosquitto(tls=True) as broker:
        files = broker.tls_files
        assert files is not None
        assert broker.tls_port is not None
        ca = ["--cafile", str(files.ca_file)]
        cert = ["--cert", str(files.client_cert), "--key", str(files.client_key)]
        assert _pub(broker, *ca, *cert, port=broker.tls_port).returncode == 0
        assert _pub(broker, *ca, port=broker.tls_port).returncode != 0


def test_a_paused_broker_accepts_connections_but_answers_nothing() -> None:
    with Mosquitto() as broker:
        broker.pause()
        try:
            result = subprocess.run(
                ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-t", "t", "-m", "1", "-k", "1"],
                capture_output=True,
                timeout=30,
                check=False,
            )
        except subprocess.TimeoutExpired:
            result = None
        finally:
            broker.resume()
        assert result is None or result.returncode != 0
        assert _pub(broker).returncode == 0


def test_a_broker_that_cannot_start_says_why() -> None:
    taken = Mosquitto()
    try:
        taken.start()
        clash = Mosquitto(port=taken.port)
        with pytest.raises(RuntimeError, match="mosquitto"), clash:
            pass
    finally:
        taken.close()


async def test_the_async_context_manager_starts_and_cleans_up() -> None:
    async with Mosquitto() as broker:
        assert broker.running
        await broker.arestart()
        assert await asyncio.to_thread(_listening, broker.host, broker.port)
    assert not broker.running
    assert not broker.workdir.exists()
