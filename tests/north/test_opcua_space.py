"""The OPC UA server's standard address space kept on disk under the state folder: built once in a
child process, read by later starts, rebuilt after an interrupted build, and in memory when the disk
refuses it. A real asyncua client reads namespace 0 and the site's nodes each time."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from avila_edge.north.opcua_space import LOCK, NODES, ensure_shelf, shelf_folder
from avila_edge.runtime.gateway import Gateway

from .conftest import WITHIN, gateway_with

NS = "urn:avila-edge:site:plant7"


def anonymous(port: int) -> str:
    return f"  opcua: {{port: {port}, policies: [], modes: [], allow_none: true, anonymous: true}}"


async def served(gateway: Gateway, port: int) -> tuple[str, list[str], float]:
    """What a client reads once the server is up: its state, namespace 0's type folders and a site
    variable."""
    server: Any = gateway.north["opcua"]
    async with asyncio.timeout(WITHIN):
        await server.ready.wait()
    client = Client(f"opc.tcp://127.0.0.1:{port}/avila-edge", timeout=WITHIN)
    async with client:
        state = await client.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus_State)).read_value()
        types = await client.get_node(ua.NodeId(ua.ObjectIds.TypesFolder)).get_children()
        names = sorted([(await t.read_browse_name()).Name for t in types])
        ns = await client.get_namespace_index(NS)
        flow = await client.get_node(ua.NodeId("pump1/flow", ns)).read_value()
    return ua.ServerState(state).name, names, flow


TYPE_FOLDERS = ["DataTypes", "EventTypes", "InterfaceTypes", "ObjectTypes", "ReferenceTypes", "VariableTypes"]


async def test_the_standard_address_space_is_built_once_on_disk_and_read_from_there(tmp_path: Path) -> None:
    folder = shelf_folder(tmp_path / "state")
    assert folder.name == f"asyncua-{metadata.version('asyncua')}-py{sys.version_info[0]}.{sys.version_info[1]}"
    async with gateway_with(tmp_path, anonymous) as (gateway, plc, port):
        plc.set_value(0, 12.5, "float32")
        state, names, _ = await served(gateway, port)
        assert (folder / NODES).is_file()
        assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
        built = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
        assert sum(p.stat().st_size for p in folder.iterdir()) > 1_000_000  # thousands of pickled nodes
        assert state == "Running"
        assert names == TYPE_FOLDERS
    async with gateway_with(tmp_path, anonymous) as (gateway, plc, port):
        plc.set_value(0, 13.5, "float32")
        state, names, _ = await served(gateway, port)
        assert (state, names) == ("Running", TYPE_FOLDERS)
        assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == built, "read, not built again"


async def test_an_interrupted_build_and_another_versions_shelf_are_cleared_and_built_afresh(tmp_path: Path) -> None:
    folder = shelf_folder(tmp_path / "state")
    folder.parent.mkdir(parents=True)
    staging = folder.with_name(f"{folder.name}.tmp-4242")  # a build cut off by a power loss
    staging.mkdir()
    (staging / "nodes.dat").write_bytes(b"\0" * 100)
    old = folder.with_name("asyncua-0.0.1-py3.9")
    old.mkdir()
    (old / NODES).write_bytes(b"")
    folder.mkdir()  # this version's folder, left without its nodes file
    (folder / "nodes.dat").write_bytes(b"\0" * 100)
    async with gateway_with(tmp_path, anonymous) as (gateway, _plc, port):
        assert (await served(gateway, port))[1] == TYPE_FOLDERS
    assert sorted(p.name for p in folder.parent.iterdir()) == [".lock", folder.name]
    assert (folder / NODES).is_file()


async def test_a_damaged_shelf_is_thrown_away_served_from_memory_and_built_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = shelf_folder(tmp_path / "state")
    async with gateway_with(tmp_path, anonymous) as (gateway, _plc, port):
        await served(gateway, port)
    data = next(p for p in folder.iterdir() if p.name != NODES and p.stat().st_size > 1_000_000)
    data.write_bytes(data.read_bytes()[:1000])  # a disk that lost most of it
    (folder / "nodes.dir").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, logger="avila_edge.north.opcua_space"):
        async with gateway_with(tmp_path, anonymous) as (gateway, _plc, port):
            state, names, _ = await served(gateway, port)
    assert (state, names) == ("Running", TYPE_FOLDERS)
    assert any("cannot be read" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert not folder.exists() or (folder / NODES).is_file()
    async with gateway_with(tmp_path, anonymous) as (gateway, _plc, port):
        assert (await served(gateway, port))[1] == TYPE_FOLDERS
    assert (folder / NODES).is_file()


async def test_two_gateways_starting_on_one_state_folder_build_one_shelf(tmp_path: Path) -> None:
    state = tmp_path / "state"
    results = await asyncio.gather(ensure_shelf(state), ensure_shelf(state))
    assert results[0] == results[1] == shelf_folder(state) / NODES
    assert sorted(p.name for p in shelf_folder(state).parent.iterdir()) == [".lock", shelf_folder(state).name]


async def test_a_disk_that_refuses_the_shelf_leaves_the_space_in_memory_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = shelf_folder(tmp_path / "state")
    folder.parent.mkdir(parents=True)
    folder.parent.chmod(0o500)  # a read-only disk
    if os.access(folder.parent, os.W_OK):  # root writes anyway: a file where the folder goes does it
        folder.parent.chmod(0o700)
        (folder.parent / LOCK).mkdir()
    with caplog.at_level(logging.WARNING, logger="avila_edge.north.opcua_space"):
        async with gateway_with(tmp_path, anonymous) as (gateway, plc, port):
            plc.set_value(0, 7.25, "float32")
            state, names, _ = await served(gateway, port)
    assert (state, names) == ("Running", TYPE_FOLDERS)
    assert any("stays in memory" in r.getMessage() and str(folder.parent) in r.getMessage() for r in caplog.records)
    assert not list(folder.parent.glob("*.tmp-*")), "no staging folder is left behind"
    folder.parent.chmod(0o700)
