"""A/B slots: install into the inactive slot, boot it a counted number of times, commit or roll back.

The boot state is what a bootloader keeps (grub environment, U-Boot variables, RAUC's status)::

    primary     the slot that boots when nothing is being tried ("a" or "b")
    trying      the slot installed but not yet committed, or None
    tries_left  boots of ``trying`` left; at 0 the next boot marks it bad and boots ``primary``
    booted      the slot the last boot chose

Every change is one atomic write of the state (``SlotBackend.save``), and the image is written
beside the slot and renamed into place, so a power cut at any moment leaves ``primary`` bootable:
before the final state write the old state stands, after it the new one does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

from avila_edge.update._bundle import OpenBundle, image_digest
from avila_edge.update._manifest import UpdateError, check_fits

SLOTS = ("a", "b")
MAX_TRIES = 3
"""Boots a new slot gets to report healthy before the bootloader rolls back."""

SlotState = Literal["empty", "writing", "installed", "good", "bad"]


class SlotInfo(msgspec.Struct):
    """What one slot holds: ``version`` and image ``sha256``, and whether it is trusted to boot."""

    state: SlotState = "empty"
    version: str | None = None
    sha256: str | None = None
    note: str | None = None


class BootState(msgspec.Struct):
    primary: str = "a"
    trying: str | None = None
    tries_left: int = 0
    booted: str | None = None
    slots: dict[str, SlotInfo] = msgspec.field(default_factory=dict)

    def slot(self, name: str) -> SlotInfo:
        return self.slots.setdefault(name, SlotInfo())


class SlotBackend(Protocol):
    """Where slots and the boot state live. ``DirectoryBackend`` is the one shipped; a RAUC, U-Boot
    or grub-env backend maps the same four operations (see docs/updates.md)."""

    name: str

    def load(self) -> BootState | None:
        """The saved boot state, or None before the first save."""

    def save(self, state: BootState) -> None:
        """Replace the boot state atomically and durably."""

    def write_image(self, slot: str, fill: Callable[[Callable[[bytes], object]], None]) -> None:
        """Replace ``slot``'s image with what ``fill`` writes, atomically; on error the old one stays."""

    def image_path(self, slot: str) -> Path:
        """Where ``slot``'s image is (for status and for the boot step that uses it)."""


class DirectoryBackend:
    """Slots as files: ``ROOT/boot-state.json``, ``ROOT/a/image``, ``ROOT/b/image``."""

    name = "directory"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_file = root / "boot-state.json"

    def load(self) -> BootState | None:
        try:
            raw = self.state_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UpdateError(f"boot state {self.state_file} cannot be read: {exc.strerror or exc}") from exc
        try:
            return msgspec.json.decode(raw, type=BootState)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise UpdateError(f"boot state {self.state_file} is damaged: {exc}") from exc

    def save(self, state: BootState) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = msgspec.json.format(msgspec.json.encode(state)) + b"\n"

        def fill(write: Callable[[bytes], object]) -> None:
            write(text)

        _replace(self.state_file, fill)

    def write_image(self, slot: str, fill: Callable[[Callable[[bytes], object]], None]) -> None:
        folder = self.root / slot
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _replace(self.image_path(slot), fill)

    def image_path(self, slot: str) -> Path:
        return self.root / slot / "image"


