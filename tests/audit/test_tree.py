"""RFC 9162 hashing: roots against the recursive definition and the RFC 6962 reference vectors."""

from __future__ import annotations

import hashlib

import pytest

from avila_edge.audit import EMPTY_ROOT, Frontier, leaf_hash, node_hash, root_of
from avila_edge.audit._tree import consistency_ranges, decompose, fold_right, inclusion_ranges, perfect_root

# The eight leaves and roots of the RFC 6962 reference tests (certificate-transparency, transparency-dev/merkle).
REFERENCE_LEAVES = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
REFERENCE_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def mth(entries: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, written straight from the definition."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(entries[:k]) + mth(entries[k:])).digest()


def entries(n: int) -> list[bytes]:
    return [f'{{"seq":{i},"value":{i * 7 % 13}}}'.encode() * (1 + i % 3) for i in range(n)]


def test_roots_for_every_size_from_1_to_257_equal_the_recursive_rfc9162_definition() -> None:
    data = entries(257)
    frontier = Frontier()
    for n in range(1, 258):
        frontier.append(leaf_hash(data[n - 1]))
        assert frontier.root() == mth(data[:n]), f"size {n}"
        assert frontier.size == n


def test_the_empty_tree_hashes_to_sha256_of_nothing() -> None:
    assert Frontier().root() == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert root_of([]) == EMPTY_ROOT


@pytest.mark.parametrize("n", range(1, 9))
def test_roots_match_the_rfc6962_reference_vectors(n: int) -> None:
    leaves = [leaf_hash(bytes.fromhex(x)) for x in REFERENCE_LEAVES[:n]]
    assert root_of(leaves).hex() == REFERENCE_ROOTS[n - 1]


def test_leaf_and_node_hashes_carry_the_domain_separation_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    assert leaf_hash(b"") != hashlib.sha256(b"").digest()


def test_frontier_reports_each_completed_subtree_with_its_coordinates() -> None:
    data = entries(64)
    frontier = Frontier()
    seen: dict[tuple[int, int], bytes] = {}
    for e in data:
        for level, index, h in frontier.append(leaf_hash(e)):
            seen[(level, index)] = h
    for (level, index), h in seen.items():
        assert h == mth(data[index << level : (index + 1) << level])
    assert len(seen) == 127  # 64 leaves + 63 inner nodes of a complete tree


def test_a_frontier_rebuilt_from_its_subtrees_continues_like_the_original() -> None:
    data = entries(100)
    original = Frontier()
    for e in data[:77]:
        original.append(leaf_hash(e))
    nodes = [mth(data[i << lvl : (i + 1) << lvl]) for lvl, i in Frontier.coords(77)]
    rebuilt = Frontier(77, nodes)
    for e in data[77:]:
        original.append(leaf_hash(e))
        rebuilt.append(leaf_hash(e))
    assert rebuilt.root() == original.root() == mth(data)
    with pytest.raises(ValueError, match="right-edge nodes"):
        Frontier(77, nodes[:-1])


def test_any_node_is_the_right_fold_of_its_complete_subtrees() -> None:
    data = entries(300)
    for start, end in [(0, 300), (256, 300), (288, 300), (0, 5), (4, 7), (64, 100)]:
        hashes = [mth(data[i << lvl : (i + 1) << lvl]) for lvl, i in decompose(start, end)]
        assert fold_right(hashes) == mth(data[start:end])
    with pytest.raises(ValueError, match="not a node"):
        decompose(3, 7)
    assert perfect_root([leaf_hash(e) for e in data[:8]]) == mth(data[:8])
    with pytest.raises(ValueError, match="not a complete subtree"):
        perfect_root([leaf_hash(e) for e in data[:6]])


def test_proof_shapes_refuse_impossible_arguments() -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_ranges(5, 5)
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_ranges(0, 5)
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_ranges(6, 5)
    assert consistency_ranges(5, 5) == []
    assert inclusion_ranges(0, 1) == []


def test_extend_keeps_the_same_tree_and_reports_the_subtrees_of_every_fourth_level() -> None:
    hashes = [leaf_hash(e) for e in entries(300)]
    one_by_one, batched = Frontier(), Frontier()
    expected = [c for h in hashes for c in one_by_one.append(h) if c[0] and c[0] % 4 == 0]
    reported = batched.extend(hashes[:77], every=4) + batched.extend(hashes[77:], every=4)
    assert reported == expected
    assert [c[:2] for c in reported] == [(4, i) for i in range(16)] + [(8, 0), (4, 16), (4, 17)]
    assert batched.root() == one_by_one.root() == mth(entries(300))
