"""The hil CoAP node from the command line (``python -m hil coap-node``), read by libcoap's client."""

from __future__ import annotations

import asyncio
import signal
import sys

from hil.coap_nodes import free_udp_port

from .conftest import coap_client


async def test_the_coap_node_subcommand_serves_the_plant_and_stops_on_sigterm() -> None:
    port = free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hil",
        "coap-node",
        "--port",
        str(port),
        "--interval",
        "0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(10):
            banner = (await proc.stdout.readline()).decode()
        assert f"on coap://127.0.0.1:{port}" in banner
        code, out, err = await coap_client("-m", "get", f"coap://127.0.0.1:{port}/temp")
        assert (code, err) == (0, "")
        assert 30.0 < float(out) < 80.0
        code, out, err = await coap_client("-m", "get", f"coap://127.0.0.1:{port}/status")
        assert '"running": true' in out
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            await proc.wait()
    assert proc.returncode == 0
