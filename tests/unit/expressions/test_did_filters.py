"""DID metadata filters: the text syntax, the Rucio client's dict form, and query parsing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from fedlake.domain.errors import InvalidFilter
from fedlake.expressions.did_filters import (
    Cond,
    Filter,
    coerce_value,
    from_dicts,
    from_text,
    parse_query,
)


def one(*conds: Cond, did_type: str | None = None) -> Filter:
    return Filter((conds,), (did_type,))


# --- text syntax ----------------------------------------------------------------------


def test_and_or() -> None:
    got = from_text("datatype=raw,run_number>=100;name=calib*")
    assert got == Filter(
        (
            (Cond("datatype", "=", "raw"), Cond("run_number", ">=", 100)),
            (Cond("name", "=", "calib*"),),
        ),
        (None, None),
    )


@pytest.mark.parametrize(
    ("text", "cond"),
    [
        ("a=1", Cond("a", "=", 1)),
        ("a==1", Cond("a", "=", 1)),
        ("a!=x", Cond("a", "!=", "x")),
        ("a<1.5", Cond("a", "<", 1.5)),
        ("a<=2", Cond("a", "<=", 2)),
        ("a>-3", Cond("a", ">", -3)),
        ("a>=4", Cond("a", ">=", 4)),
        ("  a  =  b  ", Cond("a", "=", "b")),
        ("run-id=7", Cond("run-id", "=", 7)),
        # a value on the left: the operator is flipped
        ("100<length", Cond("length", ">", 100)),
        ("100<=length", Cond("length", ">=", 100)),
        ("5>bytes", Cond("bytes", "<", 5)),
        ("5>=bytes", Cond("bytes", "<=", 5)),
    ],
)
def test_operators(text: str, cond: Cond) -> None:
    assert from_text(text) == one(cond)


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("10<length<100", Cond("length", ">", 10), Cond("length", "<", 100)),
        ("10<=length<100", Cond("length", ">=", 10), Cond("length", "<", 100)),
        ("10<length<=100", Cond("length", ">", 10), Cond("length", "<=", 100)),
        (" 1.5 <= x <= 2 ", Cond("x", ">=", 1.5), Cond("x", "<=", 2)),
    ],
)
def test_compound(text: str, low: Cond, high: Cond) -> None:
    assert from_text(text) == one(low, high)


def test_compound_with_other_conditions() -> None:
    assert from_text("a=1,10<length<100;b=2") == Filter(
        (
            (Cond("a", "=", 1), Cond("length", ">", 10), Cond("length", "<", 100)),
            (Cond("b", "=", 2),),
        ),
        (None, None),
    )


@pytest.mark.parametrize("did_type", ["all", "collection", "dataset", "container", "file"])
def test_type(did_type: str) -> None:
    assert from_text(f"type={did_type}") == Filter(((),), (did_type,))
    assert from_text(f"type={did_type.upper()},a=1") == one(Cond("a", "=", 1), did_type=did_type)


def test_type_per_group() -> None:
    assert from_text("type=file,a=1;type=dataset;b=2") == Filter(
        ((Cond("a", "=", 1),), (), (Cond("b", "=", 2),)), ("file", "dataset", None)
    )


def test_name_stays_a_string() -> None:
    assert from_text("name=123") == one(Cond("name", "=", "123"))
    assert from_text("name=true") == one(Cond("name", "=", "true"))
    assert from_text("name=*.root") == one(Cond("name", "=", "*.root"))


@pytest.mark.parametrize(
    ("text", "cond"),
    [
        ("created_after=2024-01-01", Cond("created_at", ">=", datetime(2024, 1, 1))),
        ("created_before=2024-01-01T10:00:00", Cond("created_at", "<=", datetime(2024, 1, 1, 10))),
        ("updated_after=2024-01-01", Cond("updated_at", ">=", datetime(2024, 1, 1))),
        ("updated_before=2024-01-01", Cond("updated_at", "<=", datetime(2024, 1, 1))),
        ("created_at>2024-06-01T00:00:00Z", Cond("created_at", ">", datetime(2024, 6, 1))),
        ("created_at<2024-06-01T02:00:00+02:00", Cond("created_at", "<", datetime(2024, 6, 1))),
    ],
)
def test_dates(text: str, cond: Cond) -> None:
    assert from_text(text) == one(cond)


def test_empty_conditions_are_skipped() -> None:
    assert from_text("a=1,,b=2,") == one(Cond("a", "=", 1), Cond("b", "=", 2))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty filter group"),
        (";", "empty filter group"),
        ("a=1;", "empty filter group"),
        ("a=1;,", "empty filter group"),
        ("a=", "incomplete condition 'a=': write key=value"),
        ("=b", "incomplete condition"),
        ("a", "cannot parse filter condition 'a'; use key=value"),
        ("a<b<c<d", "cannot parse filter condition"),
        ("1=2", "cannot tell the key in '1=2'"),
        ("bad key=1", "cannot tell the key"),
        ("a.b=1", "cannot tell the key"),
        ("10>length>5", "compound condition '10>length>5' must read low<key<high"),
        ("a=b=c", "must read low<key<high"),
        ("1<2 x<3", "invalid filter key '2 x'"),
        ("type=foo", "type must be one of all, collection, dataset, container, file"),
        ("type!=file", "type must be one of"),
        ("type>1", "type must be one of"),
    ],
)
def test_text_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidFilter, match=message) as info:
        from_text(text)
    assert info.value.status == 400
    assert info.value.rucio_class == "DIDFilterSyntaxError"


# --- values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("true", True),
        ("FALSE", False),
        ("5", 5),
        (" -5 ", -5),
        ("+5", 5),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("'7'", 7),
        ('"abc"', "abc"),
        ("abc", "abc"),
        ("2024-01-02", datetime(2024, 1, 2)),
        ("2024-01-02 03:04", datetime(2024, 1, 2, 3, 4)),
        ("Sun, 22 Nov 2026 03:23:19 UTC", datetime(2026, 11, 22, 3, 23, 19)),
        ("2024-13-45", "2024-13-45"),
        # not numbers, although int()/float() would take them
        ("1_000", "1_000"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("Infinity", "Infinity"),
        ("0x10", "0x10"),
        ("\u0661\u0662", "\u0661\u0662"),
        (7, 7),
        (2.5, 2.5),
        (True, True),
        (datetime(2024, 1, 1), datetime(2024, 1, 1)),
    ],
)
def test_coerce_value(raw: Any, value: Any) -> None:
    got = coerce_value(raw)
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize("raw", [None, [1], {"a": 1}, b"1"])
def test_coerce_value_rejects(raw: Any) -> None:
    with pytest.raises(InvalidFilter, match="must be a string or number"):
        coerce_value(raw)


# --- dict form (the Rucio client) -----------------------------------------------------


def test_rucio_client_form() -> None:
    assert from_dicts([{"name": "*", "length.gt": "0"}]) == one(
        Cond("name", "=", "*"), Cond("length", ">", 0)
    )


@pytest.mark.parametrize(
    ("key", "op"), [("a.gt", ">"), ("a.gte", ">="), ("a.lt", "<"), ("a.lte", "<="), ("a.ne", "!=")]
)
def test_suffixes(key: str, op: str) -> None:
    assert from_dicts({key: "5"}) == one(Cond("a", op, 5))


def test_list_is_or_dict_is_and() -> None:
    assert from_dicts([{"a": 1, "b.lt": 2.5}, {"c": "x"}]) == Filter(
        ((Cond("a", "=", 1), Cond("b", "<", 2.5)), (Cond("c", "=", "x"),)), (None, None)
    )


def test_operator_in_value() -> None:
    """``rucio list-dids --filter 'a>5'`` arrives as ``{'a': '>5'}``."""
    assert from_dicts({"a": ">5"}) == one(Cond("a", ">", 5))
    assert from_dicts({"a": "<= 2"}) == one(Cond("a", "<=", 2))
    assert from_dicts({"name": ">5"}) == one(Cond("name", "=", ">5"))


def test_dict_type_and_dates() -> None:
    assert from_dicts({"type": "DATASET", "a": 1}) == one(Cond("a", "=", 1), did_type="dataset")
    assert from_dicts({"did_type": "file"}) == Filter(((),), ("file",))
    assert from_dicts({"created_before": "2024-01-01"}) == one(
        Cond("created_at", "<=", datetime(2024, 1, 1))
    )


def test_dict_name_is_text() -> None:
    assert from_dicts({"name": 5}) == one(Cond("name", "=", "5"))


def test_empty_list_matches_everything() -> None:
    assert from_dicts([]) == Filter(((),), (None,))
    assert from_dicts([{}]) == Filter(((),), (None,))


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("a=1", "must be a list of dictionaries"),
        ([1], "must be a list of dictionaries"),
        ([{"a": 1}, "b"], "must be a list of dictionaries"),
        (None, "must be a list of dictionaries"),
        ([{"a.foo": 1}], r"unknown operator suffix \.foo in filter key 'a\.foo'"),
        ([{"a.b.gt": 1}], "invalid filter key 'a.b'"),
        ([{"bad key": 1}], "invalid filter key"),
        ([{"a": None}], "must be a string or number"),
        ([{"type": "X"}], "type must be one of"),
        ([{"type.ne": "file"}], "type must be one of"),
    ],
)
def test_dict_errors(items: Any, message: str) -> None:
    with pytest.raises(InvalidFilter, match=message):
        from_dicts(items)


# --- the ``filters`` query parameter --------------------------------------------------


@pytest.mark.parametrize("query", [None, "", "   "])
def test_query_without_filters(query: str | None) -> None:
    assert parse_query(query) == Filter(((),), (None,))
    assert parse_query(query, {"a": "1", "name.ne": "x*"}) == one(
        Cond("a", "=", 1), Cond("name", "!=", "x*")
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("[{'a.gt': 3}]", one(Cond("a", ">", 3))),
        ("{'name': 'x*', 'type': 'file'}", one(Cond("name", "=", "x*"), did_type="file")),
        ('[{"a": true}]', one(Cond("a", "=", True))),  # JSON, not a Python literal
        (
            '  [{"a": 1}, {"b": "2"}]  ',
            Filter(((Cond("a", "=", 1),), (Cond("b", "=", 2),)), (None, None)),
        ),
        ("a=1;b<2", Filter(((Cond("a", "=", 1),), (Cond("b", "<", 2),)), (None, None))),
    ],
)
def test_query(query: str, expected: Filter) -> None:
    assert parse_query(query) == expected


def test_query_filters_win_over_extra_parameters() -> None:
    assert parse_query("a=1", {"b": "2"}) == one(Cond("a", "=", 1))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("[{", "cannot parse filters"),
        ("{'a': __import__('os')}", "cannot parse filters"),
        ("[1, 2]", "must be a list of dictionaries"),
        ('{"a": null}', "must be a string or number"),
        ("a", "cannot parse filter condition"),
    ],
)
def test_query_errors(query: str, message: str) -> None:
    with pytest.raises(InvalidFilter, match=message):
        parse_query(query)
