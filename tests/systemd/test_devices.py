"""The gateway unit reaches exactly the serial ports its site names: the generator's drop-in, and the
unit with it still verifies and scores 2.0 or lower."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from avila_edge.systemd import DEVICE_DROPIN, run_generator

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "systemd" / "avila-edge-devices-generator"
UNIT = ROOT / "systemd" / "avila-edge.service"

SITE = """\
site: {id: booster-7}
assets: [{id: pump1}, {id: meter1}, {id: gps1}, {id: spare1}]
devices:
  - id: pump1-ctl
    driver: modbus
    connection: {transport: rtu, port: /dev/serial/by-id/usb-FTDI_USB-RS485-if00-port0, unit_id: 1}
    points: [{id: pump1/flow, address: {table: holding, address: 0}, type: float32}]
  - id: meter1
    driver: modbus
    connection: {transport: rtu, port: /dev/serial/by-id/usb-FTDI_USB-RS485-if00-port0, unit_id: 2}
    points: [{id: meter1/power, address: {table: holding, address: 36}, type: float32}]
  - id: gps1
    driver: serial
    connection: {port: /dev/ttyUSB1, framing: nmea}
    points: [{id: gps1/lat, type: float64, address: {sentence: GGA, field: latitude}}]
  - id: spare1
    driver: serial
    enabled: false
    connection: {port: /dev/ttyS3}
    points: [{id: spare1/x, type: float64, address: {field: 0}}]
  - id: plc1
    driver: modbus
    connection: {host: 192.0.2.10, port: 502}
    points: [{id: pump1/speed, address: {table: holding, address: 10}, type: uint16}]
"""


def generate(tmp_path: Path, text: str) -> tuple[int, Path]:
    site = tmp_path / "site.yaml"
    site.write_text(text)
    out = tmp_path / "generator"
    dirs = [out / "normal", out / "early", out / "late"]
    for d in dirs:
        d.mkdir(parents=True)
    return run_generator([str(d) for d in dirs], site=site), dirs[0] / DEVICE_DROPIN


def test_only_the_enabled_devices_serial_ports_are_allowed(tmp_path: Path) -> None:
    code, dropin = generate(tmp_path, SITE)
    assert code == 0
    lines = dropin.read_text().splitlines()
    assert [line for line in lines if line.startswith("DeviceAllow=")] == [
        "DeviceAllow=/dev/serial/by-id/usb-FTDI_USB-RS485-if00-port0 rw",  # one bus, two devices: once
        "DeviceAllow=/dev/ttyUSB1 rw",
    ]  # the disabled device's /dev/ttyS3 and the TCP device open nothing
    assert "DevicePolicy=closed" in lines
    assert "PrivateDevices=no" in lines


def test_a_site_without_serial_ports_keeps_private_devices(tmp_path: Path) -> None:
    code, dropin = generate(tmp_path, SITE.split("  - id: pump1-ctl", maxsplit=1)[0] + "  []\n")
    assert code == 0
    assert not dropin.exists()


def test_an_invalid_site_opens_no_port_and_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, dropin = generate(tmp_path, SITE.replace("transport: rtu", "transport: carrier-pigeon", 1))
    assert code == 0  # a generator never fails the boot; the unit's ExecStartPre check reports the site
    assert not dropin.exists()
    err = capsys.readouterr().err
    assert f"{tmp_path / 'site.yaml'}:" in err
    assert "no serial port is opened" in err


def test_a_port_outside_dev_is_left_out_and_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, dropin = generate(tmp_path, SITE.replace("/dev/ttyUSB1", "/tmp/../dev/sda"))
    assert code == 0
    assert "/dev/sda" not in dropin.read_text()
    assert "device 'gps1': serial port '/tmp/../dev/sda' is not a path under /dev/" in capsys.readouterr().err


def test_the_installed_generator_script_runs_the_generator(tmp_path: Path) -> None:
    dirs = [tmp_path / name for name in ("normal", "early", "late")]
    result = subprocess.run([sys.executable, str(GENERATOR), *map(str, dirs)], capture_output=True, text=True,
                            check=False, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr  # no /etc/avila-edge/site.yaml here: nothing to allow
    assert GENERATOR.read_text().startswith("#!/opt/avila-edge/venv/bin/python\n")
    assert GENERATOR.stat().st_mode & 0o111
    image = (ROOT / "firmware-image" / "customize.sh").read_text()
    assert "systemd/avila-edge-devices-generator" in image and "system-generators" in image


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_gateway_unit_with_serial_ports_verifies_and_scores_at_most_2(tmp_path: Path) -> None:
    _, dropin = generate(tmp_path, SITE)
    local = str(Path(sys.executable).parent) + "/"
    # a drop-in's [Service] section applies as if it followed the unit's own: append it
    unit = tmp_path / "avila-edge.service"
    unit.write_text(UNIT.read_text().replace("/opt/avila-edge/venv/bin/", local) + "\n" + dropin.read_text())
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False,
                            timeout=60)  # fmt: skip
    assert (verify.returncode, verify.stderr.strip()) == (0, "")
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)],
                              capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert security.returncode == 0, security.stdout[-2000:]
    assert "PrivateDevices=" in security.stdout
