"""A/B slots: trial boots are counted, a healthy gateway commits, an unhealthy one rolls back, and a
power cut (kill -9) in the middle of an install leaves a bootable slot."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from avila_edge.audit import DeviceKey
from avila_edge.cli import main
from avila_edge.config.model import JournalConfig
from avila_edge.core import SystemClock
from avila_edge.runtime.gateway import Gateway
from avila_edge.update import UpdateError, open_bundle

from ..runtime.counting_driver import counting_device, counting_plugins, counting_site
from .conftest import HARDWARE, bundle, slots


def install(root: Path, path: Path, key: DeviceKey) -> str:
    with open_bundle(path, [key.verifier]) as opened:
        return slots(root).install(opened, hardware=HARDWARE)


def test_a_new_slot_boots_on_trial_and_becomes_primary_when_committed(tmp_path: Path, release_key: DeviceKey) -> None:
    root = tmp_path / "slots"
    store = slots(root)
    assert store.boot() == "a"
    assert install(root, bundle(tmp_path, release_key, version="2.0.0"), release_key) == "b"
    assert store.status()["next_boot"] == "b"
    assert store.boot() == "b"
    assert store.commit() == "b"
    state = store.state()
    assert (state.primary, state.trying, state.slots["b"].state, state.slots["b"].version) == (
        "b",
        None,
        "good",
        "2.0.0",
    )
    assert store.boot() == "b"
    assert store.check_image("b")


def test_a_slot_that_never_commits_is_marked_bad_after_its_tries(tmp_path: Path, release_key: DeviceKey) -> None:
    root = tmp_path / "slots"
    store = slots(root)
    install(root, bundle(tmp_path, release_key), release_key)
    assert [store.boot() for _ in range(4)] == ["b", "b", "b", "a"]
    state = store.state()
    assert state.trying is None
    assert state.slots["b"].state == "bad"
    assert "did not report healthy in 3 boots" in (state.slots["b"].note or "")
    with pytest.raises(UpdateError, match="nothing to roll back to: slot b is bad"):
        store.rollback("operator")


def test_a_second_install_waits_for_the_trial_to_end(tmp_path: Path, release_key: DeviceKey) -> None:
    root = tmp_path / "slots"
    install(root, bundle(tmp_path, release_key, version="2.0.0"), release_key)
    with pytest.raises(UpdateError, match="slot b is still on trial"):
        install(root, bundle(tmp_path, release_key, version="2.1.0"), release_key)


def test_committing_a_trial_that_is_not_running_is_refused(tmp_path: Path, release_key: DeviceKey) -> None:
    root = tmp_path / "slots"
    install(root, bundle(tmp_path, release_key), release_key)
    with pytest.raises(UpdateError, match="slot b is on trial but slot None is running"):
        slots(root).commit()


def test_after_a_commit_rollback_returns_to_the_previous_good_slot(tmp_path: Path, release_key: DeviceKey) -> None:
    root = tmp_path / "slots"
    store = slots(root)
    install(root, bundle(tmp_path, release_key), release_key)
    store.boot()
    store.commit()
    assert store.rollback("operator") == "a"
    assert store.boot() == "a"


# -- the health check decides, through the command line -------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def arm(tmp_path: Path, key: DeviceKey) -> Path:
    root = tmp_path / "slots"
    install(root, bundle(tmp_path, key), key)
    slots(root).boot()
    return root


async def test_a_healthy_gateway_commits_the_trial(
    tmp_path: Path, release_key: DeviceKey, capsys: pytest.CaptureFixture[str]
) -> None:
    root = arm(tmp_path, release_key)
    site = counting_site(tmp_path / "state", counting_device("dev1", "pump1/flow"))
    async with Gateway.running(site, clock=SystemClock(), plugins=counting_plugins()) as gateway:
        url = f"{gateway.http_url}/healthz"
        code, out = await asyncio.to_thread(
            cli, capsys, "update", "commit", "--slots", str(root), "--health-url", url, "--deadline", "5"
        )
    assert (code, out) == (0, {"committed": "b"})
    assert slots(root).state().primary == "b"


async def test_a_gateway_that_answers_unhealthy_rolls_the_trial_back(
    tmp_path: Path, release_key: DeviceKey, capsys: pytest.CaptureFixture[str]
) -> None:
    root = arm(tmp_path, release_key)
    site = counting_site(tmp_path / "state", counting_device("dev1", "pump1/flow"))
    site = msgspec.structs.replace(site, journal=JournalConfig(max_bytes=1024))  # full from the start: /healthz 503
    async with Gateway.running(site, clock=SystemClock(), plugins=counting_plugins()) as gateway:
        url = f"{gateway.http_url}/healthz"
        code, out = await asyncio.to_thread(
            cli, capsys, "update", "commit", "--slots", str(root), "--health-url", url, "--deadline", "1"
        )
    assert code == 1
    assert out["rolled_back"] == "b"
    assert "HTTP 503" in str(out["reason"])
    assert "journal is full" in str(out["reason"])
    state = slots(root).state()
    assert (state.primary, state.trying, state.slots["b"].state) == ("a", None, "bad")
    assert "journal is full" in str(state.slots["b"].note)
    assert slots(root).boot() == "a"


def test_an_unreachable_gateway_rolls_the_trial_back(
    tmp_path: Path, release_key: DeviceKey, capsys: pytest.CaptureFixture[str]
) -> None:
    root = arm(tmp_path, release_key)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    code = main(
        [
            "update",
            "commit",
            "--slots",
            str(root),
            "--health-url",
            f"http://127.0.0.1:{port}/healthz",
            "--deadline",
            "0.6",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert time.monotonic() - started < 3
    assert "slot b rolled back" in captured.err
    assert "not healthy within 0.6 s: unreachable" in captured.err
    state = slots(root).state()
    assert (state.primary, state.trying, state.slots["b"].state) == ("a", None, "bad")
    assert slots(root).boot() == "a"


# -- power cut: kill -9 of a real apply in the middle of writing the image -------------------------


def test_kill_9_while_writing_the_image_leaves_the_primary_bootable(tmp_path: Path, release_key: DeviceKey) -> None:
    root = tmp_path / "slots"
    store = slots(root)
    install(root, bundle(tmp_path, release_key, version="2.0.0"), release_key)
    store.boot()
    store.commit()  # b is primary with a recorded image; the next install writes slot a
    path = bundle(tmp_path, release_key, version="3.0.0", size=8 << 20)
    data = path.read_bytes()
    fifo = tmp_path / "bundle.fifo"
    os.mkfifo(fifo)
    child = subprocess.Popen(
        [sys.executable, "-m", "avila_edge.cli", "update", "apply", str(fifo), "--slots", str(root),
         "--key", release_key.verifier.text(), "--hardware", HARDWARE],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    partial = root / "a" / ".image.new"
    try:
        with fifo.open("wb") as pipe:
            pipe.write(data[: len(data) // 2])  # the manifest and about half the image
            pipe.flush()
            deadline = time.monotonic() + 10
            while not (partial.exists() and partial.stat().st_size >= 2 << 20):
                assert time.monotonic() < deadline, "the image write never started"
                assert child.poll() is None, child.stderr.read() if child.stderr else ""
                time.sleep(0.01)
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    state = store.state()
    assert (state.primary, state.trying, state.slots["a"].state) == ("b", None, "writing")
    assert store.boot() == "b"
    assert store.check_image("b")
    # the interrupted install is simply done again
    with open_bundle(path, [release_key.verifier]) as opened:
        assert store.install(opened, hardware=HARDWARE) == "a"
    assert store.boot() == "a"
    assert store.check_image("a")
    assert not partial.exists()
