"""The MQTT publisher against a real Mosquitto, observed and commanded with mosquitto_sub/mosquitto_pub."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from hil.mosquitto import Mosquitto

from .conftest import WITHIN, gateway_with, north_figures, until

P = "avila/plant7"


def north(broker: Mosquitto, *, extra: str = ", commands: true") -> Callable[[int], str]:
    return lambda _port: f"  mqtt: {{port: {broker.port}, reconnect_initial: 100ms, reconnect_max: 300ms{extra}}}"


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
async def subscribed(
    broker: Mosquitto, topic: str = f"{P}/#", *, login: tuple[str, str] | None = None
) -> AsyncIterator[Subscriber]:
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-v", "-q", "1", "-t", topic,
        *(["-u", login[0], "-P", login[1]] if login else []), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    sub = Subscriber(proc)
    reader = asyncio.create_task(sub.read())
    try:
        yield sub
    finally:
        proc.terminate()
        await proc.wait()
        await reader


async def publish(
    broker: Mosquitto, topic: str, payload: str, *, retain: bool = False, login: tuple[str, str] | None = None
) -> None:
    args = ["-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", topic, "-m", payload]
    args += ["-u", login[0], "-P", login[1]] if login else []
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


async def test_without_commands_true_set_topics_and_sparkplug_commands_are_not_taken(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        section = north(broker, extra=", sparkplug: {group_id: plants}")
        async with gateway_with(tmp_path, section) as (gateway, plc, _port):
            async with subscribed(broker) as sub:
                await sub.wait_for(f"{P}/pump1/state")  # published after the publisher's subscriptions
                await until(lambda: "spBv1.0/plants/NCMD/plant7" in broker.log_text())
                await publish(broker, f"{P}/pump1/set/speed", '{"value": 1313, "id": "c9"}')
                flow = (await sub.wait_for(f"{P}/pump1/points/flow"))["ts"]
                await sub.wait_for(f"{P}/pump1/points/flow", lambda v: v["ts"] > flow)  # the gateway moved on
            figures, _ = await north_figures(gateway)
            subscriptions = broker.log_text()
            assert "/set/" not in subscriptions and "DCMD" not in subscriptions
            assert not [t for t, _ in sub.messages if t.endswith("/result")]
            assert (figures["mqtt"]["commands"], figures["sparkplug"]["commands"]) == (0, 0)
            assert plc.plant.speed_setpoint != 1313


DOC = Path(__file__).resolve().parents[2] / "docs" / "north.md"
LOGINS = {"gateway": "gw-secret", "operator": "op-secret", "viewer": "view-secret"}


async def test_with_the_documented_broker_acl_an_operator_commands_and_a_viewer_cannot(tmp_path: Path) -> None:
    acl = tmp_path / "broker.acl"
    (text,) = re.findall(r"```text\n(# the gateway.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    acl.write_text(text)  # the broker ACL docs/north.md shows
    (tmp_path / "broker.pass").write_text("gw-secret\n")
    with Mosquitto(allow_anonymous=False, users=LOGINS, extra_config=[f"acl_file {acl}"]) as broker:
        section = north(broker, extra=f", commands: true, username: gateway, password_file: {tmp_path / 'broker.pass'}")
        async with gateway_with(tmp_path, section) as (gateway, plc, _port):
            viewer, operator = ("viewer", LOGINS["viewer"]), ("operator", LOGINS["operator"])
            async with subscribed(broker, login=viewer) as sub:  # a viewer reads the state
                await sub.wait_for(f"{P}/pump1/state")
                await publish(broker, f"{P}/pump1/set/speed", '{"value": 901, "id": "by-viewer"}', login=viewer)
                await publish(broker, f"{P}/pump1/set/speed", '{"value": 1404, "id": "by-operator"}', login=operator)
                result = await sub.wait_for(f"{P}/pump1/set/speed/result")
                assert (result["ok"], result["id"]) == (True, "by-operator")  # the viewer's never got through
                await until(lambda: plc.plant.speed_setpoint == 1404)
            figures, _ = await north_figures(gateway)
            assert figures["mqtt"]["commands"] == 1
            twin = gateway.twins.snapshot("pump1")
            assert twin["desired"]["speed"]["requested_by"] == "mqtt"
