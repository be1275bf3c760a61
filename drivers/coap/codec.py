"""Pure conversions for CoAP payloads: plain numbers, JSON value paths, point values and the payloads
of writes. No I/O. SenML lives in ``drivers.coap.senml``.

Decoding problems raise ``PayloadError`` with a ``kind`` (the health counter label):
``invalid_utf8``, ``invalid_json``, ``invalid_number``, ``missing_value``, ``wrong_type``.
"""

from __future__ import annotations

from typing import Final

import msgspec

from avila_edge.core import Value
from avila_edge.driver.payload import (
    EXCERPT_BYTES,
    PayloadError,
    ValuePath,
    coerce,
    decode_json,
    decode_number,
    excerpt,
    from_engineering,
    shown,
)
from drivers.coap import senml

TEXT_PLAIN: Final = 0
"""CoAP content-format of text/plain; charset=utf-8."""
APPLICATION_JSON: Final = 50


# -- value paths ---------------------------------------------------------------------------------


# -- payloads ------------------------------------------------------------------------------------


def encode_write(raw: Value, fmt: str, *, value_path: ValuePath | None, name: str | None) -> tuple[bytes, int]:
    """The PUT payload and content-format that set a resource to raw ``raw``."""
    if fmt == "json":
        doc = value_path.build(raw) if value_path is not None else raw
        return msgspec.json.encode(doc), APPLICATION_JSON
    if fmt == "senml":
        key = "vb" if isinstance(raw, bool) else "vs" if isinstance(raw, str) else "v"
        return senml.encode([{"n": name or "", key: raw}]), senml.JSON
    if isinstance(raw, bool):
        return (b"true" if raw else b"false"), TEXT_PLAIN
    text = repr(raw) if isinstance(raw, float) else str(raw)
    return text.encode(), TEXT_PLAIN


__all__ = [
    "APPLICATION_JSON",
    "EXCERPT_BYTES",
    "TEXT_PLAIN",
    "PayloadError",
    "ValuePath",
    "coerce",
    "decode_json",
    "decode_number",
    "encode_write",
    "excerpt",
    "from_engineering",
    "shown",
]
