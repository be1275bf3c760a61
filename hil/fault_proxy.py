"""A TCP proxy that injects network faults between the gateway and a peer (tc netem is not available).

``async with FaultProxy(target_host, target_port) as proxy`` listens on 127.0.0.1:``proxy.port`` and
forwards to the target. Faults, changeable while connections are open:

- ``drop()``: close every connection and refuse new ones (the cable is pulled); ``restore()``;
- ``latency = 0.2``: delay every chunk in both directions by that many seconds;
- ``corrupt_every = 100``: flip one bit in every 100th chunk;
- ``blackhole = True``: keep connections open but forward nothing (a frozen peer).

Command line: ``python -m hil.fault_proxy --listen 15021 --target 127.0.0.1:15020 --latency 0.1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Self

logger = logging.getLogger(__name__)


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = port
        self.latency = 0.0
        self.corrupt_every = 0
        self.blackhole = False
        self.connections = 0
        self.bytes_forwarded = 0
        self._chunks = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        await self.restore()
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.drop()

    async def restore(self) -> None:
        """Accept connections again (on the same port)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, self.host, self.port)
            self.port = int(self._server.sockets[0].getsockname()[1])

    async def drop(self) -> None:
        """Close every connection and stop listening."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)
            return
        self._writers.add(up_writer)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pump(reader, up_writer))
                tg.create_task(self._pump(up_reader, writer))
        except* (OSError, ConnectionError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if self.latency:
                await asyncio.sleep(self.latency)
            if self.blackhole:
                continue
            self._chunks += 1
            if self.corrupt_every and self._chunks % self.corrupt_every == 0:
                data = bytes([data[0] ^ 0x01]) + data[1:]
            writer.write(data)
            await writer.drain()
            self.bytes_forwarded += len(data)
        writer.close()


async def _serve(args: argparse.Namespace) -> None:
    host, _, port = args.target.rpartition(":")
    async with FaultProxy(host, int(port), port=args.listen) as proxy:
        proxy.latency = args.latency
        proxy.corrupt_every = args.corrupt_every
        print(f"fault proxy 127.0.0.1:{proxy.port} -> {args.target}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m hil.fault_proxy")
    parser.add_argument("--listen", type=int, default=0)
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--corrupt-every", type=int, default=0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
