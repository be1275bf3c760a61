"""The drivers read every point of every target: the hil/ simulators, or the real devices of a targets file.

scripts/test tests/hil/test_targets.py                                   # the simulators
AVILA_HIL_TARGETS=my-rig.yaml scripts/test tests/hil/test_targets.py     # a rig (hil/targets.example.yaml)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from avila_edge.core import Quality
from hil.modbus_plc import ModbusPlc
from hil.targets import ENV, PROTOCOLS, ModbusRtuTarget, ModbusTcpTarget, TargetsError, from_environment, load, parse

from ..drivers.harness import Collector
from .conftest import SCRATCH_POINT, Rig, check, device_of, expectations, running

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "hil" / "targets.example.yaml"
SIMULATOR_NAMES = {"modbus_tcp": "PUMP-01", "modbus_rtu": "PUMP-01", "opcua": "PUMP PUMP1"}
"""The simulated PLC's coil and discrete input."""
on_a_rig = pytest.mark.skipif(bool(os.environ.get(ENV)), reason=f"{ENV} is set: this test runs the suite itself")


def state(sink: Collector, points: Sequence[str]) -> str:
    lines = []
    for p in points:
        r = sink.latest.get(p)
        lines.append(f"  {p}: " + ("no reading" if r is None else f"{r.quality.name} {r.value!r} {r.reason}".rstrip()))
    return "\n".join(lines)


