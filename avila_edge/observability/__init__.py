"""Logs and metrics: how the gateway tells operators what it is doing."""
