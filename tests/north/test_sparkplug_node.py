"""The Sparkplug B edge node against a real Mosquitto: births, data, rebirth and device commands, decoded
with the MQTT driver's codec from what an independent ``mosquitto_sub`` received."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from drivers.mqtt import sparkplug as sp
from hil.mosquitto import Mosquitto

from .conftest import WITHIN, gateway_with, north_figures, until

G, N = "plants", "plant7"


def north(broker: Mosquitto) -> Callable[[int], str]:
    return lambda _port: (
        f"  mqtt: {{port: {broker.port}, reconnect_initial: 100ms, reconnect_max: 300ms, commands: true,"
        f" sparkplug: {{group_id: {G}}}}}"
    )


class Messages:
    def __init__(self) -> None:
        self.seen: list[tuple[str, sp.Payload]] = []

    async def wait_for(self, topic: str, check: Callable[[sp.Payload], bool] = lambda _: True) -> sp.Payload:
        async with asyncio.timeout(WITHIN):
            while True:
                for t, p in self.seen:
                    if t == topic and check(p):
                        return p
                await asyncio.sleep(0.05)


@asynccontextmanager
async def sparkplug_sub(broker: Mosquitto) -> AsyncIterator[Messages]:
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-t", "spBv1.0/#", "-F", "%t %x",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    messages = Messages()

    async def read() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            topic, _, payload = line.decode().strip().partition(" ")
            try:
                messages.seen.append((topic, sp.decode_payload(bytes.fromhex(payload))))
            except sp.SparkplugError:
                continue  # the malformed command the test itself sends

    reader = asyncio.create_task(read())
    try:
        await asyncio.sleep(0.2)  # subscribed before the gateway connects
        yield messages
    finally:
        proc.terminate()
        await proc.wait()
        await reader


async def publish_file(broker: Mosquitto, topic: str, payload: bytes, tmp_path: Path) -> None:
    file = tmp_path / "payload.bin"
    file.write_bytes(payload)
    args = ["-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", topic, "-f", str(file)]
    proc = await asyncio.create_subprocess_exec("mosquitto_pub", *args)
    assert await proc.wait() == 0


async def test_births_data_rebirth_and_a_device_command_that_reaches_the_plc(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        async with sparkplug_sub(broker) as sub:
            async with gateway_with(tmp_path, north(broker)) as (_gateway, plc, _port):
                nbirth = await sub.wait_for(f"spBv1.0/{G}/NBIRTH/{N}")
                assert nbirth.seq == 0
                bd_seq = nbirth.metric(sp.BDSEQ_METRIC)
                assert bd_seq is not None
                assert bd_seq.value() == 0
                dbirth = await sub.wait_for(f"spBv1.0/{G}/DBIRTH/{N}/pump1")
                names = {m.name: m for m in dbirth.metrics}
                assert {"flow", "motor_temperature", "speed"} <= set(names)
                flow_alias = names["flow"].alias
                assert flow_alias is not None
                assert names["flow"].datatype == sp.DataType.DOUBLE
                ddata = await sub.wait_for(
                    f"spBv1.0/{G}/DDATA/{N}/pump1", lambda p: any(m.alias == flow_alias for m in p.metrics)
                )
                assert all(m.name is None for m in ddata.metrics)  # data by alias only
                assert ddata.seq is not None and 0 < ddata.seq <= 255

                births = len([t for t, _ in sub.seen if t.endswith(f"NBIRTH/{N}")])
                await publish_file(broker, f"spBv1.0/{G}/NCMD/{N}", sp.rebirth_request(0), tmp_path)
                async with asyncio.timeout(WITHIN):
                    while len([t for t, _ in sub.seen if t.endswith(f"NBIRTH/{N}")]) == births:
                        await asyncio.sleep(0.05)
                await sub.wait_for(f"spBv1.0/{G}/DBIRTH/{N}/pump1", lambda p: p is not dbirth)

                metric = sp.encode_metric(name="speed", timestamp=0, datatype=sp.DataType.DOUBLE, value=1450.0)
                dcmd = sp.encode_payload(timestamp=0, metrics=[metric])
                await publish_file(broker, f"spBv1.0/{G}/DCMD/{N}/pump1", dcmd, tmp_path)
                await until(lambda: plc.plant.speed_setpoint == 1450)
                await publish_file(broker, f"spBv1.0/{G}/DCMD/{N}/pump1", b"\xff\xff\xff", tmp_path)  # survived
                alias_cmd = sp.encode_metric(alias=names["speed"].alias, timestamp=0, datatype=sp.DataType.DOUBLE,
                                             value=1550.0)  # fmt: skip
                await publish_file(broker, f"spBv1.0/{G}/DCMD/{N}/pump1",
                                   sp.encode_payload(timestamp=0, metrics=[alias_cmd]), tmp_path)  # fmt: skip
                await until(lambda: plc.plant.speed_setpoint == 1550)
                figures, metrics = await north_figures(_gateway)
                node = figures["sparkplug"]
                assert (node["connected"], node["connects"], node["errors"]) == (True, 1, 0)
                assert (node["commands"], node["refused_commands"], node["failed_commands"]) == (4, 1, 0)
                assert node["published"] >= 5  # two NBIRTHs, two DBIRTHs, DDATA
                assert figures["mqtt"]["connected"] is True
                assert 'avila_edge_north_commands_total{endpoint="sparkplug",outcome="refused"} 1.0' in metrics
            death = await sub.wait_for(f"spBv1.0/{G}/NDEATH/{N}")  # sent as the session ends
            assert death.metric(sp.BDSEQ_METRIC) is not None
