"""RSE expressions: Rucio's grammar and left-to-right evaluation, with positioned errors.

Grammar (whitespace between tokens is ignored)::

    expression := term (OPERATOR term)*
    term       := "(" expression ")" | "*" | WORD | WORD COMPARISON VALUE
    OPERATOR   := "|" (union) | "&" (intersection) | "\\" (difference)
    COMPARISON := "=" | "!=" | "<" | ">" | "<=" | ">="
    WORD/VALUE := one or more of  A-Z a-z 0-9 . _ - : / +

The operators have no precedence: they apply strictly left to right, and parentheses
force an order (``A|B&C`` is ``(A|B)&C``), as in Rucio. Every expression Rucio accepts
parses the same way here; fedlake adds whitespace, ``!=``, ``<=``, ``>=`` and a few value
characters. ``docs/rse-expressions.md`` describes the matching rules for users.

The parser and the evaluator use explicit stacks, so a long or deeply nested expression
is never a RecursionError. Every syntax error is an :class:`InvalidRSEExpression` naming
the 0-based position and the text at fault. An expression that selects no RSE raises
InvalidRSEExpression too, unless the caller allows an empty result.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from fedlake.domain.errors import InvalidRSEExpression

__all__ = ["evaluate", "parse"]

#: A parsed expression: ``("op", "|" | "&" | "\\", left, right)``,
#: ``("prim", key, comparison or None, value or None)`` or ``("all",)``.
Node = tuple[Any, ...]

_TOKEN = re.compile(
    r"(?P<op>[|&\\])|(?P<open>\()|(?P<close>\))|(?P<all>\*)"
    r"|(?P<cmp>!=|<=|>=|[=<>])|(?P<word>[A-Za-z0-9._:/+-]+)"
)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_NUMERIC = ("<", ">", "<=", ">=")
_OPERATORS = "| (union), & (intersection) or \\ (difference)"
_CLIP = 80


class _Token(NamedTuple):
    kind: str  # op, open, close, all, cmp, word, end
    text: str
    pos: int


def _q(text: str) -> str:
    """``text`` in quotes as typed (a backslash stays one backslash), clipped if long."""
    if len(text) > _CLIP:
        text = text[: _CLIP - 3] + "..."
    return f"'{text}'" if text.isprintable() else repr(text)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _tokens(text: str) -> Iterator[_Token]:
    """Tokens one by one, so the first problem by position is the one reported."""
    pos = _skip_space(text, 0)
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise InvalidRSEExpression(
                f"unexpected character {text[pos]!r} at position {pos} in the RSE expression "
                f"{_q(text)}; an expression is made of RSE names, attributes and "
                "comparisons such as QOS=SAFE or tier<2, '*', parentheses and the operators "
                f"{_OPERATORS}"
            )
        kind = m.lastgroup or ""
        yield _Token(kind, m.group(kind), pos)
        pos = _skip_space(text, m.end())
    yield _Token("end", "", len(text))


@dataclass
class _Frame:
    """One parenthesis level (the outermost has ``open_at`` None) being folded left to right."""

    open_at: int | None
    left: Node | None = None
    last: tuple[int, int] = (0, 0)  # where ``left``'s last term is in the text, for messages
    op: _Token | None = None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.stream = _tokens(text)
        self.ahead: _Token | None = None
        self.frames = [_Frame(None)]

    def fail(self, problem: str, hint: str) -> InvalidRSEExpression:
        return InvalidRSEExpression(f"{problem} in the RSE expression {_q(self.text)}; {hint}")

    def next(self) -> _Token:
        if self.ahead is not None:
            tok, self.ahead = self.ahead, None
            return tok
        return next(self.stream)

    def peek(self) -> _Token:
        if self.ahead is None:
            self.ahead = next(self.stream)
        return self.ahead

    def run(self) -> Node:
        while True:
            tok = self.next()
            if tok.kind == "end":
                return self.finish(tok)
            if tok.kind in ("word", "all", "open"):
                self.term(tok)
            elif tok.kind == "op":
                self.operator(tok)
            elif tok.kind == "close":
                self.close(tok)
            else:
                self.stray_comparison(tok)

    # --- terms -------------------------------------------------------------------------

    def term(self, tok: _Token) -> None:
        frame = self.frames[-1]
        if frame.left is not None and frame.op is None:
            raise self.fail(
                f"{_q(tok.text)} at position {tok.pos} follows {self.last_term(frame)} with no "
                "operator between them",
                f"join terms with {_OPERATORS}",
            )
        if tok.kind == "open":
            self.frames.append(_Frame(tok.pos))
        elif tok.kind == "all":
            self.combine(("all",), tok.pos, tok.pos + 1)
        else:
            self.primitive(tok)

    def primitive(self, key: _Token) -> None:
        if self.peek().kind != "cmp":
            self.combine(("prim", key.text, None, None), key.pos, key.pos + len(key.text))
            return
        cmp = self.next()
        value = self.next()
        if value.kind != "word":
            found = "the expression ends" if value.kind == "end" else f"{_q(value.text)} follows"
            raise self.fail(
                f"the comparison {_q(cmp.text)} at position {cmp.pos} has no value on its right "
                f"({found} at position {value.pos})",
                f"write key{cmp.text}value, e.g. tier{cmp.text}2",
            )
        if cmp.text in _NUMERIC and not _NUMBER.fullmatch(value.text):
            raise self.fail(
                f"{_q(value.text)} at position {value.pos} is not a number, but {_q(cmp.text)} "
                "compares numbers",
                "use a decimal number such as 2, -1 or 1.5 (or '=' to compare text)",
            )
        end = value.pos + len(value.text)
        self.combine(("prim", key.text, cmp.text, value.text), key.pos, end)

    def combine(self, node: Node, start: int, end: int) -> None:
        """Fold the term ``text[start:end]`` into the innermost level, left to right."""
        frame = self.frames[-1]
        if frame.op is None:
            frame.left = node
        else:
            frame.left = ("op", frame.op.text, frame.left, node)
            frame.op = None
        frame.last = (start, end)

    def last_term(self, frame: _Frame) -> str:
        return _q(self.text[frame.last[0] : frame.last[1]])

    # --- operators and parentheses -----------------------------------------------------

    def operator(self, tok: _Token) -> None:
        frame = self.frames[-1]
        if frame.op is not None:
            raise self.fail(
                f"the operator {_q(tok.text)} at position {tok.pos} follows the operator "
                f"{_q(frame.op.text)} at position {frame.op.pos}",
                "put a term between them",
            )
        if frame.left is None:
            where = "at the start" if frame.open_at is None else f"after '(' at {frame.open_at}"
            raise self.fail(
                f"the operator {_q(tok.text)} at position {tok.pos} has no term on its left "
                f"({where})",
                "begin with an RSE name, an attribute, '*' or '('",
            )
        frame.op = tok

    def close(self, tok: _Token) -> None:
        frame = self.frames[-1]
        if frame.open_at is None:
            raise self.fail(
                f"the ')' at position {tok.pos} has no matching '('",
                "remove it, or add '(' before the terms it should group",
            )
        if frame.op is not None:
            raise self.fail(
                f"the operator {_q(frame.op.text)} at position {frame.op.pos} has no term on its "
                f"right (')' follows at position {tok.pos})",
                "add a term after the operator or remove it",
            )
        if frame.left is None:
            raise self.fail(
                f"empty parentheses {_q(self.text[frame.open_at : tok.pos + 1])} at position "
                f"{frame.open_at}",
                "put an expression between '(' and ')' or remove them",
            )
        self.frames.pop()
        self.combine(frame.left, frame.open_at, tok.pos + 1)

    def stray_comparison(self, tok: _Token) -> None:
        frame = self.frames[-1]
        if frame.left is not None and frame.op is None:
            raise self.fail(
                f"the comparison {_q(tok.text)} at position {tok.pos} follows the complete term "
                f"{self.last_term(frame)}",
                "a comparison joins one attribute key and one value, e.g. QOS=SAFE; "
                f"join terms with {_OPERATORS}",
            )
        raise self.fail(
            f"the comparison {_q(tok.text)} at position {tok.pos} has no attribute key on its left",
            f"write key{tok.text}value, e.g. tier{tok.text}2",
        )

    def finish(self, end: _Token) -> Node:
        frame = self.frames[-1]
        if frame.op is not None:
            raise self.fail(
                f"the operator {_q(frame.op.text)} at position {frame.op.pos} has no term on its "
                f"right (the expression ends at position {end.pos})",
                "add a term after the operator or remove it",
            )
        if frame.open_at is not None:
            raise self.fail(
                f"the '(' at position {frame.open_at} is never closed",
                "add ')' after the terms it groups",
            )
        assert frame.left is not None  # the caller refused blank text
        return frame.left


def parse(text: str) -> Node:
    """Parse ``text`` into a tree (see :data:`Node`); InvalidRSEExpression names the position."""
    if not isinstance(text, str):
        raise InvalidRSEExpression(
            f"an RSE expression must be text, not {type(text).__name__}; use '*' for all RSEs"
        )
    if not text.strip():
        raise InvalidRSEExpression(
            f"the RSE expression {_q(text)} is empty; name RSEs or attributes, or use '*' for "
            "every RSE"
        )
    return _Parser(text).run()


# --- matching ------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """An attribute value as Rucio stores it: text, with booleans as 'true'/'false'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.lower() if value.lower() in ("true", "false") else value
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError:  # an int too long to print (sys.get_int_max_str_digits)
            return None
    return None  # null, lists, objects: equal to no value


