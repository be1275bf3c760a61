"""Command line for the hil/ simulators: ``python -m hil modbus-plc --port 15020``."""

from __future__ import annotations

import argparse
import logging

from hil import modbus_plc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil", description="hardware-in-the-loop simulators")
    sub = parser.add_subparsers(dest="command", required=True)
    modbus_plc.add_arguments(
        sub.add_parser("modbus-plc", help="serve the pump plant over Modbus TCP, or RTU on a serial port (--rtu)")
    )
    from hil import opcua_server  # noqa: PLC0415 - importing hil alone stays free of asyncua

    opcua_server.add_arguments(sub.add_parser("opcua-server", help="serve the pump plant over OPC UA"))
    from hil import coap_nodes  # noqa: PLC0415 - importing hil alone stays free of aiocoap

    coap_nodes.add_arguments(sub.add_parser("coap-node", help="serve the pump plant as a CoAP node (observe, SenML)"))
    from hil import serial_instrument  # noqa: PLC0415

    serial_instrument.add_arguments(
        sub.add_parser("serial-instrument", help="serve the pump plant as a serial NMEA / line instrument on a pty")
    )
    from hil import scenarios  # noqa: PLC0415

    scenarios.add_arguments(sub.add_parser("scenarios", help="run fault scenarios against a gateway; PASS/FAIL"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.command == "modbus-plc":
        return modbus_plc.run(args)
    elif args.command == "opcua-server":
        return opcua_server.run(args)
    elif args.command == "coap-node":
        return coap_nodes.run(args)
    elif args.command == "serial-instrument":
        return serial_instrument.run(args)
    elif args.command == "scenarios":
        return scenarios.run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
