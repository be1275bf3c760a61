"""A small, safe expression language for derived properties. User text is parsed, never evaluated.

Grammar (a subset of Python's expression syntax, checked node by node):

- numbers, ``true``/``false``, names of points of the same asset (``flow``), or of another asset
  (``pump2.flow``); ``+ - * / % **``, unary ``-``/``not``, comparisons ``< <= > >= == !=`` (chained
  too), ``and``/``or``, ``x if cond else y``;
- functions: ``abs(x)``, ``min(a, b, ...)``, ``max(a, b, ...)``, ``sqrt(x)``, ``clamp(x, lo, hi)``,
  ``mean(x, window)``, ``rms(x, window)`` and ``rate(x, window)`` (per second) over a rolling window
  given in seconds or as a duration string (``mean(vibration, "10m")``).

An input that is Bad makes the result Bad with a reason naming it; an Uncertain input makes it
Uncertain. Arithmetic errors (division by zero, overflow) make it Bad.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from avila_edge.core import Quality


class ExpressionError(ValueError):
    """The expression text is not valid; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Sample:
    """An input value as the expression sees it."""

    value: float | bool | None
    quality: Quality = Quality.GOOD
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    value: float | bool | None
    quality: Quality
    reason: str = ""


class _Bad(Exception):
    def __init__(self, reason: str, quality: Quality = Quality.BAD) -> None:
        self.reason = reason
        self.quality = quality


Inputs = Mapping[str, Sample]
_Node = Callable[[Inputs, float, list[str]], Any]

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_PLAIN_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "abs": (abs, 1, 1),
    "min": (min, 2, 16),
    "max": (max, 2, 16),
    "sqrt": (math.sqrt, 1, 1),
    "clamp": (lambda x, lo, hi: max(lo, min(hi, x)), 3, 3),
}
_WINDOW_FUNCTIONS = ("mean", "rms", "rate")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
MAX_LENGTH = 500
MAX_WINDOW_SAMPLES = 100_000


