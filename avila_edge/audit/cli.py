"""``avila-edge audit prove | consistency | verify | pubkey``: JSON on stdout, problems on stderr.

Each command reads a gateway's state directory (``--state-dir DIR``, or ``--config FILE`` for its
``state_dir``) read-only, so it is safe next to a running gateway, and exits 1 on any failure. The
same commands are plain functions (``prove``, ``consistency``, ``verify``, ``pubkey``) for callers
that want the values.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from avila_edge.audit._keys import KEY_FILE, DeviceKey, Verifier
from avila_edge.audit._log import default_origin
from avila_edge.audit._prove import prove_consistency, prove_entry, verifier_keys
from avila_edge.audit._verify import VerifyReport, verify_log
from avila_edge.core import AuditError


def _trusted(key: str | None) -> list[Verifier] | None:
    return None if key is None else [Verifier.parse(key)]


def prove(state_dir: Path, seq: int, *, size: int | None = None, key: str | None = None) -> dict[str, Any]:
    """Inclusion proof of entry ``seq`` (see ``prove_entry``); ``key`` pins the trusted verifier key."""
    return prove_entry(state_dir, seq, size=size, trusted=_trusted(key))


def consistency(state_dir: Path, first: int, second: int, *, key: str | None = None) -> dict[str, Any]:
    """Consistency proof between the checkpoints of ``first`` and ``second`` leaves."""
    return prove_consistency(state_dir, first, second, trusted=_trusted(key))


def verify(state_dir: Path, *, key: str | None = None, checkpoints: Sequence[Path] = ()) -> VerifyReport:
    """Check the whole log (see ``verify_log``); ``checkpoints`` are files of signed notes the
    auditor already holds, which the journal must still extend."""
    notes: list[str] = []
    for path in checkpoints:
        try:
            notes.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditError(f"checkpoint file {path} cannot be read: {exc}") from exc
    return verify_log(state_dir, trusted=_trusted(key), checkpoints=notes)


def pubkey(state_dir: Path, *, origin: str | None = None) -> dict[str, Any]:
    """The verifier key the gateway signs with now, and any it signed with before.

    Read from the journal; before the gateway's first run, derived from the key file and ``origin``."""
    try:
        keys = verifier_keys(state_dir)
    except AuditError:
        path = state_dir / KEY_FILE
        if origin is None or not path.exists():
            raise
        keys = [DeviceKey.load(path, name=origin).verifier.text()]
    current = Verifier.parse(keys[-1])
    return {
        "verifier_key": keys[-1],
        "origin": current.name,
        "key_id": current.key_id.hex(),
        "public_key": current.public.hex(),
        "previous_keys": keys[:-1],
    }


# -- argument parsing -------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``audit`` command group to the ``avila-edge`` parser."""
    audit = sub.add_parser("audit", help="Merkle audit log: inclusion and consistency proofs, verification, key")
    commands = audit.add_subparsers(title="audit commands", metavar="COMMAND")

    p = commands.add_parser("prove", help="inclusion proof of one journal entry against a signed checkpoint")
    _state_args(p)
    p.add_argument("--seq", type=int, required=True, help="the journal seq (leaf index) of the entry")
    p.add_argument("--size", type=int, help="prove against the checkpoint of exactly this many leaves")
    _key_arg(p)
    p.set_defaults(handler=_prove)

    c = commands.add_parser("consistency", help="consistency proof between two signed checkpoints")
    _state_args(c)
    c.add_argument("--from", dest="first", type=int, required=True, help="size of the older checkpoint")
    c.add_argument("--to", dest="second", type=int, required=True, help="size of the newer checkpoint")
    _key_arg(c)
    c.set_defaults(handler=_consistency)

    v = commands.add_parser("verify", help="recompute the tree from the journal and check every checkpoint")
    _state_args(v)
    _key_arg(v)
    v.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="a signed checkpoint you already hold (file); the journal must still extend it (repeatable)",
    )
    v.set_defaults(handler=_verify)

    k = commands.add_parser("pubkey", help="print the gateway's verifier key (C2SP signed-note format)")
    _state_args(k)
    k.set_defaults(handler=_pubkey)


def _state_args(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--state-dir", type=Path, help="the gateway's state directory")
    where.add_argument("--config", type=Path, help="the gateway's configuration (its state_dir is used)")


def _key_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key", help="trust only this verifier key (default: the keys recorded in the journal; see 'audit pubkey')"
    )


def _where(args: argparse.Namespace) -> tuple[Path, str | None]:
    """The state directory and, with --config, the audit origin the configuration implies."""
    if args.config is None:
        return Path(args.state_dir), None
    from avila_edge.config import load_config  # noqa: PLC0415 - only this option needs the config loader

    config = load_config(args.config)
    return config.state_dir, config.audit.origin or default_origin(config.site.id)


def _print(value: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")


def _prove(args: argparse.Namespace) -> int:
    state_dir, _ = _where(args)
    _print(prove(state_dir, args.seq, size=args.size, key=args.key))
    return 0


def _consistency(args: argparse.Namespace) -> int:
    state_dir, _ = _where(args)
    _print(consistency(state_dir, args.first, args.second, key=args.key))
    return 0


def _verify(args: argparse.Namespace) -> int:
    state_dir, _ = _where(args)
    report = verify(state_dir, key=args.key, checkpoints=args.checkpoint)
    _print(report)
    if report.ok:
        return 0
    first = report.problems[0]
    where = f"entry {first.seq}" if first.seq is not None else "the log"
    print(f"avila-edge audit verify: {where}: {first.reason}: {first.detail}", file=sys.stderr)
    if len(report.problems) > 1:
        print(f"({len(report.problems) - 1} more problem(s) in the report on stdout)", file=sys.stderr)
    return 1


def _pubkey(args: argparse.Namespace) -> int:
    state_dir, origin = _where(args)
    _print(pubkey(state_dir, origin=origin))
    return 0
