"""A serial line instrument serving the pump plant on the instrument side of a pty pair (or a real
port): NMEA 0183 sentences or a plain CSV line protocol, a poll request, a write command, and faults.

Protocols (``protocol=``):

``nmea``  every ``interval`` (or on the poll request ``R``) four sentences::

    $GPGGA,hhmmss.ss,4807.0380,N,01131.0000,W,1,08,0.9,545.4,M,46.9,M,,*HH    position (fixed site)
    $GPRMC,hhmmss.ss,A,4807.0380,N,01131.0000,W,0.0,0.0,ddmmyy,003.1,W*HH     + speed/course/date
    $IIMTW,17.0,C*HH                                                         pumped water temperature
    $IIXDR,C,45.12,C,MOTOR,P,4.201,B,PRESSURE,T,1500.0,R,SPEED,T,1500.0,R,SETPOINT,G,1.205,,VIBRATION*HH

``line``  every ``interval`` (or on ``R``)::

    PUMP,<flow m3/h>,<pressure bar>,<motor temp degC>,<vibration mm/s>,<speed rpm>,<setpoint rpm>,<running 0/1>

Commands (ended by CR or LF): ``R`` answers with the current frames; ``SET <rpm>`` changes the
plant's speed setpoint and answers ``OK SET <rpm>`` (line) or ``$PAVSA,SET,<rpm>*HH`` (nmea);
anything else answers ``ERR`` (line only). ``commands`` keeps what was received.

Faults, written at once by ``inject(kind)``: ``bad_checksum``, ``garbage``, ``truncated``,
``oversize``, ``invalid_utf8``, ``non_numeric``; ``silent = True`` stops the periodic output.
``sent`` holds the values of the last frames exactly as they were written.

When the cable is pulled (``PtyPair.cut``) the instrument notices the dead port and reopens the
same path once it is back. Imports nothing of the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import time
import tty
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self

from hil.plant import PumpPlant
from hil.pty import PtyPair

logger = logging.getLogger(__name__)

Protocol = Literal["nmea", "line"]
FAULTS: Final = ("bad_checksum", "garbage", "truncated", "oversize", "invalid_utf8", "non_numeric")
WATER_BELOW_AMBIENT: Final = 8.0
OVERSIZE_BYTES: Final = 2000


def nmea_checksum(body: bytes) -> int:
    value = 0
    for byte in body:
        value ^= byte
    return value


def sentence(body: str) -> bytes:
    """``$body*HH`` with its line end."""
    raw = body.encode("ascii")
    return b"$" + raw + b"*" + f"{nmea_checksum(raw):02X}".encode() + b"\r\n"


def _coordinate(value: float, width: int, hemispheres: str) -> tuple[str, str, float]:
    """``value`` in decimal degrees as NMEA ``[d]ddmm.mmmm``, its hemisphere, and the value it reads as."""
    total = round(abs(value) * 60.0, 4)
    degrees = int(total // 60)
    minutes = f"{total - degrees * 60:07.4f}"
    text = f"{degrees:0{width}d}{minutes}"
    read = degrees + float(minutes) / 60.0
    negative = value < 0
    return text, hemispheres[1] if negative else hemispheres[0], -read if negative else read


class SerialInstrument:
    """The instrument end of a serial line: ``async with SerialInstrument(path) as inst`` opens it,
    ``await inst.run()`` steps the plant and talks until cancelled."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        protocol: Protocol = "nmea",
        plant: PumpPlant | None = None,
        interval: float = 1.0,
        polled: bool = False,
        latitude: float = 48.1173,
        longitude: float = -11.516667,
        speed_knots: float = 0.0,
        talker: str = "GP",
    ) -> None:
        self.path = Path(path)
        self.protocol: Protocol = protocol
        self.plant = plant if plant is not None else PumpPlant()
        self.interval = interval
        self.polled = polled
        self.latitude = latitude
        self.longitude = longitude
        self.speed_knots = speed_knots
        self.talker = talker
        self.silent = False
        self.sent: dict[str, float] = {}
        self.commands: list[str] = []
        self.frames_written = 0
        self.dropped = 0
        self.reopened = 0
        self._fd: int | None = None
        self._inbox = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the port ------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._fd is not None

    def _open(self) -> bool:
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            tty.setraw(fd)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        if self._loop is not None:
            self._loop.add_reader(fd, self._readable)
        return True

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    def _readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            logger.info("serial instrument: %s went away; reopening when it is back", self.path)
            self._close()
            return
        self._inbox += data
        while True:
            ends = [i for i in (self._inbox.find(b"\r"), self._inbox.find(b"\n")) if i >= 0]
            if not ends:
                break
            end = min(ends)
            command = bytes(self._inbox[:end]).decode("ascii", "replace").strip()
            del self._inbox[: end + 1]
            if command:
                self._answer(command)
        if len(self._inbox) > 4096:
            self._inbox.clear()

    def write(self, data: bytes) -> bool:
        """Write raw bytes to the line; ``False`` when the port is away or full (counted in ``dropped``)."""
        if not self._open():
            self.dropped += 1
            return False
        assert self._fd is not None
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            self.dropped += 1
            return False
        except OSError:
            self._close()
            self.dropped += 1
            return False
        if written < len(data):
            self.dropped += 1
            return False
        return True

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()
        self._loop = None

    # -- behaviour -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Step the plant every ``interval`` and (unless polled or silent) send its frames."""
        while True:
            self.plant.step(self.interval)
            if self._fd is None and self._open():
                self.reopened += 1
            if not self.polled and not self.silent:
                self.emit()
            await asyncio.sleep(self.interval)

    def emit(self) -> None:
        """Send the current frames once."""
        for frame in self.frames():
            if self.write(frame):
                self.frames_written += 1

    def frames(self) -> list[bytes]:
        """The frames for the plant's current state (and record in ``sent`` what they carry)."""
        v = self.plant.values()
        if self.protocol == "line":
            fields = {
                "flow": f"{v['flow']:.2f}",
                "pressure": f"{v['pressure']:.3f}",
                "motor_temperature": f"{v['motor_temperature']:.2f}",
                "vibration": f"{v['vibration']:.3f}",
                "speed": f"{v['speed']:.1f}",
                "setpoint": f"{self.plant.speed_setpoint:.1f}",
            }
            self.sent = {k: float(t) for k, t in fields.items()}
            self.sent["running"] = float(self.plant.running)
            return [("PUMP," + ",".join(fields.values()) + f",{int(self.plant.running)}\r\n").encode("ascii")]
        now = time.gmtime()
        hms = time.strftime("%H%M%S", now) + ".00"
        date = time.strftime("%d%m%y", now)
        lat, ns, lat_read = _coordinate(self.latitude, 2, "NS")
        lon, ew, lon_read = _coordinate(self.longitude, 3, "EW")
        water = f"{self.plant.ambient - WATER_BELOW_AMBIENT:.1f}"
        xdr = {
            "MOTOR": f"{v['motor_temperature']:.2f}",
            "PRESSURE": f"{v['pressure']:.3f}",
            "SPEED": f"{v['speed']:.1f}",
            "SETPOINT": f"{self.plant.speed_setpoint:.1f}",
            "VIBRATION": f"{v['vibration']:.3f}",
        }
        speed = f"{self.speed_knots:.1f}"
        self.sent = {
            "latitude": lat_read,
            "longitude": lon_read,
            "speed_knots": float(speed),
            "water_temperature": float(water),
            **{name.lower(): float(text) for name, text in xdr.items()},
        }
        t = self.talker
        return [
            sentence(f"{t}GGA,{hms},{lat},{ns},{lon},{ew},1,08,0.9,545.4,M,46.9,M,,"),
            sentence(f"{t}RMC,{hms},A,{lat},{ns},{lon},{ew},{speed},0.0,{date},003.1,W"),
            sentence(f"IIMTW,{water},C"),
            sentence(
                f"IIXDR,C,{xdr['MOTOR']},C,MOTOR,P,{xdr['PRESSURE']},B,PRESSURE,T,{xdr['SPEED']},R,SPEED,"
                f"T,{xdr['SETPOINT']},R,SETPOINT,G,{xdr['VIBRATION']},,VIBRATION"
            ),
        ]

    def _answer(self, command: str) -> None:
        self.commands.append(command)
        word, _, arg = command.partition(" ")
        if word.upper() == "R":
            self.emit()
            return
        if word.upper() == "SET":
            try:
                rpm = float(arg)
            except ValueError:
                rpm = math.nan
            if math.isfinite(rpm):
                self.plant.set_speed(rpm)
                value = f"{self.plant.speed_setpoint:.1f}"
                self.write(
                    f"OK SET {value}\r\n".encode() if self.protocol == "line" else sentence(f"PAVSA,SET,{value}")
                )
                return
        if self.protocol == "line":
            self.write(b"ERR\r\n")

    # -- faults --------------------------------------------------------------------------------------

    def inject(self, kind: str) -> bytes:
        """Write one faulty frame of ``kind`` (see ``FAULTS``) now; returns the bytes written."""
        data = self._fault(kind)
        self.write(data)
        return data

    def _fault(self, kind: str) -> bytes:
        line = self.protocol == "line"
        if kind == "bad_checksum":
            if line:
                raise ValueError("the line protocol has no checksum")
            good = sentence("IIMTW,99.9,C")
            wrong = nmea_checksum(b"IIMTW,99.9,C") ^ 0x5A
            return good[: good.index(b"*") + 1] + f"{wrong:02X}".encode() + b"\r\n"
        if kind == "garbage":
            return b"\x00\x13~~#noise&%\x7f\r\n"
        if kind == "truncated":
            return b"PUMP,120.1\r\n" if line else b"$GPGGA,123519,4807.0\r\n"
        if kind == "oversize":
            return (b"PUMP," if line else b"$IIXDR,") + b"9" * OVERSIZE_BYTES + b"\r\n"
        if kind == "invalid_utf8":
            if line:
                return b"PUMP,\xff\xfe12.5,1,1,1,1,1,1\r\n"
            body = b"IIMTW,\xff\xfe,C"
            return b"$" + body + b"*" + f"{nmea_checksum(body):02X}".encode() + b"\r\n"
        if kind == "non_numeric":
            return b"PUMP,abc,4.2,45.0,1.2,1500.0,1500.0,1\r\n" if line else sentence("IIMTW,abc,C")
        raise ValueError(f"unknown fault {kind!r}; use one of {', '.join(FAULTS)}")


# -- command line --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=("nmea", "line"), default="nmea")
    parser.add_argument("--tty", default=None, help="talk on this port instead of a new pty pair")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between plant steps / frames")
    parser.add_argument("--polled", action="store_true", help="answer only the poll request R")
    parser.add_argument("--fault-every", type=int, default=0, help="inject a fault every N frames (0: never)")


async def _serve(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if args.tty is None:
            pair = await stack.enter_async_context(PtyPair())
            path: str | Path = pair.instrument
            print(f"serial instrument ({args.protocol}): open {pair.device} from the gateway", flush=True)
        else:
            path = args.tty
            print(f"serial instrument ({args.protocol}) on {path}", flush=True)
        inst = await stack.enter_async_context(
            SerialInstrument(path, protocol=args.protocol, interval=args.interval, polled=args.polled)
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        faults = [f for f in FAULTS if not (args.protocol == "line" and f == "bad_checksum")]
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(inst.run(), name="hil.serial_instrument.run")
            count = 0
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(args.interval):
                        await stop.wait()
                count += 1
                if args.fault_every and count % args.fault_every == 0:
                    inst.inject(faults[(count // args.fault_every) % len(faults)])
            runner.cancel()


def run(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.serial_instrument", description=__doc__.splitlines()[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
