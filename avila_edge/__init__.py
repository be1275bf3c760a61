"""avila-edge: a hardened edge/IoT gateway runtime."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("avila-edge")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