def _replace(path: Path, fill: Callable[[Callable[[bytes], object]], None]) -> None:
    """Write ``path`` through a temporary file, fsync, rename, fsync the folder."""
    temp = path.with_name(f".{path.name}.new")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f.write)
            f.flush()
            os.fsync(f.fileno())
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Slots:
    """The A/B logic over a ``SlotBackend``; ``installed`` is the version of a factory-fresh slot a."""

    def __init__(self, backend: SlotBackend, *, installed: str, max_tries: int = MAX_TRIES) -> None:
        if max_tries < 1:
            raise UpdateError(f"max_tries must be at least 1, not {max_tries}")
        self.backend = backend
        self.max_tries = max_tries
        self._installed = installed

    def state(self) -> BootState:
        state = self.backend.load()
        if state is None:  # the factory image: slot a holds what is installed and is trusted
            state = BootState(slots={"a": SlotInfo(state="good", version=self._installed), "b": SlotInfo()})
        return state

    def status(self) -> dict[str, Any]:
        state = self.state()
        report: dict[str, Any] = json.loads(msgspec.json.encode(state))
        report["backend"] = self.backend.name
        report["next_boot"] = _next_boot(state)
        for name in SLOTS:
            report["slots"].setdefault(name, {"state": "empty"})["image"] = str(self.backend.image_path(name))
        return report

    def install(self, bundle: OpenBundle, *, hardware: str, force: bool = False) -> str:
        """Write ``bundle`` into the inactive slot and arm it for ``max_tries`` boots; return the slot."""
        state = self.state()
        if state.trying is not None:
            raise UpdateError(
                f"slot {state.trying} is still on trial (version {state.slot(state.trying).version}); "
                "commit or roll back first"
            )
        primary = state.slot(state.primary)
        check_fits(bundle.manifest, hardware=hardware, installed=primary.version, force=force, where=bundle.where)
        target = _other(state.primary)
        state.slots[target] = SlotInfo(state="writing", version=bundle.manifest.version)
        self.backend.save(state)  # a cut from here on leaves the target marked unfinished
        try:
            self.backend.write_image(target, bundle.copy_image)
        except UpdateError as exc:
            state.slots[target] = SlotInfo(state="bad", version=bundle.manifest.version, note=str(exc))
            self.backend.save(state)
            raise
        except OSError as exc:
            state.slots[target] = SlotInfo(state="bad", version=bundle.manifest.version, note=str(exc))
            self.backend.save(state)
            raise UpdateError(f"slot {target}: image cannot be written: {exc.strerror or exc}") from exc
        state.slots[target] = SlotInfo(
            state="installed", version=bundle.manifest.version, sha256=bundle.manifest.image.sha256
        )
        state.trying, state.tries_left = target, self.max_tries
        self.backend.save(state)
        return target

    def boot(self) -> str:
        """The bootloader's step: pick the slot to boot now and count the attempt; return the slot."""
        state = self.state()
        if state.trying is not None and state.tries_left > 0:
            state.tries_left -= 1
            state.booted = state.trying
        else:
            if state.trying is not None:
                info = state.slot(state.trying)
                info.state, info.note = "bad", f"did not report healthy in {self.max_tries} boots"
                state.trying = None
            state.booted = state.primary
        self.backend.save(state)
        return state.booted

    def commit(self) -> str:
        """Make the slot on trial, which must be the one booted, the primary; return it."""
        state = self.state()
        if state.trying is None:
            return state.primary
        if state.booted != state.trying:
            raise UpdateError(
                f"slot {state.trying} is on trial but slot {state.booted} is running: boot slot "
                f"{state.trying} before committing it"
            )
        state.primary = state.trying
        state.slot(state.trying).state = "good"
        state.trying, state.tries_left = None, 0
        self.backend.save(state)
        return state.primary

    def rollback(self, reason: str) -> str:
        """Drop the slot on trial (marked bad with ``reason``), or with none on trial go back to the other
        good slot; return the slot the next boot uses."""
        state = self.state()
        if state.trying is not None:
            info = state.slot(state.trying)
            info.state, info.note = "bad", reason
            state.trying, state.tries_left = None, 0
        else:
            other = _other(state.primary)
            if state.slot(other).state != "good":
                raise UpdateError(f"nothing to roll back to: slot {other} is {state.slot(other).state}")
            state.primary = other
        self.backend.save(state)
        return state.primary

    def check_image(self, slot: str) -> bool:
        """Whether ``slot``'s image is the one its boot state records (False for an unrecorded image)."""
        info = self.state().slot(slot)
        path = self.backend.image_path(slot)
        if info.sha256 is None or not path.exists():
            return False
        return image_digest(path).sha256 == info.sha256


def _other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def _next_boot(state: BootState) -> str:
    return state.trying if state.trying is not None and state.tries_left > 0 else state.primary
