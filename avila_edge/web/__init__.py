"""The gateway's HTTP endpoints: status, metrics, health, and read-only twin views."""
