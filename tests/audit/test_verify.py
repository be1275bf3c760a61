"""``audit verify`` on journals edited behind the gateway's back with sqlite3: every edit is caught and
the first entry that does not match is named, with why.

The state: readings 0..49, the audit_key event 50, checkpoint of 51 leaves at seq 51; readings 52..101,
checkpoint 102 at 102; readings 103..152, checkpoint 153 at 153; readings 154..203, checkpoint 204 at
204; next seq 205."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from avila_edge.audit import Frontier, HashStore, Problem, leaf_hash, verify_log
from avila_edge.audit._store import STRIDE
from avila_edge.cli import main


@pytest.fixture
def state(make_state: Callable[..., Path]) -> Path:
    return make_state()


@pytest.fixture
def sql(state: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(state / "journal.sqlite3", isolation_level=None)
    yield conn
    conn.close()


def set_leaf(sql: sqlite3.Connection, seq: int, h: bytes) -> None:
    """Rewrite the recorded leaf hash of ``seq`` (stored 16 to a row)."""
    block, offset = divmod(seq, 16)
    (hashes,) = sql.execute("SELECT hashes FROM audit_leaves WHERE block = ?", (block,)).fetchone()
    hashes = hashes[: offset * 32] + h + hashes[(offset + 1) * 32 :]
    sql.execute("UPDATE audit_leaves SET hashes = ? WHERE block = ?", (hashes, block))


def cut_leaves(sql: sqlite3.Connection, size: int) -> None:
    """Remove the recorded leaf hashes of seqs ``size`` and above."""
    block, offset = divmod(size, 16)
    sql.execute("DELETE FROM audit_leaves WHERE block > ?", (block,))
    sql.execute("UPDATE audit_leaves SET hashes = substr(hashes, 1, ?) WHERE block = ?", (offset * 32, block))
    sql.execute("DELETE FROM audit_leaves WHERE length(hashes) = 0")


def first_problem(state: Path) -> Problem:
    report = verify_log(state)
    assert not report.ok
    return report.problems[0]


def test_an_untouched_journal_verifies(state: Path) -> None:
    report = verify_log(state)
    assert report.ok, report.problems
    assert (report.tree_size, report.next_seq, report.entries_checked, report.checkpoints_checked) == (205, 205, 205, 4)


def test_a_modified_entry_is_named(state: Path, sql: sqlite3.Connection) -> None:
    sql.execute("UPDATE entry SET body = replace(body, '\"value\":30.0', '\"value\":31.0') WHERE seq = 30")
    problem = first_problem(state)
    assert (problem.seq, problem.reason) == (30, "modified")


def test_a_modified_checkpoint_event_is_named(state: Path, sql: sqlite3.Connection) -> None:
    sql.execute("UPDATE entry SET body = replace(body, '\"size\":102', '\"size\":103') WHERE seq = 102")
    problem = first_problem(state)
    assert (problem.seq, problem.reason) == (102, "modified")


def test_a_deleted_entry_is_named(state: Path, sql: sqlite3.Connection) -> None:
    sql.execute("DELETE FROM entry WHERE seq BETWEEN 77 AND 80")
    problem = first_problem(state)
    assert (problem.seq, problem.reason) == (77, "deleted")
    assert "77..80" in problem.detail


def test_reordered_entries_are_named(state: Path, sql: sqlite3.Connection) -> None:
    sql.execute("BEGIN")
    sql.execute("UPDATE entry SET seq = -1 WHERE seq = 40")
    sql.execute("UPDATE entry SET seq = 40 WHERE seq = 41")
    sql.execute("UPDATE entry SET seq = 41 WHERE seq = -1")
    sql.execute("COMMIT")
    problem = first_problem(state)
    assert (problem.seq, problem.reason) == (40, "reordered")
    assert "body of entry 41" in problem.detail


def test_rows_cut_from_the_end_are_named_as_truncated(state: Path, sql: sqlite3.Connection) -> None:
    sql.execute("DELETE FROM entry WHERE seq >= 190")
    problem = first_problem(state)
    assert (problem.seq, problem.reason) == (190, "truncated")


def test_a_journal_and_tree_cut_back_below_a_signed_checkpoint_are_named_as_truncated(
    state: Path, sql: sqlite3.Connection
) -> None:
    sql.execute("BEGIN")
    sql.execute("DELETE FROM entry WHERE seq >= 190")
    cut_leaves(sql, 190)
    sql.execute("UPDATE meta SET value = 190 WHERE key = 'next_seq'")
    sql.execute("COMMIT")
    problem = first_problem(state)
    assert (problem.seq, problem.reason) == (190, "truncated")
    assert "checkpoint of 204 leaves" in problem.detail


def test_a_clean_cut_back_is_caught_against_a_checkpoint_the_auditor_holds(
    state: Path, sql: sqlite3.Connection, tmp_path: Path
) -> None:
    held = sql.execute("SELECT note FROM audit_checkpoint WHERE size = 204").fetchone()[0]
    sql.execute("BEGIN")  # everything after checkpoint 153 removed, its own traces included
    for table, column in [("entry", "seq"), ("audit_checkpoint", "size")]:
        sql.execute(f"DELETE FROM {table} WHERE {column} >= 154")
    cut_leaves(sql, 154)
    sql.execute("DELETE FROM audit_node WHERE ((idx + 1) << level) > 154")
    sql.execute("UPDATE meta SET value = 154 WHERE key = 'next_seq'")
    sql.execute("COMMIT")
    assert verify_log(state).ok  # the journal alone is a consistent, shorter log
    problem = verify_log(state, checkpoints=[held]).problems[0]
    assert (problem.seq, problem.reason) == (154, "truncated")
    (tmp_path / "held.note").write_text(held)
    assert main(["audit", "verify", "--state-dir", str(state), "--checkpoint", str(tmp_path / "held.note")]) == 1


def test_a_checkpoint_with_a_bad_signature_is_rejected(state: Path, sql: sqlite3.Connection) -> None:
    note = sql.execute("SELECT note FROM audit_checkpoint WHERE size = 102").fetchone()[0]
    text, _, sig = note.rpartition("\n\n")
    forged_sig = sig[:-6] + ("A" if sig[-6] != "A" else "B") + sig[-5:]
    sql.execute("UPDATE audit_checkpoint SET note = ? WHERE size = 102", (f"{text}\n\n{forged_sig}",))
    problem = first_problem(state)
    assert (problem.seq, problem.reason) == (102, "bad_signature")


def test_a_checkpoint_rewritten_to_another_root_is_rejected(state: Path, sql: sqlite3.Connection) -> None:
    row = sql.execute("SELECT note, root FROM audit_checkpoint WHERE size = 153").fetchone()
    old = base64.b64encode(row[1]).decode()
    new_root = bytes(32)
    new = base64.b64encode(new_root).decode()
    sql.execute("UPDATE audit_checkpoint SET note = ?, root = ? WHERE size = 153", (row[0].replace(old, new), new_root))
    problem = first_problem(state)
    assert (problem.seq, problem.reason) == (153, "bad_signature")


def test_an_entry_rewritten_with_its_leaf_hash_is_caught_by_its_subtree(state: Path, sql: sqlite3.Connection) -> None:
    body = sql.execute("SELECT body FROM entry WHERE seq = 30").fetchone()[0].replace(b'"value":30.0', b'"value":31.0')
    sql.execute("BEGIN")
    sql.execute("UPDATE entry SET body = ? WHERE seq = 30", (body,))
    set_leaf(sql, 30, leaf_hash(body))
    sql.execute("COMMIT")
    problem = first_problem(state)
    assert (problem.seq, problem.reason) == (16, "modified")
    assert "16..31" in problem.detail


def test_an_entry_rewritten_with_all_its_hashes_is_caught_by_the_signed_checkpoint(
    state: Path, sql: sqlite3.Connection
) -> None:
    body = sql.execute("SELECT body FROM entry WHERE seq = 60").fetchone()[0].replace(b'"value":60.0', b'"value":61.0')
    sql.execute("BEGIN")
    sql.execute("UPDATE entry SET body = ? WHERE seq = 60", (body,))
    leaves = [h for _, h in HashStore(sql).leaves(0, 1000)]
    leaves[60] = leaf_hash(body)
    set_leaf(sql, 60, leaves[60])
    frontier = Frontier()
    for h in leaves:
        for level, index, node in frontier.append(h):
            if level and level % STRIDE == 0:
                sql.execute("UPDATE audit_node SET hash = ? WHERE level = ? AND idx = ?", (node, level, index))
    sql.execute("COMMIT")
    problem = first_problem(state)
    assert (problem.seq, problem.reason) == (51, "modified")  # after checkpoint 51, which still verifies
    assert "51..101" in problem.detail


def test_rows_added_behind_the_journals_back_are_named_as_unrecorded(state: Path, sql: sqlite3.Connection) -> None:
    body = sql.execute("SELECT body FROM entry WHERE seq = 203").fetchone()[0].replace(b'"seq":203', b'"seq":205')
    sql.execute("INSERT INTO entry(seq, kind, point_id, ts, body) VALUES (205, 0, 1, 0, ?)", (body,))
    problem = first_problem(state)
    assert (problem.seq, problem.reason) == (205, "unrecorded")


def test_the_command_exits_1_and_names_the_entry_on_stderr(
    state: Path, sql: sqlite3.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify", "--state-dir", str(state)]) == 0
    sql.execute("UPDATE entry SET body = replace(body, '\"value\":12.0', '\"value\":13.0') WHERE seq = 12")
    capsys.readouterr()
    assert main(["audit", "verify", "--state-dir", str(state)]) == 1
    captured = capsys.readouterr()
    assert "entry 12: modified" in captured.err
    assert '"ok": false' in captured.out
