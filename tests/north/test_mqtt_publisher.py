"""The MQTT publisher against a real Mosquitto, observed and commanded with mosquitto_sub/mosquitto_pub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from hil.mosquitto import Mosquitto

from .conftest import WITHIN, gateway_with, north_figures, until

P = "avila/plant7"


def north(broker: Mosquitto) -> Callable[[int], str]:
    return lambda _port: f"  mqtt: {{port: {broker.port}, reconnect_initial: 100ms, reconnect_max: 300ms}}"


class Subscriber:
    """``mosquitto_sub -v`` on a topic filter: an independent client recording ``(topic, payload)``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.messages: list[tuple[str, str]] = []

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            topic, _, payload = line.decode().rstrip("\n").partition(" ")
            self.messages.append((topic, payload))

    async def wait_for(self, topic: str, check: Callable[[Any], bool] = lambda _: True) -> Any:
        async with asyncio.timeout(WITHIN):
            while True:
                for t, p in self.messages:
                    if t == topic:
                        value = p if t.endswith("/status") else json.loads(p)
                        if check(value):
                            return value
                await asyncio.sleep(0.05)


@asynccontextmanager
async def subscribed(broker: Mosquitto, topic: str = f"{P}/#") -> AsyncIterator[Subscriber]:
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-v", "-q", "1", "-t", topic,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    sub = Subscriber(proc)
    reader = asyncio.create_task(sub.read())
    try:
        yield sub
    finally:
        proc.terminate()
        await proc.wait()
        await reader


async def publish(broker: Mosquitto, topic: str, payload: str, *, retain: bool = False) -> None:
    args = ["-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", topic, "-m", payload]
    proc = await asyncio.create_subprocess_exec("mosquitto_pub", *args, *(["-r"] if retain else []))
    assert await proc.wait() == 0