def _number(value: Any) -> float | None:
    """The attribute as a number, or None if it is not one (booleans are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return None


def _equal(have: Any, val: str) -> bool:
    """``key=val``: a number attribute compares as a number, anything else as text."""
    if isinstance(have, int | float) and not isinstance(have, bool) and _NUMBER.fullmatch(val):
        number = _number(have)
        if number is not None:
            return number == float(val)
    text = _text(have)
    return text is not None and text == _text(val)


def _matches(
    name: str, attrs: Mapping[str, Any], key: str, cmp: str | None, val: str | None
) -> bool:
    if cmp is None:  # a bare word: the RSE of that name, or a true attribute
        have = attrs.get(key)
        return name == key or have is True or (isinstance(have, str) and have.lower() == "true")
    assert val is not None
    if cmp in ("=", "!="):
        equal = key in attrs and _equal(attrs[key], val)
        return equal == (cmp == "=")
    number = _number(attrs.get(key))
    if number is None:
        return False
    bound = float(val)
    if cmp == "<":
        return number < bound
    if cmp == ">":
        return number > bound
    if cmp == "<=":
        return number <= bound
    return number >= bound


def _leaf(node: Node, rses: Mapping[str, Mapping[str, Any]]) -> set[str]:
    if node[0] == "all":
        return set(rses)
    _, key, cmp, val = node
    return {name for name, attrs in rses.items() if _matches(name, attrs, key, cmp, val)}


def _evaluate_tree(root: Node, rses: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Post-order over the tree with an explicit stack (left-deep trees can be very deep)."""
    results: list[set[str]] = []
    leaves: dict[Node, set[str]] = {}  # a term repeated is matched once (sets are not mutated)
    todo: list[tuple[Node, bool]] = [(root, False)]
    while todo:
        node, children_done = todo.pop()
        if node[0] != "op":
            if node not in leaves:
                leaves[node] = _leaf(node, rses)
            results.append(leaves[node])
        elif children_done:
            right, left = results.pop(), results.pop()
            op = node[1]
            results.append(
                left | right if op == "|" else left & right if op == "&" else left - right
            )
        else:
            todo.extend(((node, True), (node[3], False), (node[2], False)))
    return results[0]


def evaluate(
    text: str, rses: Mapping[str, Mapping[str, Any]], *, allow_empty: bool = False
) -> list[str]:
    """Sorted names of the RSEs (``{name: attributes}``) that ``text`` selects.

    Raises InvalidRSEExpression for a syntax error, and for an empty result unless
    ``allow_empty`` (Rucio: "RSE Expression resulted in an empty set").
    """
    result = sorted(_evaluate_tree(parse(text), rses))
    if not result and not allow_empty:
        raise InvalidRSEExpression(
            f"RSE expression {_q(text)} resulted in an empty set: no RSE matches it; "
            "check the RSE names and attribute values (rucio rse attribute list RSE, or "
            "GET /rses/RSE/attr/), or use '*' for every RSE"
        )
    return result
