"""YAML text → plain values plus the line of every key, so errors can name ``file:line``."""

from __future__ import annotations

from typing import Any

import yaml

from avila_edge.core import ConfigIssue

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

KeyPath = tuple[str | int, ...]


class YamlProblem(Exception):
    def __init__(self, issue: ConfigIssue) -> None:
        self.issue = issue
        super().__init__(str(issue))


def compose(text: str, filename: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse ``text``; return its value and a map from key path to 1-based line."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlProblem(ConfigIssue(filename, line, "", f"not valid YAML: {problem}")) from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(ConfigIssue(filename, None, "", f"not valid YAML: {exc}")) from exc
    lines: dict[KeyPath, int] = {}
    if node is None:
        return None, lines
    constructor = yaml.constructor.SafeConstructor()
    return _value(node, (), lines, constructor, filename), lines


def _value(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    constructor: yaml.constructor.SafeConstructor,
    filename: str,
) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlProblem(ConfigIssue(filename, line, format_path(path), "merge keys (<<) are not supported"))
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                raise YamlProblem(ConfigIssue(filename, line, format_path(path), "keys must be plain text"))
            key = str(key_node.value)
            if key in out:
                first = lines.get((*path, key))
                raise YamlProblem(
                    ConfigIssue(
                        filename, line, format_path((*path, key)), f"duplicate key (first given on line {first})"
                    )
                )
            lines[(*path, key)] = line
            out[key] = _value(value_node, (*path, key), lines, constructor, filename)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_value(item, (*path, i), lines, constructor, filename) for i, item in enumerate(node.value)]
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise YamlProblem(
            ConfigIssue(filename, node.start_mark.line + 1, format_path(path), f"cannot read value: {exc}")
        ) from exc


def format_path(path: KeyPath) -> str:
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