async def test_retained_state_events_and_a_command_that_reaches_the_plc(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        async with gateway_with(tmp_path, north(broker)) as (_gateway, plc, _port):
            async with subscribed(broker) as sub:
                assert await sub.wait_for(f"{P}/status") == "online"
                state = await sub.wait_for(f"{P}/pump1/state", lambda s: "flow" in s["reported"])
                assert state["parent"] == "line1"
                flow = await sub.wait_for(f"{P}/pump1/points/flow")
                assert flow["quality"] == "good"
                assert flow["unit"] == "m³/h"
                assert isinstance(flow["value"], float)

                await publish(broker, f"{P}/pump1/set/speed", '{"value": 1300, "id": "c1"}')
                result = await sub.wait_for(f"{P}/pump1/set/speed/result")
                assert result["ok"] is True, result
                assert result["id"] == "c1"
                await until(lambda: plc.plant.speed_setpoint == 1300)
                event = await sub.wait_for(f"{P}/events/desired", lambda e: e["attrs"]["status"] == "confirmed")
                assert event["source"] == "pump1/speed"

                plc.plant.stick_sensor("motor_temperature", 95.0)
                alarm = await sub.wait_for(f"{P}/events/alarm")
                assert alarm["source"] == "pump1/hot"
                assert alarm["attrs"]["transition"] == "raised"
            async with subscribed(broker, f"{P}/pump1/points/flow") as late:  # retained: a late subscriber sees it
                assert (await late.wait_for(f"{P}/pump1/points/flow"))["quality"] == "good"
        async with subscribed(broker, f"{P}/status") as after:
            assert await after.wait_for(f"{P}/status") == "offline"


MALFORMED = [
    ("pump1/set/speed", "not json"),
    ("pump1/set/speed", ""),
    ("pump1/set/speed", "[1, 2]"),
    ("pump1/set/speed", '{"version": 1}'),
    ("pump1/set/speed", '{"value": {"nested": 1}}'),
    ("pump1/set/speed", '{"value": 1, "unexpected": true}'),
    ("pump1/set/speed", '{"value": 1, "version": "one"}'),
    ("pump1/set/speed", '{"value": 1, "version": 99}'),
    ("pump1/set/speed", "\u00ff\u00fe"),
    ("pump1/set/flow", '{"value": 1}'),
    ("pump9/set/speed", '{"value": 1}'),
    ("pump1/set/nothing", '{"value": 1}'),
]


async def test_malformed_commands_are_answered_with_errors_and_survived(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        async with gateway_with(tmp_path, north(broker)) as (gateway, plc, _port):
            async with subscribed(broker) as sub:
                await sub.wait_for(f"{P}/status")
                for topic, payload in MALFORMED:
                    sub.messages.clear()
                    await publish(broker, f"{P}/{topic}", payload)
                    result = await sub.wait_for(f"{P}/{topic}/result")
                    assert result["ok"] is False, (topic, payload, result)
                    assert result["error"]
                await publish(broker, f"{P}/pump1/set/speed", '{"value": 777}', retain=True)
                result = await sub.wait_for(f"{P}/pump1/set/speed/result")
                assert result["ok"] is False
                assert "retained" in result["error"]
                await publish(broker, f"{P}/pump1/set/speed", "", retain=True)  # clear the retained command
                sub.messages.clear()
                await publish(broker, f"{P}/pump1/set/speed", '{"value": 1111}')
                assert (await sub.wait_for(f"{P}/pump1/set/speed/result"))["ok"] is True
                await until(lambda: plc.plant.speed_setpoint == 1111)
                assert plc.plant.speed_setpoint != 777
            figures, metrics = await north_figures(gateway)
            mqtt = figures["mqtt"]
            assert set(figures) == {"mqtt"}
            assert (mqtt["connected"], mqtt["sessions"], mqtt["connects"], mqtt["errors"]) == (True, 1, 1, 0)
            assert mqtt["refused_commands"] == len(MALFORMED) + 1  # and the retained one
            assert (mqtt["commands"], mqtt["failed_commands"]) == (len(MALFORMED) + 2, 0)
            assert mqtt["published"] > len(MALFORMED) + 2  # the results, the state and the points
            assert 'avila_edge_north_commands_total{endpoint="mqtt",outcome="refused"} 13.0' in metrics
            assert 'avila_edge_north_commands_total{endpoint="mqtt",outcome="accepted"} 1.0' in metrics
            assert 'avila_edge_north_connected{endpoint="mqtt"} 1.0' in metrics
            publisher_tasks = [t for t in asyncio.all_tasks() if t.get_name() == "north.mqtt"]
            assert publisher_tasks and not publisher_tasks[0].done()
            assert gateway.journal.next_seq > 0


async def test_after_a_broker_restart_the_retained_state_is_published_again(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        async with gateway_with(tmp_path, north(broker)) as (_gateway, _plc, _port):
            async with subscribed(broker) as sub:
                await sub.wait_for(f"{P}/pump1/state")
            await asyncio.to_thread(broker.restart)  # no persistence: the retained store is gone
            async with subscribed(broker, f"{P}/pump1/state") as sub:
                state = await sub.wait_for(f"{P}/pump1/state")
                assert "flow" in state["reported"]
            async with subscribed(broker, f"{P}/status") as sub:
                assert await sub.wait_for(f"{P}/status") == "online"


async def test_mutual_tls_and_a_password_from_a_secret_file(tmp_path: Path) -> None:
    with Mosquitto(tls=True, allow_anonymous=False, users={"gateway": "pw-of-gateway"}) as broker:
        assert broker.tls_files is not None and broker.tls_port is not None
        t = broker.tls_files
        (tmp_path / "broker.pass").write_text("pw-of-gateway\n")
        section = (
            f"  mqtt: {{host: 127.0.0.1, port: {broker.tls_port}, username: gateway,"
            f" password_file: {tmp_path / 'broker.pass'},"
            f" tls: {{ca_file: {t.ca_file}, cert_file: {t.client_cert}, key_file: {t.client_key}}}}}"
        )
        async with gateway_with(tmp_path, lambda _port: section):
            args = ["-h", "127.0.0.1", "-p", str(broker.tls_port), "--cafile", str(t.ca_file), "--cert",
                    str(t.client_cert), "--key", str(t.client_key), "-u", "gateway", "-P", "pw-of-gateway",
                    "-t", f"{P}/status", "-C", "1", "-W", str(int(WITHIN))]  # fmt: skip
            proc = await asyncio.create_subprocess_exec("mosquitto_sub", *args, stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            assert out.decode().strip() == "online"
