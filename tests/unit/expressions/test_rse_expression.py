"""RSE expressions: every operator and comparison, Rucio's semantics, errors with positions.

The property tests (random RSE sets and expression trees) are in
test_rse_expression_properties.py.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import pytest

from fedlake.domain.errors import InvalidRSEExpression
from fedlake.expressions.rse_expression import evaluate, parse

Attrs = dict[str, Any]


def with_names(rses: Mapping[str, Attrs]) -> dict[str, Attrs]:
    """Every RSE carries its own name as a true attribute, as the catalogue provides them."""
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
ALL = sorted(RSES)


def select(expression: str, rses: Mapping[str, Attrs] = RSES) -> list[str]:
    return evaluate(expression, rses, allow_empty=True)


# --- primitives --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*", ALL),
        # a bare word: an RSE name, or an attribute whose value is true
        ("CERN-DISK", ["CERN-DISK"]),
        ("INFN-T1", ["INFN-T1"]),
        ("tape", ["CERN-TAPE", "INFN-T1"]),  # True and the text "TRUE"; not "false"
        ("cern-disk", []),  # names and keys are case-sensitive
        ("TAPE", []),
        ("unknown_key", []),
        # key=value: text, exact case; booleans as true/false in any case
        ("site=CERN", ["CERN-DISK", "CERN-TAPE"]),
        ("site=cern", []),
        ("SITE=CERN", []),
        ("QOS=SAFE", ["CERN-DISK"]),
        ("tape=true", ["CERN-TAPE", "INFN-T1"]),
        ("tape=TRUE", ["CERN-TAPE", "INFN-T1"]),
        ("tape=False", ["CERN-DISK", "PIC-DISK"]),
        # a number attribute equals a number literal by value; a text attribute by its text
        ("tier=1", ["DESY-DISK", "INFN-T1", "PIC-DISK"]),
        ("tier=1.0", ["DESY-DISK", "INFN-T1"]),
        ("tier=0", ["CERN-DISK", "CERN-TAPE"]),
        ("freespace=900", ["CERN-DISK"]),
        ("freespace=900.0", []),
        ("freespace=50.0", ["DESY-DISK"]),
        ("freespace=12.5", ["INFN-T1"]),
        # key!=value: every RSE that key=value does not select, with or without the key
        ("site!=CERN", ["DESY-DISK", "INFN-T1", "PIC-DISK"]),
        ("country!=DE", ["CERN-DISK", "CERN-TAPE", "INFN-T1", "PIC-DISK"]),
        ("tape!=true", ["CERN-DISK", "DESY-DISK", "PIC-DISK"]),
        # < > <= >=: numbers only; text that is not a number never matches
        ("tier<1", ["CERN-DISK", "CERN-TAPE"]),
        ("tier<=1", ALL),
        ("tier>0", ["DESY-DISK", "INFN-T1", "PIC-DISK"]),
        ("tier>=1", ["DESY-DISK", "INFN-T1", "PIC-DISK"]),
        ("tier>1", []),
        ("freespace>40", ["CERN-DISK", "DESY-DISK"]),
        ("freespace<=12.5", ["INFN-T1"]),
        ("freespace<12.5", []),
        ("freespace>-1", ["CERN-DISK", "DESY-DISK", "INFN-T1"]),
        ("freespace>1e2", ["CERN-DISK"]),
        ("freespace>=.5", ["CERN-DISK", "DESY-DISK", "INFN-T1"]),
        ("freespace<+1E3", ["CERN-DISK", "DESY-DISK", "INFN-T1"]),
        ("site>1", []),
        ("site<1", []),
        ("tape>0", []),  # booleans are not numbers (True is not 1)
        ("tape<=1", []),
    ],
)
def test_primitives(expression: str, expected: list[str]) -> None:
    assert select(expression) == expected


def test_a_bare_word_is_the_rse_name_even_without_its_name_attribute() -> None:
    rses: dict[str, Attrs] = {
        "A-1": {},
        "B-2": {"A-1": True},
        "C-3": {"A-1": "True"},
        "D-4": {"A-1": 1},
    }
    assert select("A-1", rses) == ["A-1", "B-2", "C-3"]  # 1 is not true (Rucio: 'true' only)
    assert select("A-1", {"A-1": {"A-1": False}}) == ["A-1"]


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "",
        " ",
        "nan",
        "inf",
        "-inf",
        "1_000",
        "0x10",
        "1e",
        "true",
        None,
        [1],
        {"a": 1},
        True,
    ],
)
def test_values_that_are_not_numbers_never_match_a_comparison(value: Any) -> None:
    rses = {"X": {"n": value}, "Y": {"n": 5}}
    for op in ("<", ">", "<=", ">="):
        assert select(f"n{op}5", rses) == (["Y"] if "=" in op else [])


@pytest.mark.parametrize(
    ("value", "expression"),
    [
        (" 7 ", "n>6"),  # Rucio: float() of the stored text
        ("7.", "n>6"),
        ("-7e-1", "n<0"),
        (10**400, "n!=0"),  # too large for a float: compares as text, does not raise
        (10**400, "n=" + "1" + "0" * 400),
        pytest.param(10**5000, "n!=1", id="int-too-long-to-print"),  # equals nothing
        (float("inf"), "n>1e308"),
    ],
)
def test_unusual_number_attributes(value: Any, expression: str) -> None:
    assert select(expression, {"X": {"n": value}}) == ["X"]


def test_null_and_structured_values_equal_nothing() -> None:
    rses: dict[str, Attrs] = {"X": {"k": None}, "Y": {"k": [1]}, "Z": {"k": {"a": 1}}}
    assert select("k=None", rses) == []
    assert select("k=1", rses) == []
    assert select("k!=1", rses) == ["X", "Y", "Z"]
    assert select("k", rses) == []


@pytest.mark.parametrize(
    ("value", "expression"),
    [
        ("https://fts3.cern.ch:8446", "fts=https://fts3.cern.ch:8446"),
        ("a.b_c-d", "k=a.b_c-d"),
        ("v1+2", "k=v1+2"),
        ("1.10", "k=1.10"),
    ],
)
def test_value_characters(value: str, expression: str) -> None:
    rses = {"X": {"fts": value, "k": value}, "Y": {"fts": "other", "k": "1.1"}}
    assert select(expression, rses) == ["X"]


def test_text_that_looks_like_a_number_compares_as_text() -> None:
    """Versions stay versions: '1.10' is not '1.1' when the attribute is text."""
    rses: dict[str, Attrs] = {"X": {"v": "1.10"}, "Y": {"v": 1.1}}
    assert select("v=1.1", rses) == ["Y"]
    assert select("v=1.10", rses) == ["X", "Y"]  # Y holds the number 1.1


# --- operators and evaluation order --------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("QOS=SAFE|QOS=FAST", ["CERN-DISK", "PIC-DISK"]),
        ("site=CERN&tape", ["CERN-TAPE"]),
        ("site=CERN\\tape", ["CERN-DISK"]),
        ("*\\site=CERN", ["DESY-DISK", "INFN-T1", "PIC-DISK"]),
        ("CERN-DISK|CERN-DISK", ["CERN-DISK"]),
        ("CERN-DISK&DESY-DISK", []),
        ("CERN-DISK\\CERN-DISK", []),
        # strictly left to right, no precedence between | & and \
        ("CERN-DISK|DESY-DISK&tier=1", ["DESY-DISK"]),  # (A|B)&C
        ("CERN-DISK|(DESY-DISK&tier=1)", ["CERN-DISK", "DESY-DISK"]),
        ("tier=1&DESY-DISK|CERN-TAPE", ["CERN-TAPE", "DESY-DISK"]),  # (A&B)|C
        ("tier=1&(DESY-DISK|CERN-TAPE)", ["DESY-DISK"]),
        ("tier=1\\DESY-DISK|CERN-TAPE", ["CERN-TAPE", "INFN-T1", "PIC-DISK"]),  # (A\B)|C
        ("tier=1\\(DESY-DISK|CERN-TAPE)", ["INFN-T1", "PIC-DISK"]),
        ("*\\CERN-DISK\\CERN-TAPE", ["DESY-DISK", "INFN-T1", "PIC-DISK"]),  # (A\B)\C
        # a difference with nested parentheses: A \ (B \ (C | D))
        (
            "*\\(site=CERN\\(CERN-TAPE|DESY-DISK))",
            ["CERN-TAPE", "DESY-DISK", "INFN-T1", "PIC-DISK"],
        ),
        ("(*\\(site=CERN\\CERN-TAPE))&tier=0", ["CERN-TAPE"]),
        ("((((CERN-DISK))))", ["CERN-DISK"]),
        ("(CERN-DISK)|((DESY-DISK))", ["CERN-DISK", "DESY-DISK"]),
        ("unknown_key|CERN-DISK", ["CERN-DISK"]),
        ("*|*", ALL),
        ("*&tier=0", ["CERN-DISK", "CERN-TAPE"]),
    ],
)
def test_operators_left_to_right(expression: str, expected: list[str]) -> None:
    assert select(expression) == expected


def test_rucio_documentation_example() -> None:
    """Rucio's docs: 'type=SCRATCHDISK&cloud=IT|cloud=FR' also returns FR's other types."""
    rses = {
        "IT-SCRATCH": {"type": "SCRATCHDISK", "cloud": "IT"},
        "IT-DATA": {"type": "DATADISK", "cloud": "IT"},
        "FR-SCRATCH": {"type": "SCRATCHDISK", "cloud": "FR"},
        "FR-DATA": {"type": "DATADISK", "cloud": "FR"},
    }
    grouped = ["FR-SCRATCH", "IT-SCRATCH"]
    assert select("cloud=IT|cloud=FR&type=SCRATCHDISK", rses) == grouped
    assert select("(cloud=IT|cloud=FR)&type=SCRATCHDISK", rses) == grouped
    assert select("type=SCRATCHDISK&(cloud=IT|cloud=FR)", rses) == grouped
    assert select("type=SCRATCHDISK&cloud=IT|cloud=FR", rses) == [
        "FR-DATA",
        "FR-SCRATCH",
        "IT-SCRATCH",
    ]


@pytest.mark.parametrize(
    "expression",
    [
        " ( site=CERN | site=DESY ) & ( tier=0 ) ",
        "(site=CERN|site=DESY)&(tier=0)",
        "\t(site = CERN|site= DESY)\n&\r\ntier =0  ",
    ],
)
def test_whitespace_between_tokens_is_ignored(expression: str) -> None:
    assert select(expression) == ["CERN-DISK", "CERN-TAPE"]


@pytest.mark.parametrize(
    "expression",
    [
        # from Rucio's documentation: every expression Rucio accepts is accepted
        "EELA-UNLP_SCRATCHDISK",
        "site=EELA-UNLP",
        "type=SCRATCHDISK",
        "SPAINSITES",
        "tier=2&cloud=DE",
        "tier=1\\country=us",
        "cloud=IT|cloud=FR&type=SCRATCHDISK",
        "type=SCRATCHDISK&(cloud=IT|cloud=FR)",
        "EELA-UNLP_SCRATCHDISK|EELA-UNLP_PRODDISK",
        "cloud=ES\\type=SCRATCHDISK",
        "freespace>100&tier<2",
        "spacetoken=ATLASDATADISK&(*\\istape=true)",
        "a.b_c-d=x_y-z",
    ],
)
def test_rucio_expressions_parse(expression: str) -> None:
    parse(expression)


def test_parse_tree() -> None:
    a, b, c = (("prim", x, None, None) for x in "ABC")
    assert parse("A|B&C") == ("op", "&", ("op", "|", a, b), c)
    assert parse("A|(B&C)") == ("op", "|", a, ("op", "&", b, c))
    assert parse("(A)") == a
    assert parse("*\\A") == ("op", "\\", ("all",), a)
    assert parse(" tier >= 1e3 ") == ("prim", "tier", ">=", "1e3")
    assert parse("x!=-1") == ("prim", "x", "!=", "-1")
    assert parse("fts=https://h.ch:8446") == ("prim", "fts", "=", "https://h.ch:8446")


def test_long_and_deep_expressions_do_not_overflow_the_stack() -> None:
    n = sys.getrecursionlimit() * 3
    assert select("|".join(["CERN-DISK"] * n)) == ["CERN-DISK"]
    assert select("(" * n + "DESY-DISK" + ")" * n) == ["DESY-DISK"]
    assert select("*" + "\\CERN-DISK" * n) == ["CERN-TAPE", "DESY-DISK", "INFN-T1", "PIC-DISK"]
    with pytest.raises(InvalidRSEExpression, match=r"the '\(' at position 0 is never closed"):
        parse("(" * n + "A" + ")" * (n - 1))


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "position", "offending", "message"),
    [
        # unbalanced parentheses
        ("(A|B", 0, "(", "the '(' at position 0 is never closed"),
        ("A|(B&(C)", 2, "(", "the '(' at position 2 is never closed"),
        ("A)", 1, ")", "the ')' at position 1 has no matching '('"),
        ("(A|B))", 5, ")", "has no matching '('"),
        (")A", 0, ")", "has no matching '('"),
        # a dangling operator
        ("A &", 2, "&", "the operator '&' at position 2 has no term on its right (the expression"),
        ("A\\", 1, "\\", "the operator '\\' at position 1 has no term on its right"),
        ("(A|)", 2, "|", "has no term on its right (')' follows at position 3)"),
        ("|A", 0, "|", "the operator '|' at position 0 has no term on its left (at the start)"),
        ("B&(\\A)", 3, "\\", "has no term on its left (after '(' at 2)"),
        ("A||B", 2, "|", "the operator '|' at position 2 follows the operator '|' at position 1"),
        ("A|&B", 2, "&", "follows the operator '|' at position 1"),
        # two terms without an operator
        ("A B", 2, "B", "'B' at position 2 follows 'A' with no operator between them"),
        ("A (B)", 2, "(", "'(' at position 2 follows 'A' with no operator"),
        ("(A)B", 3, "B", "'B' at position 3 follows '(A)' with no operator"),
        ("* A", 2, "A", "follows '*' with no operator"),
        ("x=1 y=2", 4, "y", "'y' at position 4 follows 'x=1' with no operator"),
        ("(A|B) (C)", 6, "(", "follows '(A|B)' with no operator"),
        # empty parentheses
        ("()", 0, "()", "empty parentheses '()' at position 0"),
        ("A|( )", 2, "( )", "empty parentheses '( )' at position 2"),
        # comparisons
        ("tier<abc", 5, "abc", "'abc' at position 5 is not a number, but '<' compares numbers"),
        ("A|tier>=x1", 8, "x1", "'x1' at position 8 is not a number, but '>=' compares"),
        ("n<1.2.3", 2, "1.2.3", "is not a number"),
        ("n>nan", 2, "nan", "is not a number"),
        ("A=", 1, "=", "the comparison '=' at position 1 has no value on its right (the expre"),
        ("A= |B", 1, "=", "has no value on its right ('|' follows at position 3)"),
        ("x=<3", 1, "=", "has no value on its right ('<' follows at position 2)"),
        ("=A", 0, "=", "the comparison '=' at position 0 has no attribute key on its left"),
        ("A|<3", 2, "<", "has no attribute key on its left"),
        ("a=b=c", 3, "=", "the comparison '=' at position 3 follows the complete term 'a=b'"),
        ("(A)=1", 3, "=", "follows the complete term '(A)'"),
        ("*!=x", 1, "!=", "follows the complete term '*'"),
        # characters that are not part of the language
        ("A | $", 4, "$", "unexpected character '$' at position 4"),
        ("  A  ^", 5, "^", "unexpected character '^' at position 5"),
        ("site=CERN,DESY", 9, ",", "unexpected character ',' at position 9"),
        ("a!b", 1, "!", "unexpected character '!' at position 1"),
        ("site=*", 5, "*", "has no value on its right ('*' follows at position 5)"),
        ("site='CERN'", 5, "'", "unexpected character"),
        ("naïve", 2, "ï", "unexpected character 'ï' at position 2"),
        ("A|B\x00", 3, "\x00", "unexpected character '\\x00' at position 3"),
    ],
)
def test_syntax_errors_name_position_and_text(
    expression: str, position: int, offending: str, message: str
) -> None:
    assert expression[position:].startswith(offending)
    with pytest.raises(InvalidRSEExpression) as info:
        parse(expression)
    text = str(info.value)
    assert message in text
    assert f"at position {position}" in text
    assert "RSE expression" in text
    assert info.value.status == 400 and info.value.rucio_class == "InvalidRSEExpression"
    with pytest.raises(InvalidRSEExpression):
        evaluate(expression, RSES, allow_empty=True)


def test_the_first_problem_by_position_is_reported() -> None:
    with pytest.raises(InvalidRSEExpression, match="'B' at position 2 follows 'A'"):
        parse("A B | $ (")
    with pytest.raises(InvalidRSEExpression, match=r"unexpected character '\$' at position 2"):
        parse("A $ B (")


@pytest.mark.parametrize("expression", ["", "   ", "\t\n"])
def test_empty_expression(expression: str) -> None:
    with pytest.raises(InvalidRSEExpression, match=r"is empty; .* use '\*' for every RSE"):
        parse(expression)


@pytest.mark.parametrize("expression", [None, 3, b"A"])
def test_non_text_expression(expression: Any) -> None:
    with pytest.raises(InvalidRSEExpression, match="must be text, not "):
        parse(expression)


def test_messages_show_the_expression_as_typed_and_clip_long_ones() -> None:
    with pytest.raises(InvalidRSEExpression) as info:
        parse("A\\B C")
    assert "in the RSE expression 'A\\B C';" in str(info.value)  # one backslash, as typed
    long = "A|" * 100 + "$"
    with pytest.raises(InvalidRSEExpression) as info:
        parse(long)
    assert "unexpected character '$' at position 200" in str(info.value)
    assert "'" + long[:77] + "...'" in str(info.value)


# --- an empty result -----------------------------------------------------------------------


def test_an_empty_result_is_an_error_naming_the_expression() -> None:
    with pytest.raises(InvalidRSEExpression) as info:
        evaluate("site=NOWHERE|CERN-DISK&tier=1", RSES)
    message = str(info.value)
    assert message.startswith(
        "RSE expression 'site=NOWHERE|CERN-DISK&tier=1' resulted in an empty set"
    )
    assert "use '*' for every RSE" in message
    assert info.value.status == 400 and info.value.rucio_class == "InvalidRSEExpression"
    assert evaluate("site=NOWHERE", RSES, allow_empty=True) == []


def test_no_rses_at_all() -> None:
    assert evaluate("*", {}, allow_empty=True) == []
    with pytest.raises(InvalidRSEExpression, match="resulted in an empty set"):
        evaluate("*", {})


def test_a_syntax_error_wins_over_an_empty_result() -> None:
    with pytest.raises(InvalidRSEExpression, match="never closed"):
        evaluate("(A", {})


def test_result_is_sorted_and_unique() -> None:
    rses = {"Z": {"k": 1}, "A": {"k": 1}, "M": {"k": 2}}
    assert evaluate("k=1|k=1|Z", rses) == ["A", "Z"]
    assert evaluate("*", rses) == ["A", "M", "Z"]
