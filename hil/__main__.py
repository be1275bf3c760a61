"""Command line for the hil/ simulators: ``python -m hil modbus-plc --port 15020``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from hil.modbus_plc import ModbusPlc


async def _serve_modbus(host: str, port: int, unit_ids: tuple[int, ...], bearing_wear_per_hour: float) -> None:
    async with ModbusPlc(host=host, port=port, unit_ids=unit_ids) as plc:
        for plant in plc.plants.values():
            plant.degrade_bearing(bearing_wear_per_hour)
        print(f"modbus PLC: units {', '.join(map(str, unit_ids))} on {host}:{plc.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil", description="hardware-in-the-loop simulators")
    sub = parser.add_subparsers(dest="command", required=True)
    plc = sub.add_parser("modbus-plc", help="serve the pump plant over Modbus TCP")
    plc.add_argument("--host", default="127.0.0.1")
    plc.add_argument("--port", type=int, default=15020)
    plc.add_argument("--unit-ids", default="1", help="comma-separated unit ids, one pump each")
    plc.add_argument("--bearing-wear", type=float, default=0.0, help="bearing wear per hour (1.0 = failure)")
    from hil import opcua_server  # noqa: PLC0415 - importing hil alone stays free of asyncua

    opcua_server.add_arguments(sub.add_parser("opcua-server", help="serve the pump plant over OPC UA"))
    from hil import coap_nodes  # noqa: PLC0415 - importing hil alone stays free of aiocoap

    coap_nodes.add_arguments(sub.add_parser("coap-node", help="serve the pump plant as a CoAP node (observe, SenML)"))
    from hil import serial_instrument  # noqa: PLC0415

    serial_instrument.add_arguments(
        sub.add_parser("serial-instrument", help="serve the pump plant as a serial NMEA / line instrument on a pty")
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.command == "modbus-plc":
        units = tuple(int(u) for u in args.unit_ids.split(","))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_modbus(args.host, args.port, units, args.bearing_wear))
    elif args.command == "opcua-server":
        return opcua_server.run(args)
    elif args.command == "coap-node":
        return coap_nodes.run(args)
    elif args.command == "serial-instrument":
        return serial_instrument.run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
