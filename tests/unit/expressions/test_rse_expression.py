"""RSE expressions: grammar, Rucio's left-to-right evaluation, and errors with positions."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlake.domain.errors import InvalidRSEExpression
from fedlake.expressions.rse_expression import evaluate, parse

Attrs = dict[str, Any]


def with_names(rses: Mapping[str, Attrs]) -> dict[str, Attrs]:
    """Every RSE carries its own name as a true attribute (as the catalogue provides them)."""
    return {name: {name: True, **attrs} for name, attrs in rses.items()}


RSES = with_names(
    {
        "CERN-DISK": {"site": "CERN", "tier": 0, "tape": False, "QOS": "SAFE", "freespace": "900"},
        "CERN-TAPE": {"site": "CERN", "tier": 0, "tape": True, "QOS": "TAPE"},
        "DESY-DISK": {"site": "DESY", "tier": 1, "country": "DE", "freespace": 50},
        "PIC-DISK": {"site": "PIC", "tier": "1", "tape": "false", "QOS": "FAST"},
        "INFN-T1": {"site": "CNAF", "tier": 1.0, "tape": "TRUE", "freespace": "12.5"},
    }
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*", sorted(RSES)),
        ("CERN-DISK", ["CERN-DISK"]),
        ("tape", ["CERN-TAPE", "INFN-T1"]),
        ("tape=true", ["CERN-TAPE", "INFN-T1"]),
        ("tape=False", ["CERN-DISK", "PIC-DISK"]),
        ("site=CERN", ["CERN-DISK", "CERN-TAPE"]),
        ("site=cern", []),
        ("site!=CERN", ["DESY-DISK", "INFN-T1", "PIC-DISK"]),
        ("country!=DE", ["CERN-DISK", "CERN-TAPE", "INFN-T1", "PIC-DISK"]),
        ("tier=1", ["DESY-DISK", "INFN-T1", "PIC-DISK"]),
        ("tier=1.0", ["DESY-DISK", "INFN-T1", "PIC-DISK"]),
        ("tier<1", ["CERN-DISK", "CERN-TAPE"]),
        ("tier<=1", sorted(RSES)),
        ("tier>0", ["DESY-DISK", "INFN-T1", "PIC-DISK"]),
        ("tier>=1", ["DESY-DISK", "INFN-T1", "PIC-DISK"]),
        ("freespace>40", ["CERN-DISK", "DESY-DISK"]),
        ("freespace<=12.5", ["INFN-T1"]),
        ("freespace>-1", ["CERN-DISK", "DESY-DISK", "INFN-T1"]),
        ("site>1", []),
        ("QOS=SAFE|QOS=FAST", ["CERN-DISK", "PIC-DISK"]),
        ("site=CERN&tape", ["CERN-TAPE"]),
        ("site=CERN\\tape", ["CERN-DISK"]),
        ("*\\site=CERN", ["DESY-DISK", "INFN-T1", "PIC-DISK"]),
        # left to right: (A | B) & C
        ("CERN-DISK|DESY-DISK&tier=1", ["DESY-DISK"]),
        ("CERN-DISK|(DESY-DISK&tier=1)", ["CERN-DISK", "DESY-DISK"]),
        ("tier=1\\DESY-DISK|CERN-TAPE", ["CERN-TAPE", "INFN-T1", "PIC-DISK"]),
        ("tier=1\\(DESY-DISK|CERN-TAPE)", ["INFN-T1", "PIC-DISK"]),
        (
            "  ( site=CERN | site=DESY ) & ( tier = 0 )  ".replace(" = ", "="),
            ["CERN-DISK", "CERN-TAPE"],
        ),
        ("((((CERN-DISK))))", ["CERN-DISK"]),
        ("unknown_key|CERN-DISK", ["CERN-DISK"]),
    ],
)
def test_evaluate(expression: str, expected: list[str]) -> None:
    assert evaluate(expression, RSES, allow_empty=True) == expected


def test_evaluate_refuses_empty_result() -> None:
    with pytest.raises(InvalidRSEExpression, match="'site=NOWHERE' matches no RSE"):
        evaluate("site=NOWHERE", RSES)
    assert evaluate("site=NOWHERE", RSES, allow_empty=True) == []


def test_evaluate_without_rses() -> None:
    assert evaluate("*", {}, allow_empty=True) == []
    with pytest.raises(InvalidRSEExpression, match="matches no RSE"):
        evaluate("*", {})


def test_parse_tree() -> None:
    a, b, c = (("prim", x, None, None) for x in "ABC")
    assert parse("A|B&C") == ("op", "&", ("op", "|", a, b), c)
    assert parse("A|(B&C)") == ("op", "|", a, ("op", "&", b, c))
    assert parse("*\\A") == ("op", "\\", ("all",), a)
    assert parse("tier>=1e3") == ("prim", "tier", ">=", "1e3")
    assert parse("x!=-1") == ("prim", "x", "!=", "-1")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("A &", "ends early at position 3; a term is missing"),
        ("A\\", "ends early at position 2"),
        ("(A|B", "the '(' at position 0 is never closed"),
        ("A|(B&C", "the '(' at position 2 is never closed"),
        ("A B", "unexpected 'B' at position 2"),
        ("A)", "unexpected ')' at position 1"),
        ("A|B)", "unexpected ')' at position 3"),
        ("A | $", "unexpected '$' at position 4"),
        ("  A  ^", "unexpected '^' at position 5"),
        ("|A", "unexpected '|' at position 0"),
        ("A||B", "unexpected '|' at position 2"),
        ("()", "unexpected ')' at position 1"),
        ("A=", "unexpected '=' at position 1"),
        ("tier<abc", "'tier<abc' at position 0 compares with a non-number"),
        ("A|tier>x", "'tier>x' at position 2 compares with a non-number"),
        ("", "empty; use '*' for all RSEs"),
        ("   ", "empty"),
    ],
)
def test_errors_name_the_position(expression: str, message: str) -> None:
    with pytest.raises(InvalidRSEExpression, match=re.escape(message)) as info:
        parse(expression)
    assert info.value.status == 400
    with pytest.raises(InvalidRSEExpression):
        evaluate(expression, RSES, allow_empty=True)


def test_non_string_expression() -> None:
    with pytest.raises(InvalidRSEExpression, match="empty"):
        parse(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Property: evaluate agrees with a brute-force set evaluator over random attribute maps.
# ---------------------------------------------------------------------------------------

NAMES = ["RSE-A", "RSE-B", "RSE_C", "D1", "E-2"]


@dataclass(frozen=True)
class Key:
    """An attribute: how RSEs carry it, literals written for it, and equality on it."""

    values: st.SearchStrategy[Any]
    literals: tuple[str, ...]
    equal: Callable[[Any, str], bool]
    numeric: bool


KEYS: dict[str, Key] = {
    "tier": Key(st.integers(0, 3), ("0", "1", "2", "3", "1.0"), lambda h, v: h == float(v), True),
    "tape": Key(
        st.booleans(),
        ("true", "false", "True", "FALSE"),
        lambda h, v: str(h).lower() == v.lower(),
        False,
    ),
    "site": Key(
        st.sampled_from(["CERN", "DESY", "PIC"]),
        ("CERN", "DESY", "PIC", "cern"),
        lambda h, v: h == v,
        False,
    ),
    "freespace": Key(
        st.sampled_from(["10", "200", "3000", "2.5"]),
        ("10", "200", "2.5", "2.50", "7"),
        lambda h, v: float(h) == float(v),
        True,
    ),
}
NUMBERS = ("0", "1", "2", "2.5", "150", "5000", "-1")
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


@st.composite
def rse_maps(draw: st.DrawFn) -> dict[str, Attrs]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=len(NAMES), unique=True))
    rses: dict[str, Attrs] = {}
    for name in names:
        attrs: Attrs = {}
        for key, spec in KEYS.items():
            if draw(st.booleans()):
                attrs[key] = draw(spec.values)
        rses[name] = attrs
    return with_names(rses)


def _leaf_matches(leaf: tuple[str, ...], name: str, attrs: Attrs) -> bool:
    kind = leaf[0]
    if kind == "all":
        return True
    if kind == "name":
        return leaf[1] == name
    key = leaf[1]
    if kind == "bare":
        return attrs.get(key) is True
    op, literal = leaf[2], leaf[3]
    if key not in attrs:
        return op == "!="
    have = attrs[key]
    if op in ("=", "!="):
        return KEYS[key].equal(have, literal) == (op == "=")
    if not KEYS[key].numeric:
        return False
    return COMPARE[op](float(have), float(literal))


@st.composite
def leaves(draw: st.DrawFn) -> tuple[str, tuple[str, ...]]:
    kind = draw(st.sampled_from(["all", "name", "bare", "eq", "cmp"]))
    if kind == "all":
        return "*", ("all",)
    if kind == "name":
        name = draw(st.sampled_from(NAMES))
        return name, ("name", name)
    if kind == "bare":
        key = draw(st.sampled_from(sorted(KEYS)))
        return key, ("bare", key)
    key = draw(st.sampled_from(sorted(KEYS)))
    if kind == "eq":
        op = draw(st.sampled_from(["=", "!="]))
        literal = draw(st.sampled_from(KEYS[key].literals))
    else:
        key = draw(st.sampled_from(["tier", "freespace", "site"]))
        op = draw(st.sampled_from(sorted(COMPARE)))
        literal = draw(st.sampled_from(NUMBERS))
    return f"{key}{op}{literal}", ("prim", key, op, literal)


Term = tuple[str, Any]  # ("leaf", leaf) | ("group", Expr)
Expr = tuple[list[Term], list[str]]


def exprs(depth: int = 3) -> st.SearchStrategy[tuple[str, Expr]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, Expr]:
        count = draw(st.integers(1, 4))
        texts: list[str] = []
        terms: list[Term] = []
        for _ in range(count):
            if depth > 0 and draw(st.integers(0, 3)) == 0:
                inner_text, inner = draw(exprs(depth - 1))
                pad = draw(st.sampled_from(["", " "]))
                texts.append(f"({pad}{inner_text}{pad})")
                terms.append(("group", inner))
            else:
                text, leaf = draw(leaves())
                texts.append(text)
                terms.append(("leaf", leaf))
        ops = [draw(st.sampled_from(["|", "&", "\\"])) for _ in range(count - 1)]
        out = texts[0]
        for op, text in zip(ops, texts[1:], strict=True):
            pad = draw(st.sampled_from(["", " ", "  "]))
            out += f"{pad}{op}{pad}{text}"
        return out, (terms, ops)

    return build()


def brute_force(expr: Expr, rses: Mapping[str, Attrs]) -> set[str]:
    """Left to right over the terms; a group is evaluated on its own first."""
    terms, ops = expr

    def term_set(term: Term) -> set[str]:
        kind, value = term
        if kind == "group":
            return brute_force(value, rses)
        return {name for name, attrs in rses.items() if _leaf_matches(value, name, attrs)}

    result = term_set(terms[0])
    for op, term in zip(ops, terms[1:], strict=True):
        other = term_set(term)
        if op == "|":
            result = result | other
        elif op == "&":
            result = result & other
        else:
            result = result - other
    return result


@settings(max_examples=150, deadline=None)
@given(rses=rse_maps(), case=exprs())
def test_evaluate_matches_brute_force(rses: dict[str, Attrs], case: tuple[str, Expr]) -> None:
    text, expr = case
    expected = sorted(brute_force(expr, rses))
    assert evaluate(text, rses, allow_empty=True) == expected
    if expected:
        assert evaluate(text, rses) == expected
    else:
        with pytest.raises(InvalidRSEExpression, match="matches no RSE"):
            evaluate(text, rses)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="AB=<>!()|&\\* 1x$", max_size=12))
def test_garbage_is_parsed_or_refused_with_a_position(text: str) -> None:
    """Any input either parses or raises InvalidRSEExpression naming a position (or 'empty')."""
    try:
        parse(text)
    except InvalidRSEExpression as exc:
        message = str(exc)
    else:
        return
    assert re.search(r"position \d+|empty", message), message
    found = re.search(r"position (\d+)", message)
    if found:
        assert 0 <= int(found.group(1)) <= len(text)
