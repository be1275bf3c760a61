"""The append-only journal: the single source of truth, and the cursors that read it."""
