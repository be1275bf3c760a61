"""kill -9 at random moments: after every restart the audit tree has exactly as many leaves as the
journal has seqs, and the whole log verifies."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from avila_edge.audit import HashStore, verify_log

CHILD = Path(__file__).with_name("audit_child.py")


def sizes(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        next_seq = int(conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
        tree_size = HashStore(conn).size()
    finally:
        conn.close()
    return next_seq, tree_size


def test_after_kill_9_the_tree_size_equals_the_journals_next_seq(tmp_path: Path) -> None:
    rng = random.Random(20261125)
    reported = 0
    for _ in range(6):
        child = subprocess.Popen([sys.executable, str(CHILD), str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline(), "child did not start appending"
        time.sleep(rng.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        for line in out.splitlines():
            if line.strip():
                reported = max(reported, int(line.split()[1]) + 1)
        next_seq, tree_size = sizes(tmp_path / "journal.sqlite3")
        assert tree_size == next_seq
        assert next_seq >= reported, "a commit the child saw was lost"
    report = verify_log(tmp_path)
    assert report.ok, report.problems
    assert report.checkpoints_checked >= 6
