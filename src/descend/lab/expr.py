"""A user's own function of ``x`` and ``y``, parsed safely and differentiated symbolically.

The text is parsed with :mod:`ast` and checked against an allow-list: numbers, the names ``x``, ``y``, ``pi`` and
``e``, the operators ``+ - * / **``, and calls of a few named functions with one argument. Anything else (imports,
attributes, other names or calls, lambdas, comprehensions, subscripts, keyword arguments, strings) is refused with
an :class:`ExpressionError` that says what was found. The accepted tree is translated into a small expression
language of nested tuples, which is evaluated with NumPy and differentiated by the usual rules; nothing is ever
``eval``'d.

>>> f = parse("(1 - x)**2 + 100*(y - x**2)**2")
>>> float(f.value(1.0, 1.0)), [float(g) for g in f.gradient(0.0, 0.0)]
(0.0, [-2.0, 0.0])
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FUNCTIONS", "MAX_EXPONENT", "MAX_LENGTH", "MAX_NODES", "Expression", "ExpressionError", "parse", "to_text"]

MAX_LENGTH = 500
MAX_NODES = 200
MAX_EXPONENT = 100.0
MAX_DEPTH = 40

FUNCTIONS: dict[str, Any] = {
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "tanh": np.tanh,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "abs": np.abs,
    "atan": np.arctan,
}
_INTERNAL = {"sign": np.sign}
CONSTANTS = {"pi": math.pi, "e": math.e}
VARIABLES = ("x", "y")

Node = tuple  # ("num", v) | ("var", name) | (op, a, b) | ("neg", a) | ("call", name, a)


class ExpressionError(ValueError):
    """The expression is not one the lab accepts; the message says what was not allowed."""


_BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}


def _allowed_text() -> str:
    return f"numbers, x, y, pi, e, + - * / ** and the functions {', '.join(FUNCTIONS)} (one argument each)"


def _convert(node: ast.AST, depth: int = 0, in_exponent: bool = False) -> Node:
    if depth > MAX_DEPTH:
        raise ExpressionError(f"the expression is nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, ast.Expression):
        return _convert(node.body, depth + 1)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"the constant {node.value!r} is not allowed; allowed are {_allowed_text()}")
        try:
            value = float(node.value)
        except OverflowError:
            digits = len(str(abs(node.value))) if isinstance(node.value, int) else 0
            raise ExpressionError(
                f"the number {str(node.value)[:20]}... ({digits} digits) is too large for a float; "
                "numbers must be below about 1.8e308"
            ) from None
        if not math.isfinite(value):
            raise ExpressionError(f"the number {node.value!r} is not finite")
        return ("num", value)
    if isinstance(node, ast.Name):
        if node.id in VARIABLES:
            return ("var", node.id)
        if node.id in CONSTANTS:
            return ("num", CONSTANTS[node.id])
        raise ExpressionError(f"the name {node.id!r} is not allowed; allowed are {_allowed_text()}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _convert(node.operand, depth + 1, in_exponent)
        return ("neg", inner) if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        op = _BINARY[type(node.op)]
        if op == "pow":
            if in_exponent:
                raise ExpressionError("a power inside an exponent (such as 9**9**9) is not allowed")
            base = _convert(node.left, depth + 1, in_exponent)
            exponent = _convert(node.right, depth + 1, True)
            number = _constant(exponent)
            if number is not None and abs(number) > MAX_EXPONENT:
                raise ExpressionError(f"the exponent {number:g} is too large; it must lie within ±{MAX_EXPONENT:g}")
            return ("pow", base, exponent)
        return (op, _convert(node.left, depth + 1, in_exponent), _convert(node.right, depth + 1, in_exponent))
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ExpressionError(f"calling {ast.unparse(node.func)!r} is not allowed; allowed are {_allowed_text()}")
        name = node.func.id
        if name not in FUNCTIONS:
            raise ExpressionError(f"the function {name!r} is not allowed; allowed are {', '.join(FUNCTIONS)}")
        if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            raise ExpressionError(f"{name}() takes exactly one argument, without keywords or unpacking")
        return ("call", name, _convert(node.args[0], depth + 1, in_exponent))
    what = {
        ast.Attribute: "attribute access",
        ast.Lambda: "a lambda",
        ast.ListComp: "a comprehension",
        ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.GeneratorExp: "a generator expression",
        ast.Subscript: "subscripting",
        ast.Compare: "a comparison",
        ast.BoolOp: "a boolean operator",
        ast.IfExp: "a conditional expression",
        ast.NamedExpr: "an assignment",
        ast.JoinedStr: "a string",
        ast.BinOp: "this operator",
        ast.UnaryOp: "this operator",
        ast.Await: "await",
        ast.List: "a list",
        ast.Tuple: "a tuple",
        ast.Dict: "a dict",
        ast.Set: "a set",
        ast.Starred: "unpacking",
    }.get(type(node), type(node).__name__)
    raise ExpressionError(f"{what} is not allowed ({ast.unparse(node)!r}); allowed are {_allowed_text()}")


def _constant(node: Node) -> float | None:
    if node[0] == "num":
        return node[1]
    if node[0] == "neg" and node[1][0] == "num":
        return -node[1][1]
    return None


# -- building with light simplification -------------------------------------------------------------------------------


def _add(a: Node, b: Node) -> Node:
    if a == ("num", 0.0):
        return b
    if b == ("num", 0.0):
        return a
    if a[0] == "num" and b[0] == "num":
        return ("num", a[1] + b[1])
    return ("add", a, b)


def _sub(a: Node, b: Node) -> Node:
    if b == ("num", 0.0):
        return a
    if a == ("num", 0.0):
        return _neg(b)
    if a[0] == "num" and b[0] == "num":
        return ("num", a[1] - b[1])
    return ("sub", a, b)


def _mul(a: Node, b: Node) -> Node:
    if a == ("num", 0.0) or b == ("num", 0.0):
        return ("num", 0.0)
    if a == ("num", 1.0):
        return b
    if b == ("num", 1.0):
        return a
    if a[0] == "num" and b[0] == "num":
        return ("num", a[1] * b[1])
    return ("mul", a, b)


def _div(a: Node, b: Node) -> Node:
    if a == ("num", 0.0):
        return ("num", 0.0)
    if b == ("num", 1.0):
        return a
    return ("div", a, b)


def _neg(a: Node) -> Node:
    if a[0] == "num":
        return ("num", -a[1])
    if a[0] == "neg":
        return a[1]
    return ("neg", a)


def _pow(a: Node, b: Node) -> Node:
    if b == ("num", 1.0):
        return a
    if b == ("num", 0.0):
        return ("num", 1.0)
    return ("pow", a, b)


def _call(name: str, a: Node) -> Node:
    return ("call", name, a)


def derivative(node: Node, var: str) -> Node:
    """The derivative of ``node`` with respect to ``var``, by the sum, product, quotient, power and chain rules."""
    kind = node[0]
    if kind == "num":
        return ("num", 0.0)
    if kind == "var":
        return ("num", 1.0 if node[1] == var else 0.0)
    if kind == "neg":
        return _neg(derivative(node[1], var))
    if kind in ("add", "sub"):
        combine = _add if kind == "add" else _sub
        return combine(derivative(node[1], var), derivative(node[2], var))
    if kind == "mul":
        a, b = node[1], node[2]
        return _add(_mul(derivative(a, var), b), _mul(a, derivative(b, var)))
    if kind == "div":
        a, b = node[1], node[2]
        return _div(_sub(_mul(derivative(a, var), b), _mul(a, derivative(b, var))), _pow(b, ("num", 2.0)))
    if kind == "pow":
        a, b = node[1], node[2]
        da, db = derivative(a, var), derivative(b, var)
        if db == ("num", 0.0):
            return _mul(_mul(b, _pow(a, _sub(b, ("num", 1.0)))), da)
        return _mul(node, _add(_mul(db, _call("log", a)), _div(_mul(b, da), a)))
    if kind == "call":
        name, a = node[1], node[2]
        da = derivative(a, var)
        outer = {
            "sin": lambda: _call("cos", a),
            "cos": lambda: _neg(_call("sin", a)),
            "tan": lambda: _div(("num", 1.0), _pow(_call("cos", a), ("num", 2.0))),
            "exp": lambda: node,
            "log": lambda: _div(("num", 1.0), a),
            "sqrt": lambda: _div(("num", 0.5), node),
            "tanh": lambda: _sub(("num", 1.0), _pow(node, ("num", 2.0))),
            "sinh": lambda: _call("cosh", a),
            "cosh": lambda: _call("sinh", a),
            "abs": lambda: _call("sign", a),
            "atan": lambda: _div(("num", 1.0), _add(("num", 1.0), _pow(a, ("num", 2.0)))),
            "sign": lambda: ("num", 0.0),
        }[name]()
        return _mul(outer, da)
    raise AssertionError(f"unknown node {kind!r}")  # pragma: no cover - the parser builds only the kinds above


def evaluate(node: Node, x: Any, y: Any) -> Any:
    """The value of ``node`` at ``(x, y)`` (NumPy arrays or floats), in float64."""
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "var":
        return x if node[1] == "x" else y
    if kind == "neg":
        return -evaluate(node[1], x, y)
    if kind == "call":
        fn = FUNCTIONS.get(node[1]) or _INTERNAL[node[1]]
        return fn(evaluate(node[2], x, y))
    a, b = evaluate(node[1], x, y), evaluate(node[2], x, y)
    if kind == "add":
        return a + b
    if kind == "sub":
        return a - b
    if kind == "mul":
        return a * b
    if kind == "div":
        return np.divide(a, b)
    return np.power(np.asarray(a, dtype=np.float64), b)


def to_text(node: Node) -> str:
    """The expression as text, fully parenthesised where needed."""
    kind = node[0]
    if kind == "num":
        return f"{node[1]:g}"
    if kind == "var":
        return node[1]
    if kind == "neg":
        return f"-({to_text(node[1])})"
    if kind == "call":
        return f"{node[1]}({to_text(node[2])})"
    symbol = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}[kind]
    return f"({to_text(node[1])} {symbol} {to_text(node[2])})"


@dataclass(frozen=True)
class Expression:
    """A parsed function of ``x`` and ``y`` with its symbolic partial derivatives."""

    text: str
    tree: Node
    dx: Node
    dy: Node

    def value(self, x: Any, y: Any) -> Any:
        """``f(x, y)`` on floats or arrays."""
        with np.errstate(all="ignore"):
            return np.asarray(evaluate(self.tree, x, y), dtype=np.float64) + np.zeros(np.broadcast(x, y).shape)

    def gradient(self, x: Any, y: Any) -> tuple[Any, Any]:
        """``(df/dx, df/dy)`` on floats or arrays."""
        shape = np.zeros(np.broadcast(x, y).shape)
        with np.errstate(all="ignore"):
            return (
                np.asarray(evaluate(self.dx, x, y), dtype=np.float64) + shape,
                np.asarray(evaluate(self.dy, x, y), dtype=np.float64) + shape,
            )


def parse(text: str) -> Expression:
    """Parse and check ``text``, and differentiate it.

    Raises:
        ExpressionError: the text is too long or too large, is not valid syntax, or uses anything outside the
            allow-list; the message says what.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"the expression must be text, got {type(text).__name__}")
    if not text.strip():
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression has {len(text)} characters; at most {MAX_LENGTH} are allowed")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"the expression is not valid syntax ({exc.msg}): {text!r}") from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise ExpressionError(f"the expression has {count} parts; at most {MAX_NODES} are allowed")
    node = _convert(tree)
    return Expression(text.strip(), node, derivative(node, "x"), derivative(node, "y"))
