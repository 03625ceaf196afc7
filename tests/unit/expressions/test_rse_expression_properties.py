"""Property tests: RSE expressions against a brute-force set evaluation, and garbage input.

Random RSE sets with random attributes, random expression trees rendered with random
spacing and redundant parentheses; ``evaluate`` must equal a plain left-to-right set
evaluation of the tree, written here independently of the parser.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlake.domain.errors import InvalidRSEExpression
from fedlake.expressions.rse_expression import evaluate, parse

Attrs = dict[str, Any]
RSEs = dict[str, Attrs]

#: RSE names; some are also attribute keys of other RSEs (a bare word matches both)
NAMES = ["RSE-A", "RSE-B", "RSE_C", "D1", "SITE-X", "tier2"]
KEYS = ["tier", "tape", "site", "freespace", "SITE-X", "tier2", "k.v"]
ATTRIBUTE_VALUES: list[Any] = [
    0, 1, 1.0, 2.5, -1,  # numbers
    "1", "1.0", "2.50", "010", " 3 ",  # numeric text
    True, False, "true", "TRUE", "False",  # booleans, as Rucio stores them too
    "CERN", "cern", "a.b:c/d", "", "nan", None, [1],  # other text, null, a list
]  # fmt: skip
#: literals for = and !=; several equal a number attribute by value but not by text
EQUAL_LITERALS = [
    "0", "0.0", "1", "1.0", "2.5", "2.50", "10", "010", "-1", "-1.0", "3",
    "true", "TRUE", "false", "CERN", "cern", "a.b:c/d", "None", "nan",
]  # fmt: skip
NUMBER_LITERALS = ["0", "1", "2", "2.5", "-1", "150", "1e0", ".5", "+3", "1E2", "0.0"]
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}
SPACES = ["", "", " ", "  ", "\t", "\n "]

# --- the oracle: what each primitive means, written without the parser's helpers ---------


def _as_float(value: Any) -> float | None:
    """Rucio's ``float(value)`` for the values these tests use; booleans are not numbers."""
    if isinstance(value, bool) or value is None or isinstance(value, list):
        return None
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", ""):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _canonical(text: str) -> str:
    return text.lower() if text.lower() in ("true", "false") else text


def oracle_equal(have: Any, literal: str) -> bool:
    if isinstance(have, bool):
        return _canonical(literal) == ("true" if have else "false")
    if isinstance(have, int | float):
        number = _as_float(literal)
        return have == number if number is not None else str(have) == literal
    if isinstance(have, str):
        return _canonical(have) == _canonical(literal)
    return False


def oracle_leaf(leaf: tuple[Any, ...], name: str, attrs: Attrs) -> bool:
    kind = leaf[0]
    if kind == "all":
        return True
    key = leaf[1]
    if kind == "bare":
        have = attrs.get(key)
        return key == name or have is True or (isinstance(have, str) and have.lower() == "true")
    op, literal = leaf[2], leaf[3]
    if op == "=":
        return key in attrs and oracle_equal(attrs[key], literal)
    if op == "!=":
        return not (key in attrs and oracle_equal(attrs[key], literal))
    number = _as_float(attrs.get(key))
    return number is not None and COMPARE[op](number, float(literal))


# --- random trees and their text ----------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    """``terms[0] ops[0] terms[1] ...``, applied left to right; a term is a leaf or a Chain."""

    terms: tuple[Any, ...]
    ops: tuple[str, ...]


def brute_force(node: Any, rses: RSEs) -> set[str]:
    if isinstance(node, Chain):
        result = brute_force(node.terms[0], rses)
        for op, term in zip(node.ops, node.terms[1:], strict=True):
            other = brute_force(term, rses)
            result = (
                result | other if op == "|" else result & other if op == "&" else result - other
            )
        return result
    return {name for name, attrs in rses.items() if oracle_leaf(node, name, attrs)}


@st.composite
def rse_sets(draw: st.DrawFn) -> RSEs:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=len(NAMES), unique=True))
    rses: RSEs = {}
    for name in names:
        keys = draw(st.lists(st.sampled_from(KEYS), max_size=len(KEYS), unique=True))
        attrs: Attrs = {key: draw(st.sampled_from(ATTRIBUTE_VALUES)) for key in keys}
        if draw(st.integers(0, 4)):  # usually the catalogue's own name attribute
            attrs[name] = True
        rses[name] = attrs
    return rses


@st.composite
def leaves(draw: st.DrawFn) -> tuple[str, tuple[Any, ...]]:
    kind = draw(st.sampled_from(["all", "bare", "bare", "equal", "compare", "compare"]))
    if kind == "all":
        return "*", ("all",)
    if kind == "bare":
        word = draw(st.sampled_from(NAMES + KEYS))
        return word, ("bare", word)
    key = draw(st.sampled_from(KEYS))
    if kind == "equal":
        op = draw(st.sampled_from(["=", "!="]))
        literal = draw(st.sampled_from(EQUAL_LITERALS))
    else:
        op = draw(st.sampled_from(sorted(COMPARE)))
        literal = draw(st.sampled_from(NUMBER_LITERALS))
    left, right = draw(st.sampled_from(SPACES)), draw(st.sampled_from(SPACES))
    return f"{key}{left}{op}{right}{literal}", ("cmp", key, op, literal)


def _redundant(draw: st.DrawFn, text: str) -> str:
    """Wrap ``text`` in 0-2 pairs of parentheses that change nothing."""
    for _ in range(draw(st.integers(0, 2))):
        text = f"({draw(st.sampled_from(SPACES))}{text}{draw(st.sampled_from(SPACES))})"
    return text