class Expression:
    """A compiled expression. ``evaluate`` is called with the inputs and a monotonic time in seconds;
    windowed functions keep their own history, so one ``Expression`` belongs to one twin."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_LENGTH:
            raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"not a valid expression at column {exc.offset}: {exc.msg}") from None
        self.text = text
        self.names: set[str] = set()
        self._windows: list[deque[tuple[float, float]]] = []
        self._root = self._compile(tree.body)

    def evaluate(self, inputs: Inputs, now: float) -> Result:
        notes: list[str] = []
        try:
            value = self._root(inputs, now, notes)
        except _Bad as bad:
            return Result(None, bad.quality, bad.reason)
        except ZeroDivisionError:
            return Result(None, Quality.BAD, "division by zero")
        except (OverflowError, ValueError) as exc:
            return Result(None, Quality.BAD, f"arithmetic error: {exc}")
        if isinstance(value, float) and not math.isfinite(value):
            return Result(None, Quality.BAD, "result is not a finite number")
        if notes:
            return Result(value, Quality.UNCERTAIN, "; ".join(sorted(set(notes))))
        return Result(value, Quality.GOOD)

    # -- compilation ------------------------------------------------------------------------------

    def _compile(self, node: ast.expr) -> _Node:
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool | int | float):
                return lambda i, t, n: value
            raise ExpressionError(f"column {node.col_offset + 1}: only numbers are allowed as constants")
        if isinstance(node, ast.Name):
            if node.id in ("true", "false"):
                flag = node.id == "true"
                return lambda i, t, n: flag
            return self._name(node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return self._name(f"{node.value.id}.{node.attr}")
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            op = _BINARY[type(node.op)]
            left, right = self._compile(node.left), self._compile(node.right)
            if isinstance(node.op, ast.Pow):
                return lambda i, t, n: _power(left(i, t, n), right(i, t, n))
            return lambda i, t, n: op(_num(left(i, t, n)), _num(right(i, t, n)))
        if isinstance(node, ast.UnaryOp):
            operand = self._compile(node.operand)
            if isinstance(node.op, ast.USub):
                return lambda i, t, n: -_num(operand(i, t, n))
            if isinstance(node.op, ast.UAdd):
                return lambda i, t, n: _num(operand(i, t, n))
            if isinstance(node.op, ast.Not):
                return lambda i, t, n: not operand(i, t, n)
        if isinstance(node, ast.BoolOp):
            parts = [self._compile(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda i, t, n: all(p(i, t, n) for p in parts)
            return lambda i, t, n: any(p(i, t, n) for p in parts)
        if isinstance(node, ast.Compare) and all(type(o) in _COMPARE for o in node.ops):
            first = self._compile(node.left)
            rest = [(_COMPARE[type(o)], self._compile(c)) for o, c in zip(node.ops, node.comparators, strict=True)]

            def compare(i: Inputs, t: float, n: list[str]) -> bool:
                left = first(i, t, n)
                for op, right_node in rest:
                    right = right_node(i, t, n)
                    if not op(left, right):
                        return False
                    left = right
                return True

            return compare
        if isinstance(node, ast.IfExp):
            test, body, orelse = self._compile(node.test), self._compile(node.body), self._compile(node.orelse)
            return lambda i, t, n: body(i, t, n) if test(i, t, n) else orelse(i, t, n)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            return self._call(node.func.id, node.args, node)
        raise ExpressionError(f"column {node.col_offset + 1}: '{ast.unparse(node)}' is not allowed in an expression")

    def _name(self, name: str) -> _Node:
        if not all(_NAME.match(part) for part in name.split(".")):
            raise ExpressionError(f"'{name}' is not a point name (letters, digits and '_', not starting with '_')")
        self.names.add(name)

        def read(inputs: Inputs, now: float, notes: list[str]) -> Any:
            sample = inputs.get(name)
            if sample is not None and sample.quality is Quality.BAD:
                raise _Bad(f"input {name} is Bad: {sample.reason}")
            if sample is None or sample.value is None:
                raise _Bad(f"no value yet for {name}")
            if sample.quality is Quality.UNCERTAIN:
                notes.append(f"input {name} is Uncertain")
            return sample.value

        return read

    def _call(self, name: str, args: list[ast.expr], node: ast.Call) -> _Node:
        where = f"column {node.col_offset + 1}"
        if name in _PLAIN_FUNCTIONS:
            fn, least, most = _PLAIN_FUNCTIONS[name]
            if not least <= len(args) <= most:
                raise ExpressionError(f"{where}: {name}() takes {least}..{most} arguments, got {len(args)}")
            parts = [self._compile(a) for a in args]
            return lambda i, t, n: fn(*(_num(p(i, t, n)) for p in parts))
        if name in _WINDOW_FUNCTIONS:
            if len(args) != 2:
                raise ExpressionError(f"{where}: {name}(value, window) takes 2 arguments")
            window = _window_seconds(args[1], where)
            inner = self._compile(args[0])
            history: deque[tuple[float, float]] = deque(maxlen=MAX_WINDOW_SAMPLES)
            self._windows.append(history)

            def windowed(i: Inputs, t: float, n: list[str]) -> float:
                history.append((t, float(_num(inner(i, t, n)))))
                while history and history[0][0] < t - window:
                    history.popleft()
                values = [v for _, v in history]
                if name == "mean":
                    return sum(values) / len(values)
                if name == "rms":
                    return math.sqrt(sum(v * v for v in values) / len(values))
                (t0, v0), (t1, v1) = history[0], history[-1]
                return (v1 - v0) / (t1 - t0) if t1 > t0 else 0.0

            return windowed
        allowed = ", ".join([*_PLAIN_FUNCTIONS, *_WINDOW_FUNCTIONS])
        raise ExpressionError(f"{where}: unknown function '{name}'; use one of {allowed}")


def _num(value: Any) -> float | int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    raise _Bad(f"'{value}' is not a number")


def _power(base: Any, exponent: Any) -> float:
    b, e = _num(base), _num(exponent)
    if abs(e) > 64:
        raise _Bad("exponent too large")
    return float(b) ** e


def _window_seconds(node: ast.expr, where: str) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        seconds = float(node.value)
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (m := _DURATION.match(node.value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ExpressionError(f'{where}: the window must be seconds or a duration like "10m"')
    if seconds <= 0:
        raise ExpressionError(f"{where}: the window must be longer than 0")
    return seconds
