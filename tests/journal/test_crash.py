"""kill -9 at random moments during ingest loses no committed entry and leaves no gap or duplicate."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avila_edge.journal import decode_reading

CHILD = Path(__file__).with_name("ingest_child.py")


@pytest.mark.slow
def test_kill_9_loop_loses_no_committed_entry(tmp_path: Path) -> None:
    db = tmp_path / "journal.sqlite3"
    rng = random.Random(20261125)
    reported: set[int] = set()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(20):
        child = subprocess.Popen([sys.executable, str(CHILD), str(db)], stdout=subprocess.PIPE, text=True, env=env)
        assert child.stdout is not None
        first_line = child.stdout.readline()  # ingest has started
        assert first_line, "child did not start ingesting"
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        for line in [first_line, *out.splitlines()]:
            if line.strip():
                a, b = map(int, line.split())
                reported.update(range(a, b + 1))
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT seq, body FROM entry ORDER BY seq").fetchall()
    next_seq = conn.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0]
    conn.close()
    seqs = [s for s, _ in rows]
    assert seqs == list(range(next_seq)), "seqs must be dense from 0 with no duplicate"
    assert reported <= set(seqs), f"committed but lost: {sorted(reported - set(seqs))[:10]}"
    for seq, body in rows:
        r = decode_reading(body)
        assert r.seq == seq and r.value == float(seq)
    assert len(reported) > 1000
