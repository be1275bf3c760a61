"""YAML text → plain values plus the line of every key, so errors can name ``file:line``.

PyYAML's safe composer (libyaml when available) gives the node tree with marks; the values are built
here so that duplicate keys, keys that are not text and merge keys are refused at their own line.
Dates stay text (a site named ``2024-01-01`` is a name), and anchors/aliases are allowed within a
budget of values, so a file that expands exponentially ("billion laughs") or refers to itself is
refused instead of filling the memory.
"""

from __future__ import annotations

import re
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


def compose(text: str, filename: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse ``text``; return its value and a map from key path to 1-based line."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # libyaml may place an error at the end of the stream, one line past the text: name the last line
        line = min(mark.line + 1, count_lines(text)) if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlProblem(ConfigIssue(filename, line, "", f"not valid YAML: {problem}")) from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(ConfigIssue(filename, None, "", f"not valid YAML: {exc}")) from exc
    except RecursionError as exc:
        raise YamlProblem(ConfigIssue(filename, None, "", "not valid YAML: nested too deeply")) from exc
    if node is None:
        return None, {}
    builder = _Builder(filename)
    try:
        return builder.value(node, ()), builder.lines
    except RecursionError as exc:
        issue = ConfigIssue(filename, None, "", "the file is nested too deeply")
        raise YamlProblem(issue) from exc


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.lines: dict[KeyPath, int] = {}
        self.budget = MAX_VALUES
        self.open: set[int] = set()  # ids of the collection nodes being built (an alias back to one loops)
        self.constructor = yaml.constructor.SafeConstructor()

    def problem(self, node: yaml.Node, path: KeyPath, message: str) -> YamlProblem:
        return YamlProblem(ConfigIssue(self.filename, node.start_mark.line + 1, format_path(path), message))

    def value(self, node: yaml.Node, path: KeyPath) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise self.problem(node, path, f"the file expands to more than {MAX_VALUES} values (anchors and aliases?)")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.CollectionNode):
            if id(node) in self.open:
                raise self.problem(node, path, "an alias refers to the list or mapping that contains it")
            self.open.add(id(node))
            try:
                return self.collection(node, path)
            finally:
                self.open.discard(id(node))
        if node.tag == _TIMESTAMP:
            return str(node.value)
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.problem(node, path, f"cannot read value: {exc}") from exc

    def collection(self, node: yaml.CollectionNode, path: KeyPath) -> Any:
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    raise self.problem(key_node, path, "merge keys (<<) are not supported; write the keys out")
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.problem(key_node, path, "a key must be plain text, not a list or mapping")
                if key_node.tag != _STR:
                    what = _KEY_WORDS.get(key_node.tag, "is not plain text")
                    raise self.problem(key_node, path, f"key '{key_node.value}' {what}; put it in quotes")
                key = str(key_node.value)
                if key in out:
                    first = self.lines.get((*path, key))
                    raise self.problem(key_node, (*path, key), f"duplicate key (first given on line {first})")
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = self.value(value_node, (*path, key))
            return out
        return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]


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


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of its nearest ancestor that is in the file."""
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        path = path[:-1]
