"""Offline-first sync: uplinks are journal cursors that advance only on the remote side's confirmation."""
