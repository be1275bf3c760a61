"""``avila-edge update keygen | sign | verify | apply | boot | status | commit | rollback``.

JSON on stdout, problems on stderr, exit 1 on any refusal. The device side reads its trusted
release keys from ``/etc/avila-edge/update-keys`` (one verifier key a line), its hardware
compatible string from ``/etc/avila-edge/hardware`` and keeps its slots in
``/var/lib/avila-edge-update``; each can be named on the command line instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import avila_edge
from avila_edge.audit import DeviceKey, Verifier
from avila_edge.update._bundle import make_bundle, open_bundle
from avila_edge.update._health import DEFAULT_URL, wait_healthy
from avila_edge.update._manifest import UpdateError, check_fits, read_trusted
from avila_edge.update._slots import MAX_TRIES, DirectoryBackend, Slots

DEFAULT_SLOTS = Path("/var/lib/avila-edge-update")
DEFAULT_KEYS = Path("/etc/avila-edge/update-keys")
DEFAULT_HARDWARE = Path("/etc/avila-edge/hardware")
RELEASE_KEY_NAME = "avila-edge-release"


def _print(value: dict[str, Any]) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UpdateError(f"{what} {path} cannot be read: {exc}") from exc


def _trusted(args: argparse.Namespace) -> list[Verifier]:
    if args.key:
        return read_trusted("\n".join(args.key), where="--key")
    return read_trusted(_read(args.keys, "trusted keys file"), where=str(args.keys))


def _hardware(args: argparse.Namespace) -> str:
    if args.hardware:
        return str(args.hardware)
    text = _read(args.hardware_file, "hardware file").strip()
    if not text:
        raise UpdateError(f"hardware file {args.hardware_file} is empty")
    return text


def _slots(args: argparse.Namespace) -> Slots:
    return Slots(DirectoryBackend(args.slots), installed=avila_edge.__version__, max_tries=args.max_tries)


def _keygen(args: argparse.Namespace) -> int:
    if args.out.exists():
        raise UpdateError(f"{args.out} exists; a release key is never overwritten")
    key = DeviceKey.load_or_create(args.out, name=args.name)
    public = args.out.with_name(args.out.name + ".pub")
    public.write_text(key.verifier.text() + "\n", encoding="utf-8")
    _print({"key": str(args.out), "verifier_key": key.verifier.text(), "verifier_file": str(public)})
    return 0


def _sign(args: argparse.Namespace) -> int:
    from avila_edge.core import AuditError  # noqa: PLC0415

    try:
        key = DeviceKey.load(args.key_file, name=args.name)
    except AuditError as exc:
        raise UpdateError(str(exc)) from exc
    manifest = make_bundle(args.image, args.out, version=args.version, hardware=args.hardware, key=key)
    _print({"bundle": str(args.out), "version": manifest.version, "hardware": list(manifest.hardware),
            "sha256": manifest.image.sha256, "size": manifest.image.size, "signer": key.verifier.text()})  # fmt: skip
    return 0


def _verify(args: argparse.Namespace) -> int:
    with open_bundle(args.bundle, _trusted(args)) as bundle:
        if args.hardware or args.hardware_file.exists():
            check_fits(bundle.manifest, hardware=_hardware(args), installed=None, force=True, where=bundle.where)
        bundle.copy_image(lambda chunk: None)
        _print({"bundle": str(args.bundle), "version": bundle.manifest.version, "signer": bundle.signer.text(),
                "hardware": list(bundle.manifest.hardware), "sha256": bundle.manifest.image.sha256})  # fmt: skip
    return 0


def _apply(args: argparse.Namespace) -> int:
    slots = _slots(args)
    with open_bundle(args.bundle, _trusted(args)) as bundle:
        target = slots.install(bundle, hardware=_hardware(args), force=args.force)
        version = bundle.manifest.version
    _print({"slot": target, "version": version, "tries": slots.max_tries,
            "next": "reboot; then 'avila-edge update commit' once the gateway is healthy"})  # fmt: skip
    return 0


def _boot(args: argparse.Namespace) -> int:
    slots = _slots(args)
    booted = slots.boot()
    _print({"booted": booted, "image": str(slots.backend.image_path(booted))})
    return 0


def _status(args: argparse.Namespace) -> int:
    _print(_slots(args).status())
    return 0


def _commit(args: argparse.Namespace) -> int:
    slots = _slots(args)
    state = slots.state()
    if state.trying is None:
        _print({"committed": state.primary, "note": "nothing on trial"})
        return 0
    if state.booted == state.trying and not args.no_health_check:
        problem = wait_healthy(args.health_url, deadline=args.deadline)
        if problem is not None:
            primary = slots.rollback(problem)
            print(f"avila-edge update: slot {state.trying} rolled back: {problem}", file=sys.stderr)
            _print({"rolled_back": state.trying, "next_boot": primary, "reason": problem})
            return 1
    _print({"committed": slots.commit()})
    return 0


def _rollback(args: argparse.Namespace) -> int:
    slots = _slots(args)
    _print({"next_boot": slots.rollback(args.reason)})
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``update`` command group to the ``avila-edge`` parser."""
    update = sub.add_parser("update", help="signed A/B updates: keys, bundles, slots, commit and rollback")
    commands = update.add_subparsers(title="update commands", metavar="COMMAND")

    def device(parser: argparse.ArgumentParser, *, slots: bool = True, keys: bool = False) -> None:
        if slots:
            parser.add_argument("--slots", type=Path, default=DEFAULT_SLOTS, help=f"slot store ({DEFAULT_SLOTS})")
            parser.add_argument("--max-tries", type=int, default=MAX_TRIES, help="boots a new slot gets (default 3)")
        if keys:
            parser.add_argument("--keys", type=Path, default=DEFAULT_KEYS, help=f"trusted keys ({DEFAULT_KEYS})")
            parser.add_argument("--key", action="append", help="a trusted verifier key (instead of --keys)")
            parser.add_argument("--hardware", help="this device's compatible string")
            parser.add_argument("--hardware-file", type=Path, default=DEFAULT_HARDWARE, help="file holding it")

    keygen = commands.add_parser("keygen", help="make a release signing key and its verifier key (.pub)")
    keygen.add_argument("--out", type=Path, required=True)
    keygen.add_argument("--name", default=RELEASE_KEY_NAME)
    keygen.set_defaults(handler=_keygen)

    sign = commands.add_parser("sign", help="make a signed bundle from a slot image")
    sign.add_argument("--key-file", type=Path, required=True, help="release key (PEM, mode 0600)")
    sign.add_argument("--name", default=RELEASE_KEY_NAME)
    sign.add_argument("--version", default=avila_edge.__version__)
    sign.add_argument("--hardware", action="append", required=True, help="compatible string (repeat for more)")
    sign.add_argument("--image", type=Path, required=True)
    sign.add_argument("--out", type=Path, required=True)
    sign.set_defaults(handler=_sign)

    verify = commands.add_parser("verify", help="check a bundle's signature, hardware and image hash")
    verify.add_argument("bundle")
    device(verify, slots=False, keys=True)
    verify.set_defaults(handler=_verify)

    apply = commands.add_parser("apply", help="verify BUNDLE and install it into the inactive slot on trial")
    apply.add_argument("bundle", help="bundle file, or - for standard input")
    apply.add_argument("--force", action="store_true", help="allow a downgrade")
    device(apply, keys=True)
    apply.set_defaults(handler=_apply)

    boot = commands.add_parser("boot", help="bootloader step: choose the slot to boot and count the attempt")
    device(boot)
    boot.set_defaults(handler=_boot)

    status = commands.add_parser("status", help="slots, versions and what boots next")
    device(status)
    status.set_defaults(handler=_status)

    commit = commands.add_parser("commit", help="commit the slot on trial if the gateway is healthy, else roll back")
    device(commit)
    commit.add_argument("--health-url", default=DEFAULT_URL, help=f"default {DEFAULT_URL}")
    commit.add_argument("--deadline", type=float, default=120.0, help="seconds to wait for healthy (default 120)")
    commit.add_argument("--no-health-check", action="store_true", help="commit without asking the gateway")
    commit.set_defaults(handler=_commit)

    rollback = commands.add_parser("rollback", help="drop the slot on trial, or go back to the previous good slot")
    device(rollback)
    rollback.add_argument("--reason", default="rolled back by the operator")
    rollback.set_defaults(handler=_rollback)
