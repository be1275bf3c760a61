"""Marker types for configuration values people write with units: ``Duration`` and ``ByteSize``."""

from __future__ import annotations

from typing import Annotated

import msgspec

Duration = Annotated[float, msgspec.Meta(extra={"unit": "duration"})]
"""Seconds (a plain float). YAML may write a number of seconds or ``250ms``, ``2s``, ``5m``, ``1h``, ``7d``."""

ByteSize = Annotated[int, msgspec.Meta(extra={"unit": "size"})]
"""Bytes (a plain int). YAML may write a number or ``64KiB``, ``16MB``, ``1GiB`` ..."""

__all__ = ["ByteSize", "Duration"]
