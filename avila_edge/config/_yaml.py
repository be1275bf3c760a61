"""YAML text → plain values plus the line of every key, so errors can name ``file:line``.

The values are built here from PyYAML's event stream (libyaml's parser when available), one event at
a time, so that duplicate keys, keys that are not text and merge keys are refused at their own line
and no node tree is ever held: a site of 100,000 points would otherwise keep a node and two marks
per value alive while it is converted. The line of each key path is not kept either; a valid file
never needs it, and ``LineMap`` reads the text again for it the first time an issue is reported.
Dates stay text (a site named ``2024-01-01`` is a name), and anchors/aliases are allowed within a
budget of values, so a file that expands exponentially ("billion laughs") or refers to itself is
refused instead of filling the memory. Equal strings are shared, so a key or a value repeated on
every point is one object.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from avila_edge.core import ConfigIssue

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

KeyPath = tuple[str | int, ...]

MAX_VALUES = 200_000
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # what YAML counts as a line break
_KEY_WORDS = {
    "tag:yaml.org,2002:bool": "reads as true/false",
    "tag:yaml.org,2002:int": "reads as a number",
    "tag:yaml.org,2002:float": "reads as a number",
    "tag:yaml.org,2002:null": "reads as nothing (null)",
    _TIMESTAMP: "reads as a date",
}


class YamlProblem(Exception):
    """The text cannot become a value tree; ``issue`` says where and why."""

    def __init__(self, issue: ConfigIssue) -> None:
        self.issue = issue
        super().__init__(str(issue))


def compose(text: str, filename: str) -> tuple[Any, LineMap]:
    """Parse ``text``; return its value and the map from key path to 1-based line."""
    try:
        value = _Builder(text, filename, record=False).document()
    except YamlProblem:
        _Builder(text, filename, record=True).document()  # the same problem, told with every line at hand
        raise
    return value, LineMap(text, filename)


class LineMap(Mapping[KeyPath, int]):
    """Key path → 1-based line of a parsed text, found by parsing the text again on first use."""

    def __init__(self, text: str, filename: str) -> None:
        self._text = text
        self._filename = filename
        self._lines: dict[KeyPath, int] | None = None

    def _map(self) -> dict[KeyPath, int]:
        if self._lines is None:
            builder = _Builder(self._text, self._filename, record=True)
            builder.document()  # the text was parsed once already: it cannot fail now
            self._lines = builder.lines
        return self._lines

    def __getitem__(self, path: KeyPath) -> int:
        return self._map()[path]

    def __iter__(self) -> Iterator[KeyPath]:
        return iter(self._map())

    def __len__(self) -> int:
        return len(self._map())


class _Anchor:
    __slots__ = ("count", "line", "lines", "scalar", "value")

    def __init__(
        self, value: Any, line: int, count: int, lines: list[tuple[KeyPath, int]], scalar: tuple[str, str] | None
    ) -> None:
        self.value = value
        self.line = line
        self.count = count  # how many values it stands for (an alias spends them from the budget again)
        self.lines = lines  # (path relative to the anchor, line) of each value in it, when recording
        self.scalar = scalar  # (tag, text) when it is a scalar, which an alias may use as a key


class _Builder:
    """Builds one document's value from the event stream (``record``: and the line of every path)."""

    def __init__(self, text: str, filename: str, *, record: bool) -> None:
        self.text = text
        self.filename = filename
        self.events: Any = _Loader(text)  # the parser's event methods carry no types
        self.record = record
        self.lines: dict[KeyPath, int] = {}
        self.budget = MAX_VALUES
        self.anchors: dict[str, _Anchor] = {}
        self.open: dict[str, int] = {}  # anchors of the lists and mappings being built → their line
        self.seen: set[str] = set()  # every anchor met so far
        self.recording: list[tuple[int, list[tuple[KeyPath, int]]]] = []  # open anchors: (path length, lines)
        self.strings: dict[str, str] = {}
        self.constructor = yaml.constructor.SafeConstructor()

    def problem(self, line: int, path: KeyPath, message: str) -> YamlProblem:
        return YamlProblem(ConfigIssue(self.filename, line, format_path(path), message))

    def document(self) -> Any:
        try:
            try:
                return self._document()
            except YamlProblem:
                self._drain()  # a syntax error further on is what a parser reports first
                raise
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            # libyaml may place an error at the end of the stream, one line past the text: name the last line
            line = min(mark.line + 1, count_lines(self.text)) if mark is not None else None
            problem = exc.problem or exc.context or "invalid YAML"
            raise YamlProblem(ConfigIssue(self.filename, line, "", f"not valid YAML: {problem}")) from exc
        except yaml.YAMLError as exc:
            raise YamlProblem(ConfigIssue(self.filename, None, "", f"not valid YAML: {exc}")) from exc
        except RecursionError as exc:
            raise YamlProblem(ConfigIssue(self.filename, None, "", "the file is nested too deeply")) from exc
        finally:
            self.events.dispose()

    def _document(self) -> Any:
        events = self.events
        events.get_event()  # stream start
        if events.check_event(yaml.StreamEndEvent):
            return None
        events.get_event()  # document start
        value = self.value(())
        events.get_event()  # document end
        if not events.check_event(yaml.StreamEndEvent):
            second = events.get_event()
            raise self._composer_error("but found another document", second.start_mark)
        return value

    def _composer_error(self, problem: str, mark: Any) -> yaml.MarkedYAMLError:
        return yaml.composer.ComposerError(None, None, problem, mark)

    def _drain(self) -> None:
        """Read the rest of the stream for the errors a composer would have raised before ours."""
        known = self.seen
        while not self.events.check_event(yaml.StreamEndEvent):
            event = self.events.get_event()
            anchor = getattr(event, "anchor", None)
            if isinstance(event, yaml.DocumentStartEvent):
                raise self._composer_error("but found another document", event.start_mark)
            if isinstance(event, yaml.AliasEvent):
                if anchor not in known:
                    raise self._composer_error(f"found undefined alias '{anchor}'", event.start_mark)
            elif anchor is not None:
                if anchor in known:
                    raise self._composer_error("second occurrence", event.start_mark)
                known.add(anchor)

    def note(self, path: KeyPath, line: int, *, first: bool) -> None:
        """Record the line of ``path`` (``first``: unless it has one already)."""
        if first:
            line = self.lines.setdefault(path, line)
        else:
            self.lines[path] = line
        for depth, lines in self.recording:
            lines.append((path[depth:], line))

    def value(self, path: KeyPath) -> Any:
        event = self.events.get_event()
        if isinstance(event, yaml.AliasEvent):
            return self.alias(event, path)
        line = event.start_mark.line + 1
        self.budget -= 1
        if self.budget < 0:
            raise self.problem(line, path, f"the file expands to more than {MAX_VALUES} values (anchors and aliases?)")
        if self.record:
            self.note(path, line, first=True)
        anchor = event.anchor
        if anchor is None:
            return self.build(event, path)
        if anchor in self.seen:
            raise self._composer_error("second occurrence", event.start_mark)
        self.seen.add(anchor)
        budget = self.budget
        lines: list[tuple[KeyPath, int]] = []
        if self.record:
            self.recording.append((len(path), lines))
            lines.append(((), line))
        self.open[anchor] = line
        try:
            value = self.build(event, path)
        finally:
            del self.open[anchor]
            if self.record:
                self.recording.pop()
        scalar = (self.tag_of(event), event.value) if isinstance(event, yaml.ScalarEvent) else None
        self.anchors[anchor] = _Anchor(value, line, budget - self.budget + 1, lines, scalar)
        return value

    def alias(self, event: Any, path: KeyPath) -> Any:
        name: str = event.anchor
        if name in self.open:
            raise self.problem(self.open[name], path, "an alias refers to the list or mapping that contains it")
        anchor = self.anchors.get(name)
        if anchor is None:
            raise self._composer_error(f"found undefined alias '{name}'", event.start_mark)
        self.budget -= anchor.count
        if self.budget < 0:
            raise self.problem(
                anchor.line, path, f"the file expands to more than {MAX_VALUES} values (anchors and aliases?)"
            )
        if self.record:
            for rel, line in anchor.lines:
                self.note((*path, *rel), line, first=True)
        return copy.deepcopy(anchor.value)

    def build(self, event: Any, path: KeyPath) -> Any:
        if isinstance(event, yaml.ScalarEvent):
            return self.scalar(event, path)
        if isinstance(event, yaml.SequenceStartEvent):
            items: list[Any] = []
            while not self.events.check_event(yaml.SequenceEndEvent):
                items.append(self.value((*path, len(items))))
            self.events.get_event()
            return items
        return self.mapping(path)

    def tag_of(self, event: Any) -> str:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.events.resolve(yaml.ScalarNode, event.value, event.implicit)
        return str(tag)

    def scalar(self, event: Any, path: KeyPath) -> Any:
        tag = self.tag_of(event)
        if tag in (_STR, _TIMESTAMP):
            return self.strings.setdefault(event.value, event.value)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ArithmeticError, LookupError, TypeError, ValueError) as exc:  # PyYAML's own slips
            raise self.problem(event.start_mark.line + 1, path, f"cannot read value: {exc}") from exc
        finally:
            self.constructor.constructed_objects.pop(node, None)  # it keeps every node otherwise

    def mapping(self, path: KeyPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        events = self.events
        while not events.check_event(yaml.MappingEndEvent):
            key, line = self.key(events.get_event(), path)
            key_path = (*path, key)
            if key in out:
                first = self.lines.get(key_path)  # when not recording, compose asks again with the lines
                raise self.problem(line, key_path, f"duplicate key (first given on line {first})")
            if self.record:
                self.note(key_path, line, first=False)
            out[key] = self.value(key_path)
        events.get_event()
        return out

    def key(self, event: Any, path: KeyPath) -> tuple[str, int]:
        """The text of a mapping key and its line, or the problem with it."""
        line = event.start_mark.line + 1
        anchored = not isinstance(event, yaml.AliasEvent) and event.anchor is not None
        if anchored:  # known before any problem with the key, for ``_drain``
            if event.anchor in self.seen:
                raise self._composer_error("second occurrence", event.start_mark)
            self.seen.add(event.anchor)
        if isinstance(event, yaml.AliasEvent):
            name = str(event.anchor)
            if name in self.open:
                raise self.problem(line, path, "a key must be plain text, not a list or mapping")
            anchor = self.anchors.get(name)
            if anchor is None:
                raise self._composer_error(f"found undefined alias '{name}'", event.start_mark)
            if anchor.scalar is None:
                raise self.problem(line, path, "a key must be plain text, not a list or mapping")
            tag, text = anchor.scalar
        elif isinstance(event, yaml.ScalarEvent):
            tag, text = self.tag_of(event), event.value
        else:
            raise self.problem(line, path, "a key must be plain text, not a list or mapping")
        if tag == _MERGE:
            raise self.problem(line, path, "merge keys (<<) are not supported; write the keys out")
        if tag != _STR:
            what = _KEY_WORDS.get(tag, "is not plain text")
            raise self.problem(line, path, f"key '{text}' {what}; put it in quotes")
        if anchored:
            self.anchors[event.anchor] = _Anchor(text, line, 1, [((), line)], (tag, text))
        return self.strings.setdefault(text, text), line


def count_lines(text: str) -> int:
    """How many lines YAML sees in ``text`` (at least 1)."""
    return len(_LINE_BREAK.findall(text)) + 1


def format_path(path: KeyPath) -> str:
    """``("devices", 0, "timing")`` → ``devices[0].timing``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def line_of(lines: Mapping[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of its nearest ancestor that is in the file."""
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        path = path[:-1]