def chains(depth: int = 3) -> st.SearchStrategy[tuple[str, Chain]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, Chain]:
        count = draw(st.integers(1, 4))
        texts: list[str] = []
        terms: list[Any] = []
        for _ in range(count):
            if depth > 0 and draw(st.integers(0, 3)) == 0:
                inner_text, inner = draw(chains(depth - 1))
                texts.append(f"({inner_text})")  # required: the group changes the order
                terms.append(inner)
            else:
                text, leaf = draw(leaves())
                texts.append(text)
                terms.append(leaf)
            texts[-1] = _redundant(draw, texts[-1])
        ops = tuple(draw(st.sampled_from(["|", "&", "\\"])) for _ in range(count - 1))
        out = texts[0]
        for op, text in zip(ops, texts[1:], strict=True):
            out += f"{draw(st.sampled_from(SPACES))}{op}{draw(st.sampled_from(SPACES))}{text}"
        return out, Chain(tuple(terms), ops)

    return build()


@st.composite
def expressions(draw: st.DrawFn) -> tuple[str, Chain]:
    text, tree = draw(chains())
    pad = draw(st.sampled_from(SPACES)), draw(st.sampled_from(SPACES))
    return pad[0] + _redundant(draw, text) + pad[1], tree


@settings(max_examples=200, deadline=None)
@given(rses=rse_sets(), case=expressions())
def test_evaluate_equals_brute_force(rses: RSEs, case: tuple[str, Chain]) -> None:
    text, tree = case
    expected = sorted(brute_force(tree, rses))
    assert evaluate(text, rses, allow_empty=True) == expected
    if expected:
        assert evaluate(text, rses) == expected
    else:
        with pytest.raises(InvalidRSEExpression, match="resulted in an empty set"):
            evaluate(text, rses)


@settings(max_examples=100, deadline=None)
@given(case=expressions())
def test_spacing_and_redundant_parentheses_do_not_change_the_tree(case: tuple[str, Chain]) -> None:
    text, _ = case
    tight = re.sub(r"\s+", "", text)
    assert parse(text) == parse(tight)
    assert parse(text) == parse(f"(({text}))")


# --- garbage -------------------------------------------------------------------------------

#: characters that are never part of an expression
NEVER_VALID = "$#%?,;~^@[]{}'\""
BAD = NEVER_VALID + "<>=!"
#: the first quoted text in a message is the offending text: "'B' at position 2 follows..."
_NAMED = re.compile(r"(['\"])(.*?)\1 at position (\d+)")


def check_error(text: str, exc: InvalidRSEExpression) -> int:
    """The message names a position inside the text and the text found there; the position."""
    message = str(exc)
    if not text.strip():
        assert "is empty" in message
        return 0
    found = _NAMED.search(message)
    assert found, message
    named, position = found.group(2), int(found.group(3))
    assert 0 <= position <= len(text), message
    if not named.endswith("...") and text.isprintable():
        assert text[position:].startswith(named), (text, message)
    return position


@settings(max_examples=150, deadline=None)
@given(case=expressions(), data=st.data())
def test_an_invalid_character_is_reported_at_or_before_it(
    case: tuple[str, Chain], data: st.DataObject
) -> None:
    text, _ = case
    at = data.draw(st.integers(0, len(text)))
    bad = data.draw(st.sampled_from(NEVER_VALID))
    mutated = text[:at] + bad + text[at:]
    with pytest.raises(InvalidRSEExpression) as info:
        parse(mutated)
    # what precedes ``at`` is the start of a valid expression, so the parser can only stop
    # at the bad character, or at the token it cut short (e.g. the value '-' of 'n<-$1')
    assert check_error(mutated, info.value) <= at


@settings(max_examples=150, deadline=None)
@given(case=expressions(), data=st.data())
def test_mutations_parse_or_fail_with_a_position(
    case: tuple[str, Chain], data: st.DataObject
) -> None:
    text, _ = case
    mutated = text
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(mutated)))
        how = data.draw(st.sampled_from(["insert", "delete", "duplicate", "swap"]))
        if how == "insert":
            piece = data.draw(st.sampled_from(list(BAD + "()|&\\* x")))
            mutated = mutated[:at] + piece + mutated[at:]
        elif how == "delete":
            mutated = mutated[:at] + mutated[at + 1 :]
        elif how == "duplicate":
            mutated = mutated[:at] + mutated[at : at + 1] * 2 + mutated[at + 1 :]
        else:
            mutated = (
                mutated[:at] + mutated[at + 1 : at + 2] + mutated[at : at + 1] + mutated[at + 2 :]
            )
    try:
        parse(mutated)
    except InvalidRSEExpression as exc:
        check_error(mutated, exc)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=30))
def test_any_text_parses_or_fails_with_a_position(text: str) -> None:
    try:
        parse(text)
    except InvalidRSEExpression as exc:
        check_error(text, exc)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="AB=<>!()|&\\* 1x-.", min_size=1, max_size=16))
def test_expression_alphabet_parses_or_fails_with_a_position(text: str) -> None:
    try:
        tree = parse(text)
    except InvalidRSEExpression as exc:
        check_error(text, exc)
    else:
        evaluate(text, {"A": {"x": 1}, "B": {"x": "x"}}, allow_empty=True)  # never raises
        assert tree == parse(f"({text})")
