"""RFC 9162 §2.1 Merkle tree hashing, proofs and their verification. Pure: no I/O, no state but values.

A tree of ``n`` leaves is split at ``k``, the largest power of two smaller than ``n``; its hash is
``SHA-256(0x01 ‖ MTH(D[0:k]) ‖ MTH(D[k:n]))``, a leaf's is ``SHA-256(0x00 ‖ entry)`` and the empty
tree's ``SHA-256()``.

Every node of such a tree is either a *complete subtree* — ``2**level`` leaves starting at a multiple
of ``2**level``, written ``(level, index)`` — or lies on the right edge of the tree. A right-edge range
``[start, end)`` is a chain of complete subtrees of decreasing size (the binary digits of its length)
folded from the right. So any proof is a list of ranges (``inclusion_ranges``,
``consistency_ranges``), each range a list of complete subtrees (``decompose``), and only complete
subtrees ever need to be stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Coord = tuple[int, int]
"""A complete subtree: ``(level, index)`` covers leaves ``index * 2**level`` up to ``(index + 1) * 2**level``."""

Span = tuple[int, int]
"""A range of leaves ``[start, end)`` that is a node of the tree it was cut from."""


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 ‖ entry)``."""
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 ‖ left ‖ right)``."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    if n < 2:
        raise ValueError(f"a tree of {n} leaves has no split point")
    return 1 << ((n - 1).bit_length() - 1)


def decompose(start: int, end: int) -> list[Coord]:
    """The complete subtrees, largest first, whose right fold is the hash of node ``[start, end)``.

    ``[start, end)`` must be a node of some RFC 9162 tree: a complete subtree, or a right-edge range
    whose ``start`` is a multiple of a power of two at least ``end - start``."""
    if not 0 <= start < end:
        raise ValueError(f"[{start}, {end}) is not a range of leaves")
    coords: list[Coord] = []
    position = start
    remaining = end - start
    while remaining:
        level = remaining.bit_length() - 1
        if position % (1 << level):
            raise ValueError(f"[{start}, {end}) is not a node of a Merkle tree")
        coords.append((level, position >> level))
        position += 1 << level
        remaining -= 1 << level
    return coords


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """``H(h0, H(h1, ... H(h[-2], h[-1])))``: the hash of a right-edge range from its complete subtrees."""
    if not hashes:
        raise ValueError("nothing to fold")
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """The hash of a complete subtree from its ``2**k`` children at one level, pairwise."""
    count = len(hashes)
    if count == 0 or count & (count - 1):
        raise ValueError(f"{count} hashes are not a complete subtree")
    row = list(hashes)
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return row[0]


def inclusion_ranges(index: int, size: int) -> list[Span]:
    """The sibling nodes of RFC 9162 §2.1.3.1 ``PATH(index, D[size])``, leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    spans: list[Span] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = split_point(end - start)
        if m < k:
            spans.append((start + k, end))
            end = start + k
        else:
            spans.append((start, start + k))
            start += k
            m -= k
    spans.reverse()
    return spans


def consistency_ranges(first: int, second: int) -> list[Span]:
    """The nodes of RFC 9162 §2.1.4.1 ``PROOF(first, D[second])``, in proof order."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from a tree of {first} leaves to one of {second}")
    spans: list[Span] = []
    start, end, m, whole = 0, second, first, True
    while m != end - start:
        n = end - start
        k = split_point(n)
        if m <= k:
            spans.append((start + k, end))
            end = start + k
        else:
            spans.append((start, start + k))
            start += k
            m -= k
            whole = False
    if not whole:
        spans.append((start, end))
    spans.reverse()
    return spans


def root_of(leaves: Iterable[bytes]) -> bytes:
    """MTH over the given leaf hashes (streaming, O(log n) memory)."""
    frontier = Frontier()
    for h in leaves:
        frontier.append(h)
    return frontier.root()


class Frontier:
    """The right edge of a growing tree: the complete subtrees of ``[0, size)``, largest first.

    ``append`` returns every complete subtree it finished, so a store can persist them."""

    __slots__ = ("_nodes", "size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if len(nodes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} right-edge nodes, not {len(nodes)}")
        self.size = size
        self._nodes = list(nodes)

    @staticmethod
    def coords(size: int) -> list[Coord]:
        """The complete subtrees a frontier of ``size`` leaves holds (``decompose(0, size)``)."""
        return decompose(0, size) if size else []

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return ``(level, index, hash)`` of each complete subtree it completed."""
        completed = [(0, self.size, leaf)]
        node = leaf
        level = 0
        size = self.size
        while size >> level & 1:
            node = node_hash(self._nodes.pop(), node)
            level += 1
            completed.append((level, size >> level, node))
        self._nodes.append(node)
        self.size = size + 1
        return completed

    def append_subtree(self, level: int, node: bytes) -> list[tuple[int, int, bytes]]:
        """Add a complete subtree of ``2**level`` leaves at once (the size must be a multiple of it);
        return ``(level, index, hash)`` of it and of each subtree it completed."""
        size = self.size
        if size % (1 << level):
            raise ValueError(f"a subtree of level {level} cannot start at leaf {size}")
        completed = [(level, size >> level, node)]
        while size >> level & 1:
            node = node_hash(self._nodes.pop(), node)
            level += 1
            completed.append((level, size >> level, node))
        self._nodes.append(node)
        self.size = size + (1 << completed[0][0])
        return completed

    def extend(self, leaves: Iterable[bytes], *, every: int) -> list[tuple[int, int, bytes]]:
        """Add leaf hashes; return the completed subtrees above the leaves whose level is a multiple
        of ``every`` (the same as ``append`` for each, filtered, without its per-leaf lists)."""
        nodes = self._nodes
        sha256 = hashlib.sha256
        kept: list[tuple[int, int, bytes]] = []
        size = self.size
        for leaf in leaves:
            node = leaf
            level = 0
            while size >> level & 1:
                node = sha256(NODE_PREFIX + nodes.pop() + node).digest()
                level += 1
                if level % every == 0:
                    kept.append((level, size >> level, node))
            nodes.append(node)
            size += 1
        self.size = size
        return kept

    @property
    def nodes(self) -> list[bytes]:
        """The right-edge subtree hashes, largest first (what the constructor takes back)."""
        return list(self._nodes)

    def root(self) -> bytes:
        """MTH of the whole tree so far."""
        return fold_right(self._nodes) if self._nodes else EMPTY_ROOT

    def copy(self) -> Frontier:
        return Frontier(self.size, self._nodes)


# -- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) --------------------------------------------------


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` (a leaf hash) at ``index`` of a tree of ``size``.

    Raises ``ValueError`` when the proof cannot belong to that index and size."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ValueError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the inclusion proof is too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows the leaf hash ``leaf`` at ``index`` of the tree of ``size`` with ``root``."""
    try:
        return root_from_inclusion(index, size, leaf, proof) == root
    except ValueError:
        return False


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree of ``second`` leaves with ``second_root`` extends the one of
    ``first`` leaves with ``first_root``."""
    if not 0 < first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the old root is the first node of the path
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
