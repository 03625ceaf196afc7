"""RSE expressions, evaluated like Rucio: left to right, parentheses force order.

Grammar::

    expr    := term (OP term)*          OP is '|' (union), '&' (intersection), '\\' (difference)
    term    := '(' expr ')' | '*' | primitive
    primitive := KEY | KEY CMP VALUE    CMP is '=', '!=', '<', '>', '<=', '>='

A bare ``KEY`` selects RSEs whose attribute KEY is true; every RSE carries its own name
as such an attribute, so a bare RSE name selects that RSE. ``<`` and ``>`` compare
numbers. Errors name the position of the problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fedlake.domain.errors import InvalidRSEExpression

__all__ = ["evaluate", "parse"]

_TOKEN = re.compile(
    r"\s*(?:(?P<op>[|&\\])|(?P<lp>\()|(?P<rp>\))|(?P<star>\*)"
    r"|(?P<prim>[A-Za-z0-9_.\-:]+(?:(?:!=|<=|>=|=|<|>)[A-Za-z0-9_.\-:*]+)?))"
)
_PRIM = re.compile(r"^(?P<key>[A-Za-z0-9_.\-:]+)(?:(?P<cmp>!=|<=|>=|=|<|>)(?P<val>.+))?$")

Node = tuple[Any, ...]


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise InvalidRSEExpression(
                f"RSE expression {text!r}: unexpected {text[pos:].lstrip()[:1]!r} "
                f"at position {pos + len(text[pos:]) - len(text[pos:].lstrip())}"
            )
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


def parse(text: str) -> Node:
    """Parse into a tree of ('op', sym, left, right) / ('prim', key, cmp, val) / ('all',)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRSEExpression("the RSE expression is empty; use '*' for all RSEs")
    toks = _tokens(text)
    node, i = _expr(text, toks, 0)
    if i != len(toks):
        raise InvalidRSEExpression(
            f"RSE expression {text!r}: unexpected {toks[i][1]!r} at position {toks[i][2]}"
        )
    return node


def _expr(text: str, toks: list[tuple[str, str, int]], i: int) -> tuple[Node, int]:
    left, i = _term(text, toks, i)
    while i < len(toks) and toks[i][0] == "op":
        op = toks[i][1]
        right, i = _term(text, toks, i + 1)
        left = ("op", op, left, right)
    return left, i


def _term(text: str, toks: list[tuple[str, str, int]], i: int) -> tuple[Node, int]:
    if i >= len(toks):
        raise InvalidRSEExpression(
            f"RSE expression {text!r}: ends early at position {len(text)}; a term is missing"
        )
    kind, val, pos = toks[i]
    if kind == "lp":
        node, j = _expr(text, toks, i + 1)
        if j >= len(toks) or toks[j][0] != "rp":
            raise InvalidRSEExpression(
                f"RSE expression {text!r}: the '(' at position {pos} is never closed"
            )
        return node, j + 1
    if kind == "star":
        return ("all",), i + 1
    if kind == "prim":
        m = _PRIM.match(val)
        assert m is not None
        if m.group("cmp") in ("<", ">", "<=", ">="):
            try:
                float(m.group("val"))
            except ValueError:
                raise InvalidRSEExpression(
                    f"RSE expression {text!r}: {val!r} at position {pos} compares with "
                    "a non-number; '<' and '>' need numbers"
                ) from None
        return ("prim", m.group("key"), m.group("cmp"), m.group("val")), i + 1
    raise InvalidRSEExpression(f"RSE expression {text!r}: unexpected {val!r} at position {pos}")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _match(attrs: Mapping[str, Any], key: str, cmp: str | None, val: str | None) -> bool:
    if key not in attrs:
        return cmp == "!="
    have = attrs[key]
    if cmp is None:
        return have is True or _text(have).lower() == "true"
    assert val is not None
    if cmp in ("=", "!="):
        if isinstance(have, bool) or val.lower() in ("true", "false"):
            equal = _text(have).lower() == val.lower()
        else:
            equal = _text(have) == val
            if not equal:
                try:
                    equal = float(have) == float(val)
                except (TypeError, ValueError):
                    equal = False
        return equal if cmp == "=" else not equal
    try:
        number = float(have)
    except (TypeError, ValueError):
        return False
    bound = float(val)
    return {"<": number < bound, ">": number > bound, "<=": number <= bound, ">=": number >= bound}[
        cmp
    ]


def _eval(node: Node, rses: Mapping[str, Mapping[str, Any]]) -> set[str]:
    if node[0] == "all":
        return set(rses)
    if node[0] == "prim":
        _, key, cmp, val = node
        return {name for name, attrs in rses.items() if _match(attrs, key, cmp, val)}
    _, op, left, right = node
    a, b = _eval(left, rses), _eval(right, rses)
    if op == "|":
        return a | b
    if op == "&":
        return a & b
    return a - b


def evaluate(
    text: str, rses: Mapping[str, Mapping[str, Any]], *, allow_empty: bool = False
) -> list[str]:
    """Return the sorted names of RSEs (``{name: attributes}``) the expression selects."""
    result = sorted(_eval(parse(text), rses))
    if not result and not allow_empty:
        raise InvalidRSEExpression(f"RSE expression {text!r} matches no RSE")
    return result
