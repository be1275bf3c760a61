"""Proofs served from the stored hashes verify with a verifier written here from RFC 9162, and fail
when any bit of a proof hash, the index or a size is changed."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avila_edge.audit import HashStore, verify_consistency, verify_inclusion
from avila_edge.audit._store import SCHEMA
from avila_edge.audit._tree import Frontier, leaf_hash

LEAVES = 1500  # deep enough for stored levels 0, 4 and 8 and folded levels between them


# -- an independent verifier, straight from the pseudo-code of RFC 9162 §2.1.3.2 and §2.1.4.2 ---------


def _h(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def rfc_verify_inclusion(
    leaf_index: int, tree_size: int, entry_hash: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    if leaf_index >= tree_size:
        return False
    fn, sn = leaf_index, tree_size - 1
    r = entry_hash
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = _h(b"\x01", p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            r = _h(b"\x01", r, p)
        fn //= 2
        sn //= 2
    return sn == 0 and r == root


def rfc_verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, path: Sequence[bytes]
) -> bool:
    if first == second:
        return len(path) == 0 and first_hash == second_hash
    if len(path) == 0 or first == 0 or first > second:
        return False
    path = list(path)
    if first & (first - 1) == 0:
        path = [first_hash, *path]
    fn, sn = first - 1, second - 1
    if fn % 2 == 1:
        while fn % 2 == 1:
            fn //= 2
            sn //= 2
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = _h(b"\x01", c, fr)
            sr = _h(b"\x01", c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            sr = _h(b"\x01", sr, c)
        fn //= 2
        sn //= 2
    return fr == first_hash and sr == second_hash and sn == 0


def mth(hashes: Sequence[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return _h(b"\x01", mth(hashes[:k]), mth(hashes[k:]))


def inclusion_shape(leaf_index: int, tree_size: int, length: int) -> tuple[str, ...] | None:
    """The left/right decisions the §2.1.3.2 loop takes for a path of ``length`` (None: it fails by shape).

    The hashes the verifier computes depend only on these decisions: two sizes with the same shape
    accept the same proof and root, which is why the size must come from a signed checkpoint."""
    if leaf_index >= tree_size:
        return None
    fn, sn, steps = leaf_index, tree_size - 1, []
    for _ in range(length):
        if sn == 0:
            return None
        if fn % 2 == 1 or fn == sn:
            steps.append("L")
            while fn % 2 == 0 and fn != 0:
                fn //= 2
                sn //= 2
        else:
            steps.append("R")
        fn //= 2
        sn //= 2
    return tuple(steps) if sn == 0 else None


def consistency_shape(first: int, second: int, length: int) -> tuple[str, ...] | None:
    """The same for the §2.1.4.2 loop."""
    if first == second or length == 0 or first == 0 or first > second:
        return None
    power = first & (first - 1) == 0
    fn, sn, steps = first - 1, second - 1, ["P" if power else "-"]
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    for _ in range(length + power - 1):
        if sn == 0:
            return None
        if fn % 2 == 1 or fn == sn:
            steps.append("B")
            while fn % 2 == 0 and fn != 0:
                fn //= 2
                sn //= 2
        else:
            steps.append("S")
        fn //= 2
        sn //= 2
    return tuple(steps) if sn == 0 else None


# -- a store on disk ------------------------------------------------------------------------------------


class Tree:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.executescript(SCHEMA)
        self.store = HashStore(self.conn)
        self.leaves = [leaf_hash(f"entry {i}".encode()) for i in range(LEAVES)]
        frontier = Frontier()
        self.conn.execute("BEGIN")
        for start in range(0, LEAVES, 100):  # appended in commits of 100, like the journal does
            self.store.append(frontier, list(enumerate(self.leaves))[start : start + 100])
        self.conn.execute("COMMIT")
        self._roots: dict[int, bytes] = {}

    def root(self, size: int) -> bytes:
        if size not in self._roots:
            self._roots[size] = mth(self.leaves[:size])
        return self._roots[size]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    t = Tree(tmp_path_factory.mktemp("tree") / "tree.sqlite3")
    yield t
    t.conn.close()


def flips(value: bytes) -> Iterator[bytes]:
    for i in range(len(value) * 8):
        b = bytearray(value)
        b[i // 8] ^= 1 << (i % 8)
        yield bytes(b)


def int_flips(value: int) -> Iterator[int]:
    for bit in range(value.bit_length() + 2):
        yield value ^ (1 << bit)


# -- tests ----------------------------------------------------------------------------------------------


def test_the_store_keeps_every_leaf_hash_and_every_fourth_level_of_subtrees(tree: Tree) -> None:
    blocks = tree.conn.execute("SELECT COUNT(*), SUM(length(hashes)) FROM audit_leaves").fetchone()
    nodes = tree.conn.execute("SELECT level, COUNT(*) FROM audit_node GROUP BY level").fetchall()
    assert blocks == (-(-LEAVES // 16), LEAVES * 32)  # 16 leaf hashes to a row
    assert tree.store.size() == LEAVES
    assert tree.store.leaves(0, LEAVES) == list(enumerate(tree.leaves))
    assert dict(nodes) == {4: LEAVES // 16, 8: LEAVES // 256}
    assert tree.store.root(LEAVES) == tree.root(LEAVES)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_inclusion_proofs_verify_with_the_independent_verifier(tree: Tree, data: st.DataObject) -> None:
    size = data.draw(st.integers(1, LEAVES), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = tree.store.inclusion_proof(index, size)
    assert rfc_verify_inclusion(index, size, tree.leaves[index], proof, tree.root(size))
    assert verify_inclusion(index, size, tree.leaves[index], proof, tree.root(size))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_consistency_proofs_verify_with_the_independent_verifier(tree: Tree, data: st.DataObject) -> None:
    second = data.draw(st.integers(1, LEAVES), label="second")
    first = data.draw(st.integers(1, second), label="first")
    proof = tree.store.consistency_proof(first, second)
    assert rfc_verify_consistency(first, second, tree.root(first), tree.root(second), proof)
    assert verify_consistency(first, second, tree.root(first), tree.root(second), proof)


@pytest.mark.parametrize(("index", "size"), [(0, 1), (0, 2), (5, 8), (6, 7), (1000, 1500), (1499, 1500), (255, 256)])
def test_a_flipped_bit_in_any_inclusion_proof_hash_index_or_size_fails_unless_the_size_keeps_the_path(
    tree: Tree, index: int, size: int
) -> None:
    leaf, root = tree.leaves[index], tree.root(size)
    proof = tree.store.inclusion_proof(index, size)
    assert rfc_verify_inclusion(index, size, leaf, proof, root)
    for i, h in enumerate(proof):
        for bad in flips(h):
            forged = [*proof[:i], bad, *proof[i + 1 :]]
            assert not rfc_verify_inclusion(index, size, leaf, forged, root)
            assert not verify_inclusion(index, size, leaf, forged, root)
    for bad_index in int_flips(index):
        assert not rfc_verify_inclusion(bad_index, size, leaf, proof, root), bad_index
        assert not verify_inclusion(bad_index, size, leaf, proof, root), bad_index
    shape = inclusion_shape(index, size, len(proof))
    for bad_size in int_flips(size):
        # RFC 9162 roots do not commit to the size: a size that leads the verifier along the same path
        # accepts the same proof. Every other size fails; the signed checkpoint binds the real one.
        same_path = inclusion_shape(index, bad_size, len(proof)) == shape
        assert rfc_verify_inclusion(index, bad_size, leaf, proof, root) == same_path, bad_size
        assert verify_inclusion(index, bad_size, leaf, proof, root) == same_path, bad_size
    for bad in flips(leaf):
        assert not verify_inclusion(index, size, bad, proof, root)
    assert not verify_inclusion(index, size, leaf, [*proof, proof[0]] if proof else [leaf], root)
    if proof:
        assert not verify_inclusion(index, size, leaf, proof[:-1], root)


@pytest.mark.parametrize(("first", "second"), [(1, 2), (3, 7), (4, 8), (6, 8), (100, 1500), (1024, 1500), (777, 1024)])
def test_a_flipped_bit_in_any_consistency_proof_hash_or_size_fails_unless_the_size_keeps_the_path(
    tree: Tree, first: int, second: int
) -> None:
    old, new = tree.root(first), tree.root(second)
    proof = tree.store.consistency_proof(first, second)
    assert rfc_verify_consistency(first, second, old, new, proof)
    for i, h in enumerate(proof):
        for bad in flips(h):
            forged = [*proof[:i], bad, *proof[i + 1 :]]
            assert not rfc_verify_consistency(first, second, old, new, forged)
            assert not verify_consistency(first, second, old, new, forged)
    shape = consistency_shape(first, second, len(proof))
    for bad_first, bad_second in [*((f, second) for f in int_flips(first)), *((first, s) for s in int_flips(second))]:
        same_path = consistency_shape(bad_first, bad_second, len(proof)) == shape  # see the inclusion test
        assert rfc_verify_consistency(bad_first, bad_second, old, new, proof) == same_path, (bad_first, bad_second)
        assert verify_consistency(bad_first, bad_second, old, new, proof) == same_path, (bad_first, bad_second)
    assert not verify_consistency(first, second, old, new, [])
    assert not verify_consistency(first, second, new, old, proof)


def test_proofs_match_the_rfc6962_reference_vectors(tmp_path: Path) -> None:
    # The eight reference leaves; the proofs of certificate-transparency's and transparency-dev's tests.
    leaves = [
        leaf_hash(bytes.fromhex(x))
        for x in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
    ]
    conn = sqlite3.connect(tmp_path / "ref.sqlite3", isolation_level=None)
    conn.executescript(SCHEMA)
    store = HashStore(conn)
    store.append(Frontier(), list(enumerate(leaves)))
    a = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
    b = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
    c = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"
    d = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"
    e = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"
    f = "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"
    g = "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"
    r1 = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    r2 = "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"
    assert [h.hex() for h in store.inclusion_proof(0, 8)] == [a, b, c]
    assert [h.hex() for h in store.inclusion_proof(5, 8)] == [d, e, f]
    assert [h.hex() for h in store.inclusion_proof(2, 3)] == [r2]
    assert [h.hex() for h in store.inclusion_proof(1, 5)] == [r1, b, d]
    assert [h.hex() for h in store.consistency_proof(1, 8)] == [a, b, c]
    assert [h.hex() for h in store.consistency_proof(6, 8)] == [g, e, f]
    assert [h.hex() for h in store.consistency_proof(2, 5)] == [b, d]
    assert store.consistency_proof(1, 1) == []
    conn.close()
