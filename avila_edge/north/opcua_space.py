"""The OPC UA standard address space kept on disk, so the gateway's server holds only what clients use.

asyncua builds the standard address space (about 6,000 nodes of namespace 0) from generated code on
every start and keeps all of it in memory: about 50 MiB of a gateway's resident memory. Given a
shelf file, it reads nodes from there on first access instead (``load_aspace_shelf``). The shelf is
built once per asyncua version, in a child process (so no gateway process ever holds the whole
space), under ``<state_dir>/opcua-server/``: written into a temporary folder, synced, and renamed
into place, so a crash or power cut during the build leaves no half shelf that a later start would
trust. When it cannot be built (a read-only or full disk), the server starts with the space in
memory as before and says so.

``python -m avila_edge.north.opcua_space PATH`` is the child: it writes the shelf at ``PATH``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

BUILD_TIMEOUT = 300.0
"""Seconds the child may take to build the shelf (about 3 s on a 2-core x86 machine)."""
NODES = "nodes"
PREFIX = "address-space-"


def shelf_folder(state_dir: Path) -> Path:
    """Where the shelf of the installed asyncua version lives."""
    return state_dir / "opcua-server" / f"{PREFIX}{metadata.version('asyncua')}"


async def ensure_shelf(state_dir: Path) -> Path | None:
    """The shelf file to give ``Server.init``, built first if needed; ``None`` when it cannot be built."""
    folder = shelf_folder(state_dir)
    nodes = folder / NODES
    if nodes.is_file():
        return nodes
    staging = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(folder)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        await _build_in_child(staging / NODES)
        await asyncio.to_thread(_sync_and_rename, staging, folder)
    except (OSError, RuntimeError, TimeoutError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        logger.warning(
            "OPC UA server: cannot keep the standard address space on disk in %s (%s); it stays in memory "
            "(about 50 MiB more)",
            folder.parent,
            exc,
        )
        return None
    return nodes


def _remove_stale(folder: Path) -> None:
    """Shelves of other asyncua versions and staging folders of builds that did not finish."""
    for other in folder.parent.glob(f"{PREFIX}*"):
        if other != folder:
            shutil.rmtree(other, ignore_errors=True)


async def _build_in_child(path: Path) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", __name__, str(path),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(BUILD_TIMEOUT):
            _, err = await child.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        raise
    if child.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {child.returncode}"]
        raise RuntimeError(f"building the shelf failed: {last[0]}")


def _sync_and_rename(staging: Path, folder: Path) -> None:
    for file in staging.iterdir():
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    staging.rename(folder)
    fd = os.open(folder.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _fill(path: Path) -> None:
    from asyncua.server.internal_server import InternalServer  # noqa: PLC0415 - the child only

    await InternalServer().load_standard_address_space(path)  # no shelf at path yet: fills, writes one


def build(path: Path) -> None:
    """Write the shelf at ``path`` (the child's work)."""
    asyncio.run(_fill(path))
    if not path.is_file():  # dbm.dumb writes nodes.dat and nodes.dir; asyncua looks for the name itself
        path.touch()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m avila_edge.north.opcua_space PATH")
    build(Path(sys.argv[1]))
