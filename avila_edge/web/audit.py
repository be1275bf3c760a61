"""Audit routes: the latest signed checkpoint, an entry's inclusion proof, and checking a proof.

Proofs come from ``avila_edge.audit.prove_entry`` (checked server-side before they are returned);
``POST /api/audit/verify`` checks a proof with the audit package's own functions, so an auditor can
hand back a downloaded file and see it hold, or see a tampered one fail with the reason.
"""

from __future__ import annotations

import asyncio
import binascii
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from avila_edge.audit import Verifier, leaf_hash, open_checkpoint, prove_entry, verifier_keys, verify_inclusion
from avila_edge.core import AuditError
from avila_edge.web.routing import GATEWAY, BadRequest, Operation, Param, json_body, problem, reply

if TYPE_CHECKING:
    from avila_edge.audit import AuditLog


class CheckpointView(msgspec.Struct, frozen=True):
    origin: str
    tree_size: int
    root_hash: str
    note: str
    public_key: str
    """The C2SP verifier key (``<origin>+<key id>+<base64 Ed25519 key>``) that signs the notes."""


class Proof(msgspec.Struct, frozen=True):
    seq: int
    leaf: str | None
    """The journal entry (hex of its canonical bytes); ``None`` when retention removed it."""
    leaf_hash: str
    tree_size: int
    path: list[str]
    checkpoint: str
    verified: bool = False
    origin: str = ""
    root_hash: str = ""


class Verdict(msgspec.Struct, frozen=True):
    ok: bool
    reason: str


def _log(request: web.Request) -> AuditLog:
    log = request.app[GATEWAY].audit
    if log is None:
        raise BadRequest("the audit log is not running", 404)
    return log


async def checkpoint(request: web.Request) -> web.Response:
    log = _log(request)
    cp = log.last_checkpoint
    if cp is None:
        return problem(404, "no checkpoint is signed yet; the gateway signs one every audit.checkpoint_interval")
    return reply(CheckpointView(log.origin, cp.size, cp.root.hex(), cp.note, log.verifier.text()))


async def proof(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    _log(request)
    try:
        seq = int(request.match_info["seq"])
    except ValueError:
        raise BadRequest(f"seq {request.match_info['seq']!r} is not an integer") from None
    try:
        p = await asyncio.to_thread(prove_entry, g.config.state_dir, seq)
    except AuditError as exc:
        return problem(404, str(exc))
    body = Proof(
        seq=p["seq"],
        leaf=p["entry_hex"],
        leaf_hash=p["leaf_hash"],
        tree_size=p["tree_size"],
        path=p["inclusion_proof"],
        checkpoint=p["checkpoint"],
        verified=True,
        origin=p["origin"],
        root_hash=p["root_hash"]["hex"],
    )
    headers = {}
    if request.query.get("download") in ("1", "true"):
        headers["Content-Disposition"] = f'attachment; filename="avila-proof-{seq}.json"'
    return reply(body, headers=headers)


def check(p: Proof, verifiers: list[Verifier]) -> Verdict:
    """Whether ``p`` proves its entry in its signed checkpoint, and if not, why."""
    try:
        cp = open_checkpoint(p.checkpoint, verifiers)
    except (AuditError, ValueError) as exc:
        return Verdict(False, f"the checkpoint does not verify: {exc}")
    if cp.size != p.tree_size:
        return Verdict(False, f"the checkpoint is of {cp.size} leaves, the proof claims {p.tree_size}")
    if not 0 <= p.seq < p.tree_size:
        return Verdict(False, f"entry {p.seq} is outside a tree of {p.tree_size} leaves")
    try:
        leaf = bytes.fromhex(p.leaf_hash)
        path = [bytes.fromhex(h) for h in p.path]
        entry = None if p.leaf is None else bytes.fromhex(p.leaf)
    except (ValueError, binascii.Error) as exc:
        return Verdict(False, f"a hash is not hex: {exc}")
    if entry is not None and leaf_hash(entry) != leaf:
        return Verdict(False, f"entry {p.seq} does not hash to the leaf hash: the entry was altered")
    try:
        included = verify_inclusion(p.seq, p.tree_size, leaf, path, cp.root)
    except (AuditError, ValueError) as exc:
        return Verdict(False, f"the path cannot be checked: {exc}")
    if not included:
        return Verdict(False, f"the path does not lead from entry {p.seq} to the checkpoint's root hash")
    return Verdict(True, f"entry {p.seq} is in the log {cp.origin} of {cp.size} entries signed by the gateway")


async def verify(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    log = _log(request)
    p = await json_body(request, Proof)
    try:
        keys = await asyncio.to_thread(verifier_keys, g.config.state_dir)
        verifiers = [Verifier.parse(k) for k in keys]
    except AuditError:
        verifiers = []
    verifiers.append(log.verifier)
    return reply(check(p, verifiers))


OPERATIONS = [
    Operation("GET", "/api/audit/checkpoint", checkpoint, "viewer", "The latest signed checkpoint", "audit",
              response=CheckpointView, errors={404: "none signed yet"}),
    Operation("GET", "/api/audit/proof/{seq}", proof, "viewer", "A journal entry with its inclusion proof, "
              "checked against the latest checkpoint covering it", "audit",
              params=(Param("seq", {"type": "integer", "minimum": 0}, "path", "journal seq", required=True),
                      Param("download", {"type": "string", "enum": ["1"]}, description="as a file to save")),
              response=Proof, errors={404: "not in the tree, or no checkpoint covers it yet"}),
    Operation("POST", "/api/audit/verify", verify, "viewer", "Check a proof (the JSON of /api/audit/proof)",
              "audit", body=Proof, response=Verdict, errors={400: "not a proof"}),
]  # fmt: skip
