"""``avila-edge`` command line: parses arguments and wires the runtime; nothing else lives here."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

import avila_edge
from avila_edge.config import check_config, load_config
from avila_edge.config.model import GatewayConfig, LoggingConfig
from avila_edge.core import ConfigError, Event, GatewayError, SystemClock

logger = logging.getLogger("avila_edge.cli")

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    except GatewayError as exc:
        print(f"avila-edge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avila-edge", description="hardened edge/IoT gateway runtime")
    parser.add_argument("--version", action="version", version=f"avila-edge {avila_edge.__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = sub.add_parser("run", help="run the gateway on a site configuration")
    run.add_argument("--config", type=Path, required=True, help="site configuration (YAML)")
    run.add_argument("--state-dir", type=Path, help="override state_dir from the configuration")
    run.set_defaults(handler=_run)

    demo = sub.add_parser("demo", help="run the simulated plant and a gateway on the demo site")
    demo.add_argument("--state-dir", type=Path, default=_default_demo_state(), help="where the demo keeps its journal")
    demo.add_argument("--http-port", type=int, help="status port (default: the demo site's, 8080)")
    demo.set_defaults(handler=_demo)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(title="config commands", metavar="COMMAND")
    check = config_sub.add_parser("check", help="validate configuration files; print FILE:LINE: problems")
    check.add_argument("files", type=Path, nargs="+")
    check.set_defaults(handler=_config_check)

    for register in _command_groups():
        register(sub)
    return parser


Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _command_groups() -> list[Register]:
    from avila_edge.anomaly.cli import register as model  # noqa: PLC0415
    from avila_edge.audit.cli import register as audit  # noqa: PLC0415 - each group loads its own imports
    from avila_edge.fleet.cli import register as fleet  # noqa: PLC0415
    from avila_edge.twins.cli import register as twins  # noqa: PLC0415
    from avila_edge.update.cli import register as update  # noqa: PLC0415

    return [twins, fleet, audit, model, update]


def _default_demo_state() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "avila-edge" / "demo"


def _config_check(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        issues = check_config(path)
        for issue in issues:
            print(issue, file=sys.stderr)
        failed = failed or bool(issues)
        if not issues:
            print(f"{path}: valid")
    return 1 if failed else 0


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.state_dir is not None:
        config = msgspec.structs.replace(config, state_dir=args.state_dir)
    _logging(config.logging)
    return asyncio.run(_serve_bundles(config, args.config, args.config.read_text()))


def _demo(args: argparse.Namespace) -> int:
    from avila_edge.demo import demo_config  # noqa: PLC0415

    config = demo_config(args.state_dir, args.http_port)
    _logging(config.logging)
    return asyncio.run(_serve(config, announce=True, with_plant=True))


def _logging(config: LoggingConfig) -> None:
    from avila_edge.observability.logging import configure_logging  # noqa: PLC0415

    configure_logging(config)


async def _serve(config: GatewayConfig, *, announce: bool, with_plant: bool = False) -> int:
    from avila_edge.runtime.gateway import Gateway  # noqa: PLC0415 - drivers and sinks load only when run

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if with_plant:
            from avila_edge.demo import simulated_plant  # noqa: PLC0415

            await stack.enter_async_context(simulated_plant(config))
        gateway = await stack.enter_async_context(Gateway.running(config, clock=SystemClock()))
        if announce:
            print(f"avila-edge demo: status at {gateway.http_url}/status (Ctrl-C stops)", flush=True)
        await stop.wait()
        logger.info("stopping on signal")
    return 0


async def _serve_bundles(config: GatewayConfig, path: Path, text: str) -> int:
    """``run``: the gateway on its configuration file, restarted in-process for fleet bundles."""
    from avila_edge.runtime.bundles import BundleStore, Reload, serve  # noqa: PLC0415
    from avila_edge.runtime.gateway import Gateway  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    clock = SystemClock()

    async def run(config: GatewayConfig, events: list[Event], started: Callable[[], None]) -> Reload | None:
        async with Gateway.running(config, clock=clock, config_path=path) as gateway:
            if events:
                await gateway.pipeline.record(events)
            await asyncio.to_thread(started)  # promotes a bundle: fsynced file writes
            stopping = asyncio.ensure_future(stop.wait())
            reloading = asyncio.ensure_future(gateway.reload_requested.wait())
            try:
                await asyncio.wait([stopping, reloading], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                reloading.cancel()
            if stop.is_set():
                logger.info("stopping on signal")
                return None
            return gateway.reload

    return await serve(config, text, BundleStore(config.state_dir, path), run, clock=clock)


if __name__ == "__main__":
    raise SystemExit(main())
