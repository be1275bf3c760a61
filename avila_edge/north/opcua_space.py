"""The OPC UA standard address space kept on disk, so the gateway's server holds only what clients use.

asyncua builds the standard address space (about 6,000 nodes of namespace 0) from generated code on
every start and keeps all of it in memory: about 50 MiB of a gateway's resident memory. Given a
shelf file, it reads nodes from there on first access instead (``load_aspace_shelf``) and keeps
the nodes a client touched. The shelf is built once per asyncua and Python version, in a child
process (so no gateway process ever holds the whole space), in ``<state_dir>/opcua-space/``
(owner-only): under a lock, so two processes on one state folder never build over each other;
written into a temporary folder, synced, and renamed into place, so a crash or power cut during the
build leaves no half shelf that a later start would trust. A shelf that cannot be read is thrown
away (``discard``) and built again at the next start; when none can be built (a read-only or full
disk), the server starts with the space in memory as before and says so.

``python -m avila_edge.north.opcua_space PATH`` is the child: it writes the shelf at ``PATH``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

BUILD_TIMEOUT = 300.0
"""Seconds the child may take to build the shelf (about 3 s on a 2-core x86 machine), and another
process's build may hold the lock."""
FOLDER = "opcua-space"
NODES = "nodes"
LOCK = ".lock"


def shelf_folder(state_dir: Path) -> Path:
    """Where the shelf of the installed asyncua under this Python lives (a shelf's format depends on
    both: asyncua's node classes are pickled, and the dbm module is the interpreter's)."""
    version = f"asyncua-{metadata.version('asyncua')}-py{sys.version_info[0]}.{sys.version_info[1]}"
    return state_dir / FOLDER / version


async def ensure_shelf(state_dir: Path) -> Path | None:
    """The shelf file to give ``Server.init``, built first if needed; ``None`` when it cannot be built."""
    folder = shelf_folder(state_dir)
    nodes = folder / NODES
    if nodes.is_file():
        return nodes
    staging = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    try:
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        async with _locked(folder.parent / LOCK):
            if nodes.is_file():  # another process built it while this one waited
                return nodes
            for other in folder.parent.iterdir():  # other versions, builds cut off, a folder without nodes
                if other.name != LOCK:
                    shutil.rmtree(other, ignore_errors=True)
            staging.mkdir(mode=0o700)
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


def discard(nodes: Path, error: BaseException) -> None:
    """Throw away a shelf that could not be read; the next start builds it again."""
    logger.warning(
        "OPC UA server: the standard address space in %s cannot be read (%s: %s); it is removed and "
        "built again at the next start, and stays in memory until then",
        nodes.parent,
        type(error).__name__,
        error,
    )
    shutil.rmtree(nodes.parent, ignore_errors=True)


@contextlib.asynccontextmanager
async def _locked(path: Path) -> AsyncIterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + BUILD_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another process holds {path}") from None
                await asyncio.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_and_rename(staging: Path, folder: Path) -> None:
    for file in staging.iterdir():
        _fsync(file)
    _fsync(staging)
    staging.rename(folder)
    _fsync(folder.parent)


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