async def wait_all(sink: Collector, points: Sequence[str], quality: Quality, within: float, what: str) -> None:
    def reached(c: Collector) -> bool:
        return all(p in c.latest and c.latest[p].quality is quality for p in points)

    try:
        await sink.wait_for(reached, within)
    except TimeoutError:
        pytest.fail(f"{what}: not every point {quality.name} within {within:g} s:\n{state(sink, points)}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_every_configured_point_reads_good_within_the_deadline_and_in_its_range(rig: Rig) -> None:
    for target in rig.targets:
        device = device_of(target)
        assert check(device) == [], f"{rig.source}: {target.id}"
        expected = expectations(target)
        async with running(device, rig.deadline) as (_, sink):
            await wait_all(sink, list(expected), Quality.GOOD, rig.deadline, f"{rig.source}: {target.id}")
        outside = {
            p: sink.latest[p].value for p, e in expected.items() if e is not None and not e.holds(sink.latest[p].value)
        }
        assert outside == {}, f"{rig.source}: {target.id}: values outside their expected range"
        if rig.link is not None:  # the simulators' pump: its name and the ranges of its values are known
            assert sum(e is not None for e in expected.values()) >= 4
            if rig.protocol in SIMULATOR_NAMES:
                assert sink.latest["pump1/name"].value == SIMULATOR_NAMES[rig.protocol]


@pytest.mark.parametrize("protocol", ["modbus_tcp", "modbus_rtu"])
async def test_a_write_to_the_scratch_register_reads_back(rig: Rig) -> None:
    targets = [t for t in rig.targets if isinstance(t, ModbusTcpTarget | ModbusRtuTarget) and t.scratch is not None]
    if not targets:
        pytest.skip(f"{rig.source} gives no scratch register for {rig.protocol}")
    for target in targets:
        async with running(device_of(target, scratch=True), rig.deadline) as (driver, sink):
            before = await sink.wait_quality(SCRATCH_POINT, Quality.GOOD, rig.deadline)
            value = 1 + time.time_ns() // 1000 % 30_000  # a new value each run: a stale one cannot pass
            if value == before.value:
                value += 1
            await driver.write(SCRATCH_POINT, value)
            after = await sink.wait_value(SCRATCH_POINT, value, rig.deadline)
        assert after.quality is Quality.GOOD
        assert after.ts_gateway > before.ts_gateway


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_link_loss_turns_every_point_bad_and_good_again(rig: Rig) -> None:
    if rig.link is None:
        pytest.skip(f"{rig.source} names real devices: a test cannot pull their cable (python -m hil scenarios can)")
    (target,) = rig.targets
    points = list(expectations(target))
    async with running(device_of(target), rig.deadline) as (driver, sink):
        await wait_all(sink, points, Quality.GOOD, rig.deadline, "before the cut")
        await rig.link.cut()
        await wait_all(sink, points, Quality.BAD, rig.deadline, "the cable pulled")
        lost = [sink.latest[p] for p in points]
        await rig.link.mend()
        await wait_all(sink, points, Quality.GOOD, rig.deadline, "the cable back")
        assert driver.health().connected
    assert all(r.reason.startswith(("link down", "timeout")) for r in lost), [r.reason for r in lost]
    assert [r.point for r in lost if r.value is None] == [], lost  # the last good value travels with Bad


# -- the targets file ---------------------------------------------------------------------------------


def test_the_example_targets_file_names_every_protocol_and_each_device_passes_its_drivers_checks() -> None:
    targets = load(EXAMPLE)
    assert [len(targets.of(p)) for p in PROTOCOLS] == [1, 1, 1, 1]
    (plc,) = targets.modbus_tcp
    assert (plc.host, plc.port, plc.unit_id, plc.timeout) == ("192.168.10.20", 502, 1, 0.5)
    assert plc.scratch is not None and plc.scratch.address == 90
    assert plc.registers[1].scale == 0.01 and plc.registers[1].expect is not None
    (rtu,) = targets.modbus_rtu
    assert (rtu.port, rtu.baudrate, rtu.parity, rtu.unit_id) == ("/dev/ttyUSB0", 19200, "E", 7)
    (srv,) = targets.opcua
    assert (srv.security_mode, srv.username) == ("sign_and_encrypt", "tester")
    (broker,) = targets.mqtt
    assert broker.tls is not None and broker.port == 8883
    assert [v.value_path for v in broker.values] == ["$.temperature", "$.humidity", None]
    for protocol in PROTOCOLS:
        for target in targets.of(protocol):
            assert check(device_of(target, scratch=True)) == [], target.id


def test_the_targets_file_shown_in_docs_hil_md_loads_and_passes_the_drivers_checks(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "hil.md").read_text(encoding="utf-8")
    section = text.split("## Running the integration tests against real hardware", 1)[1]
    shown = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    targets = parse(shown, "docs/hil.md")
    assert [len(targets.of(p)) for p in PROTOCOLS] == [1, 1, 1, 1]
    for protocol in PROTOCOLS:
        for target in targets.of(protocol):
            assert check(device_of(target, scratch=True)) == [], target.id
    (bad_line,) = [line for line in section.splitlines() if line.startswith("my-rig.yaml:4:")]
    rig = tmp_path / "my-rig.yaml"
    rig.write_text("modbus_tcp:\n  - id: plc1\n    address: 10.0.0.2:502\n    unit: 3\n")
    with pytest.raises(TargetsError) as caught:
        load(rig)
    assert str(caught.value) == f"{tmp_path}/{bad_line}"


def test_the_targets_file_comes_from_the_environment() -> None:
    assert from_environment({ENV: "my-rig.yaml"}) == Path("my-rig.yaml")
    assert from_environment({ENV: " "}) is None
    assert from_environment({}) is None


MALFORMED = [
    # (text, the start of the error after the file name)
    ("modbus_tcp:\n  - id: plc1\n    address: plc1:50x\n", ":3: modbus_tcp[0].address: 'plc1:50x' is not HOST:PORT"),
    (
        "modbus_tcp:\n  - id: plc1\n    address: 10.0.0.2:502\n    registers:\n      - {id: a/b, adress: 3, type: int16}\n",
        ":5: modbus_tcp[0].registers[0].adress: unknown key",
    ),
    (
        "modbus_rtu:\n  - id: rtu1\n    port: /dev/ttyUSB0\n    parity: X\n    registers: [{id: a/b, address: 0, type: int16}]\n",
        ":4: modbus_rtu[0].parity: 'X' is not one of N, E, O",
    ),
    (
        "opcua:\n  - id: srv1\n    endpoint: http://srv:4840\n    nodes: [{id: a/b, node: i=1}]\n",
        ":3: opcua[0].endpoint: must look like opc.tcp://host:4840/path",
    ),
    (
        "mqtt:\n  - id: b\n    address: broker:1883\n    values:\n      - {id: a/b, topic: t, expect: [10, 1]}\n",
        ":5: mqtt[0].values[0].expect: the range [10, 1] is empty",
    ),
    ("deadline: soon\nmqtt: []\n", ":1: deadline: 'soon' is not a duration"),
    ("modbus_tcp:\n  - id: plc1\n   address: x\n", ":3: not valid YAML"),
    (
        "modbus_tcp:\n  - id: plc1\n    registers: [{id: a/b, address: 0, type: int16}]\n",
        ":2: modbus_tcp[0].address: missing",
    ),
]


@pytest.mark.parametrize(("text", "error"), MALFORMED)
def test_a_malformed_targets_file_is_refused_naming_the_file_line_and_key(
    tmp_path: Path, text: str, error: str
) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text(text)
    with pytest.raises(TargetsError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}{error}"), str(caught.value)


def test_a_file_with_no_target_and_an_unreadable_file_are_refused() -> None:
    with pytest.raises(TargetsError, match=r"^rig.yaml:1: name at least one target"):
        parse("deadline: 5s\n", "rig.yaml")
    with pytest.raises(TargetsError, match=r"^/nonexistent/rig.yaml: cannot be read"):
        load(Path("/nonexistent/rig.yaml"))


# -- the suite itself, pointed at a file ---------------------------------------------------------------


async def run_suite(targets: Path, *selection: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", str(Path(__file__)), *selection,
        cwd=ROOT, env={**os.environ, ENV: str(targets)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@on_a_rig
async def test_the_suite_reads_the_devices_a_targets_file_names_and_skips_the_protocols_it_lacks(
    tmp_path: Path,
) -> None:
    async with ModbusPlc(port=0) as plc:  # stands in for a real device: the file gives its address
        rig = tmp_path / "my-rig.yaml"
        rig.write_text(
            "deadline: 5s\n"
            "modbus_tcp:\n"
            "  - id: bench-plc\n"
            f"    address: 127.0.0.1:{plc.port}\n"
            "    timeout: 500ms\n"
            "    registers:\n"
            "      - {id: pump1/flow, table: holding, address: 0, type: float32, expect: [100, 140]}\n"
            "      - {id: pump1/setpoint, table: holding, address: 10, type: uint16, expect: [1500, 1500]}\n"
            "    scratch: {address: 95}\n"
        )
        code, out = await run_suite(rig, "-k", "reads_good or scratch or link_loss")
        written = plc.registers(95, 1)
    assert code == 0, out
    assert "2 passed, 8 skipped" in out, out  # modbus_tcp: every point Good, and the scratch write
    assert written != [0]
    assert f"{rig} names no modbus_rtu target" in out
    assert f"{rig} names no opcua target" in out
    assert f"{rig} names no mqtt target" in out
    assert f"{rig} names real devices: a test cannot pull their cable" in out


@on_a_rig
async def test_the_suite_pointed_at_a_malformed_file_fails_naming_the_file_and_line(tmp_path: Path) -> None:
    rig = tmp_path / "my-rig.yaml"
    rig.write_text("modbus_tcp:\n  - id: plc1\n    address: 10.0.0.2:502\n    unit: 3\n")
    code, out = await run_suite(rig, "-k", "reads_good and modbus_tcp")
    assert code == 1, out
    assert f"{rig}:4: modbus_tcp[0].unit: unknown key" in out, out
