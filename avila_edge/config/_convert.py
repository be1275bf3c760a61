"""Raw YAML values → frozen structs with msgspec, every failure explained in plain words at its line.

msgspec stops at the first problem of a ``convert`` call. To report every problem of a section at once
the collector explains the problem, removes the offending key from (a copy of) the raw value and
converts again, a bounded number of times.
"""

from __future__ import annotations

import difflib
import enum
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from msgspec import inspect as mi

from avila_edge.config._units import parse_duration, parse_size, show
from avila_edge.config._yaml import KeyPath, format_path, line_of
from avila_edge.config.model import DataType, LogFormat, LogLevel, Synchronous
from avila_edge.core import ConfigIssue

S = TypeVar("S", bound=msgspec.Struct)


@functools.cache
def _type_info(typ: type) -> mi.Type:
    """msgspec's description of ``typ``; computing it costs ~1 ms, and a site converts one per point."""
    return mi.type_info(typ)


_MAX_ROUNDS = 50
_DROP = object()
_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "str": "text",
    "bool": "true or false",
    "array": "a list",
    "object": "a mapping of keys",
    "null": "nothing",
    "bytes": "binary data",
    "datetime": "a date and time",
    "date": "a date",
}
_ENUM_NOUNS: dict[type[enum.Enum], str] = {
    DataType: "a data type",
    LogFormat: "a log format",
    LogLevel: "a log level",
    Synchronous: "a synchronous mode",
}
_COMPARE_WORDS = {">=": "at least", ">": "greater than", "<=": "at most", "<": "less than"}


def _dec_hook(typ: type, obj: Any) -> Any:
    # durations and sizes were already read by ``Collector._normalize``; here they only get their type
    if typ is Path:
        if isinstance(obj, str) and obj:
            return Path(obj)
        raise ValueError(f"{show(obj)} is not a path")
    raise NotImplementedError


class Collector:
    """Collects the issues of one file and converts pieces of it into structs."""

    def __init__(self, filename: str, lines: Mapping[KeyPath, int]) -> None:
        self.filename = filename
        self.lines = lines
        self.issues: list[ConfigIssue] = []

    def add(self, path: KeyPath, message: str, *, at_parent: bool = False) -> None:
        """Report ``message`` for ``path``, at its line (or its parent's, for a key that is missing)."""
        line = line_of(self.lines, path[:-1] if at_parent and path else path)
        self.issues.append(ConfigIssue(self.filename, line, format_path(path), message))

    def convert(self, raw: Any, typ: type[S], path: KeyPath) -> S | None:
        """``raw`` as a ``typ``, reporting every problem found in it.

        After a problem the offending key is left out and the rest converted again, so the result may
        be a partial value (defaults in place of the bad keys) that later checks can still look at;
        ``None`` when not even that is possible. Whether anything was wrong is in ``issues``.
        """
        info = _type_info(typ)
        dropped: set[KeyPath] = set()  # keys already reported and left out
        value = self._normalize(_copy_tree(raw), info, path, (), dropped)
        if value is _DROP:
            return None
        for _ in range(_MAX_ROUNDS):
            try:
                return msgspec.convert(value, typ, dec_hook=_dec_hook, str_keys=True)
            except msgspec.ValidationError as exc:
                message, _, where = str(exc).partition(" - at `")
                rel = parse_path(where.rstrip("`")) if where else ()
                if m := re.match(r"Object missing required field `(.+)`", message):
                    if (*rel, m.group(1)) not in dropped:
                        self.add((*path, *rel, m.group(1)), "missing required key", at_parent=True)
                elif m := re.match(r"Object contains unknown field `(.+)`", message):
                    key = m.group(1)
                    rel = (*rel, key)
                    hint, text = _unknown_key(key, _type_at(info, rel[:-1]))
                    self.add((*path, *rel), text)
                    if hint is not None:  # "did you mean 'address'?" already covers 'address' missing
                        dropped.add((*rel[:-1], hint))
                else:
                    self.add((*path, *rel), _explain(message, _type_at(info, rel), rel))
                if not _remove(value, rel):
                    return None
                dropped.add(rel)
        return None

    def _normalize(self, raw: Any, info: Any, base: KeyPath, rel: KeyPath, dropped: set[KeyPath]) -> Any:
        """Convert durations and sizes in place; report and drop the ones that cannot be read."""
        unit = _unit_of(info)
        if unit is not None:
            try:
                return parse_duration(raw) if unit == "duration" else parse_size(raw)
            except ValueError as exc:
                self.add((*base, *rel), str(exc))
                return _DROP
        if isinstance(info, mi.Metadata):
            return self._normalize(raw, info.type, base, rel, dropped)
        if isinstance(info, mi.UnionType):
            if raw is None:
                return raw
            inner = [t for t in info.types if not isinstance(t, mi.NoneType)]
            return self._normalize(raw, inner[0], base, rel, dropped) if len(inner) == 1 else raw
        if isinstance(info, mi.StructType) and isinstance(raw, dict):
            for field in info.fields:
                if field.encode_name in raw:
                    key = (*rel, field.encode_name)
                    new = self._normalize(raw[field.encode_name], field.type, base, key, dropped)
                    if new is _DROP:
                        del raw[field.encode_name]
                        dropped.add(key)
                    else:
                        raw[field.encode_name] = new
            return raw
        if isinstance(info, mi.DictType) and isinstance(raw, dict):
            for k in list(raw):
                if isinstance(k, str):
                    new = self._normalize(raw[k], info.value_type, base, (*rel, k), dropped)
                    if new is _DROP:
                        del raw[k]
                        dropped.add((*rel, k))
                    else:
                        raw[k] = new
            return raw
        if isinstance(info, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType) and isinstance(raw, list):
            items = [self._normalize(item, info.item_type, base, (*rel, i), dropped) for i, item in enumerate(raw)]
            return _DROP if any(item is _DROP for item in items) else items
        return raw


