"""Pure conversions for MQTT payloads: topic filters and templates, JSON value paths, plain numbers,
timestamps and point values. No I/O.

Every decoding problem raises ``PayloadError`` with a short ``kind`` (the health counter label):
``invalid_utf8``, ``invalid_json``, ``invalid_number``, ``missing_value``, ``wrong_type``,
``bad_timestamp``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

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

# -- topic filters -------------------------------------------------------------------------------


def filter_problem(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid MQTT topic filter, or None."""
    if not topic_filter:
        return "a topic filter cannot be empty"
    if len(topic_filter.encode("utf-8")) > 65535:
        return "a topic filter is at most 65535 bytes"
    if "\0" in topic_filter:
        return "a topic filter cannot contain a NUL character"
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


def topic_problem(topic: str) -> str | None:
    """Why ``topic`` cannot be published to / subscribed as an exact topic, or None."""
    if not topic:
        return "a topic cannot be empty"
    if "+" in topic or "#" in topic:
        return "a topic cannot contain the wildcards '+' or '#' (use a subscription for those)"
    if "\0" in topic:
        return "a topic cannot contain a NUL character"
    return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True if ``topic`` matches ``topic_filter`` (MQTT rules, including ``$`` topics)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    fl = topic_filter.split("/")
    tl = topic.split("/")
    for i, level in enumerate(fl):
        if level == "#":
            return True
        if i >= len(tl):
            return False
        if level not in ("+", tl[i]):
            return False
    return len(fl) == len(tl)


def filter_covers(outer: str, inner: str) -> bool:
    """True if every topic matched by filter ``inner`` is also matched by filter ``outer``."""
    ol = outer.split("/")
    il = inner.split("/")
    for i, level in enumerate(ol):
        if level == "#":
            return True
        if i >= len(il):
            return False
        if il[i] == "#":
            return False
        if level == "+":
            continue
        if level != il[i]:
            return False
    return len(ol) == len(il)


# -- templates -----------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAMES: Final = ("asset", "point")


@dataclass(frozen=True, slots=True)
class Template:
    """A topic pattern naming the levels that hold the asset and the point: ``plant/{asset}/{point}``.

    Levels may also be ``+`` (any one level) or a final ``#`` (anything below); a placeholder may
    share a level with text (``sensors/{asset}-{point}``).
    """

    text: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> Template:
        levels = text.split("/")
        parts: list[str] = []
        seen: list[str] = []
        for i, level in enumerate(levels):
            if level == "#":
                if i != len(levels) - 1:
                    raise ValueError("'#' must be the last level of a template")
                parts.append(".*")
                continue
            if level == "+":
                parts.append("[^/]*")
                continue
            if "#" in level or "+" in level:
                raise ValueError("'+' and '#' must be whole levels of a template")
            out, pos = [], 0
            for m in _PLACEHOLDER.finditer(level):
                name = m.group(1)
                if name not in _NAMES:
                    raise ValueError(f"unknown placeholder {{{name}}}; a template uses {{asset}} and {{point}}")
                if name in seen:
                    raise ValueError(f"{{{name}}} appears twice in the template")
                seen.append(name)
                out.append(re.escape(level[pos : m.start()]))
                out.append(f"(?P<{name}>[^/]+?)" if m.end() < len(level) else f"(?P<{name}>[^/]+)")
                pos = m.end()
            rest = level[pos:]
            if "{" in rest or "}" in rest:
                raise ValueError("unbalanced '{' or '}' in the template")
            out.append(re.escape(rest))
            parts.append("".join(out))
        missing = [n for n in _NAMES if n not in seen]
        if missing:
            raise ValueError("a template needs both {asset} and {point}")
        body = "/".join(parts)
        if text.endswith("/#"):  # 'a/#' also matches 'a' itself
            body = "/".join(parts[:-1]) + "(?:/.*)?"
        return cls(text, re.compile(body + r"\Z"))

    def match(self, topic: str) -> str | None:
        """The point id ``asset/point`` the topic names, or None."""
        m = self.pattern.match(topic)
        if m is None:
            return None
        return f"{m.group('asset')}/{m.group('point')}"

    def render(self, point_id: str) -> str:
        """The topic filter that carries ``point_id`` (``+``/``#`` levels stay wildcards)."""
        asset, _, point = point_id.partition("/")
        return self.text.replace("{asset}", asset).replace("{point}", point)


# -- value paths ---------------------------------------------------------------------------------


# -- payloads ------------------------------------------------------------------------------------


# -- timestamps ----------------------------------------------------------------------------------

_MIN_NS: Final = 0
_MAX_NS: Final = 253_402_300_799 * 10**9  # 9999-12-31T23:59:59Z


def parse_timestamp(raw: Any) -> int:
    """A source timestamp in ns since the Unix epoch.

    Numbers are epoch seconds, milliseconds, microseconds or nanoseconds, told apart by size
    (below 1e11 seconds, below 1e14 ms, below 1e17 µs, else ns); text is ISO-8601 (a time without
    an offset is taken as UTC) or such a number.
    """
    if isinstance(raw, str):
        text = raw.strip()
        try:
            raw = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise PayloadError("bad_timestamp", f"{shown(raw)} is not an ISO-8601 time or epoch number") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
            ns = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
            return _checked_ns(ns, raw)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise PayloadError("bad_timestamp", f"expected an epoch number or ISO-8601 text, got {shown(raw)}")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise PayloadError("bad_timestamp", f"{raw!r} is not a time")
    size = abs(raw)
    if size < 1e11:
        ns = round(raw * 10**9)
    elif size < 1e14:
        ns = round(raw * 10**6)
    elif size < 1e17:
        ns = round(raw * 10**3)
    else:
        ns = int(raw)
    return _checked_ns(ns, raw)


def _checked_ns(ns: int, raw: Any) -> int:
    if not _MIN_NS <= ns <= _MAX_NS:
        raise PayloadError("bad_timestamp", f"{shown(raw)} is outside 1970..9999")
    return ns


# -- commands (writes) ---------------------------------------------------------------------------


def encode_command(value: Value, fmt: str, value_path: ValuePath | None) -> bytes:
    """The payload that sets a point to raw ``value``: plain text for ``number``, JSON otherwise."""
    if fmt == "number":
        if isinstance(value, bool):
            return b"true" if value else b"false"
        return repr(value).encode() if isinstance(value, float) else str(value).encode()
    doc = value_path.build(value) if value_path is not None else value
    return msgspec.json.encode(doc)


__all__ = [
    "EXCERPT_BYTES",
    "PayloadError",
    "Template",
    "ValuePath",
    "coerce",
    "decode_json",
    "decode_number",
    "encode_command",
    "excerpt",
    "filter_covers",
    "filter_problem",
    "from_engineering",
    "parse_timestamp",
    "shown",
    "topic_matches",
    "topic_problem",
]