def _copy_tree(raw: Any) -> Any:
    """A copy of the mappings and lists of a YAML value (its scalars are immutable and shared), which
    ``convert`` may change: several times cheaper than ``copy.deepcopy``, which it does once per point."""
    if isinstance(raw, dict):
        return {k: _copy_tree(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_copy_tree(v) for v in raw]
    return raw


def _unit_of(info: Any) -> str | None:
    """``"duration"`` or ``"size"`` for the model's ``Duration``/``ByteSize`` (or an annotated marker)."""
    if isinstance(info, mi.Metadata):
        unit = (info.extra or {}).get("unit")
        if unit in ("duration", "size"):
            return str(unit)
    return None


def _remove(value: Any, rel: KeyPath) -> bool:
    """Delete the key at ``rel`` so the next round can go on; ``False`` when that is not possible."""
    if not rel or not isinstance(rel[-1], str):
        return False
    node = value
    try:
        for part in rel[:-1]:
            node = node[part]
    except (KeyError, IndexError, TypeError):
        return False
    if not isinstance(node, dict) or rel[-1] not in node:
        return False
    del node[rel[-1]]
    return True


def _unknown_key(key: str, info: Any) -> tuple[str | None, str]:
    """The closest valid key (if any) and the message for an unknown ``key``."""
    valid = [f.encode_name for f in info.fields] if isinstance(info, mi.StructType) else []
    hint = difflib.get_close_matches(key, valid, n=1)
    if hint:
        return hint[0], f"unknown key; did you mean '{hint[0]}'?"
    return None, f"unknown key; valid keys here: {', '.join(valid)}" if valid else "unknown key"


def _explain(message: str, info: Any, rel: KeyPath) -> str:
    choices = _choices(info)
    if m := re.match(r"Invalid enum value (.+)", message):
        noun = _ENUM_NOUNS.get(info.cls) if isinstance(info, mi.EnumType) else None
        name = next((p for p in reversed(rel) if isinstance(p, str)), "value")
        return f"{m.group(1)} is not {noun or 'a valid ' + name}; use one of {choices}"
    if m := re.match(r"Expected `(.+)`, got `(.+)`", message):
        want = " or ".join(_TYPE_WORDS.get(w.strip(), w.strip()) for w in m.group(1).split("|"))
        got = _TYPE_WORDS.get(m.group(2), m.group(2))
        return f"expected {want}{f' (one of {choices})' if choices else ''}, got {got}"
    if m := re.match(r"Expected `\w+` (>=|>|<=|<) (\S+)$", message):
        return f"must be {_COMPARE_WORDS[m.group(1)]} {m.group(2)}"
    if m := re.match(r"Expected `\w+` of length (>=|<=) (\d+)$", message):
        return f"must be {_COMPARE_WORDS[m.group(1)]} {m.group(2)} long"
    return message[:1].lower() + message[1:]


def parse_path(where: str) -> KeyPath:
    """``$.devices[0].points[3].type`` (or ``points[3].type``) → ``("devices", 0, "points", 3, "type")``."""
    out: list[str | int] = []
    for name, index in re.findall(r"\.?([^.\[\]]+)|\[(\d+)\]", where.removeprefix("$")):
        out.append(int(index) if index else name)
    return tuple(out)


def _type_at(info: Any, rel: KeyPath) -> Any:
    for part in rel:
        info = _unwrap(info)
        if isinstance(part, str) and isinstance(info, mi.StructType):
            match = [f.type for f in info.fields if f.encode_name == part]
            if not match:
                return None
            info = match[0]
        elif isinstance(part, int) and isinstance(info, mi.ListType | mi.VarTupleType):
            info = info.item_type
        elif isinstance(part, str) and isinstance(info, mi.DictType):
            info = info.value_type
        else:
            return None
    return _unwrap(info)


def _unwrap(info: Any) -> Any:
    while True:
        if isinstance(info, mi.Metadata):
            info = info.type
        elif isinstance(info, mi.UnionType):
            inner = [t for t in info.types if not isinstance(t, mi.NoneType)]
            if len(inner) != 1:
                return info
            info = inner[0]
        else:
            return info


def _choices(info: Any) -> str:
    if isinstance(info, mi.EnumType):
        return ", ".join(str(m.value) for m in info.cls)
    if isinstance(info, mi.LiteralType):
        return ", ".join(str(v) for v in info.values)
    return ""
