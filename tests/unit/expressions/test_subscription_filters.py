"""Subscription filters: parsing (with the errors users see) and matching one DID."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from fedlake.domain.errors import InvalidFilter
from fedlake.expressions.subscription_filters import SubscriptionFilter, parse_filter


def did(name: str = "data18_raw.0001", **over: Any) -> dict[str, Any]:
    base = {
        "scope": "data18",
        "name": name,
        "did_type": "DATASET",
        "account": "tzero",
        "bytes": 0,
        "length": 0,
        "hidden": False,
        "created_at": datetime(2026, 1, 2, 3, 4, 5),
    }
    return base | over


def match(flt: dict[str, Any], d: dict[str, Any] | None = None, **meta: Any) -> bool:
    parsed, _ = parse_filter(flt)
    return parsed.matches(d or did(), meta)


# --- matching -------------------------------------------------------------------------------


def test_an_empty_filter_matches_every_visible_collection_and_no_file() -> None:
    assert match({})
    assert match({}, did(did_type="CONTAINER"))
    assert not match({}, did(did_type="FILE"))
    assert not match({}, did(hidden=True))


def test_did_type_chooses_what_matches() -> None:
    assert match({"did_type": "FILE"}, did(did_type="FILE"))
    assert not match({"did_type": "FILE"})
    assert match({"did_type": ["file", "Dataset"]})
    assert not match({"did_type": ["CONTAINER"]})


def test_scope_is_a_list_of_regular_expressions_matched_from_the_start() -> None:
    assert match({"scope": ["mc16", "data1[78]"]})
    assert match({"scope": "data"})  # a prefix, as re.match (Rucio)
    assert not match({"scope": ["data18$"]}, did(scope="data18x"))
    assert not match({"scope": ["18"]})


def test_pattern_and_excluded_pattern() -> None:
    assert match({"pattern": r"data18_raw\.\d+"})
    assert not match({"pattern": "raw"})  # must match at the start
    assert match({"pattern": ".*raw"})
    assert not match({"pattern": "data18", "excluded_pattern": r".*\.0001$"})
    assert match({"pattern": "data18", "exclude_pattern": r".*\.0002$"})


def test_account_is_the_dids_creator() -> None:
    assert match({"account": "tzero"})
    assert match({"account": ["alice", "tzero"]})
    assert not match({"account": ["alice"]})


def test_average_file_size_bounds_ignore_empty_collections() -> None:
    filled = did(bytes=10_000, length=4)  # 2500 bytes per file
    assert match({"min_avg_file_size": 2000, "max_avg_file_size": 3000}, filled)
    assert not match({"min_avg_file_size": 2501}, filled)
    assert not match({"max_avg_file_size": 2499}, filled)
    assert match({"min_avg_file_size": 10**9})  # still empty: not decided by size


def test_metadata_values_regular_expressions_numbers_and_booleans() -> None:
    assert match({"datatype": "RAW"}, datatype="RAW")
    assert match({"datatype": "RAW"}, datatype="RAWX")  # from the start, like Rucio
    assert not match({"datatype": "RAW$"}, datatype="RAWX")
    assert match({"datatype": ["AOD", "RAW"]}, datatype="RAW")
    assert not match({"datatype": "RAW"})  # the DID has no such metadata
    assert not match({"datatype": "RAW"}, datatype=None)
    assert match({"run_number": 358031}, run_number=358031)
    assert match({"run_number": 358031}, run_number="358031")
    assert not match({"run_number": 358031}, run_number=3580310)
    assert not match({"run_number": 1}, run_number=True)
    assert match({"transient": True}, transient=True)
    assert match({"transient": True}, transient="true")
    assert not match({"transient": False}, transient=True)
    assert match({"run_number": "3580"}, run_number=358031)  # a string is a regex on str()


def test_meta_filter_compares_values() -> None:
    flt = {"meta_filter": "run_number>=100,project=calib*;datatype=RAW"}
    assert match(flt, run_number=150, project="calib_2018")
    assert match(flt, run_number="150", project="calib")
    assert not match(flt, run_number=99, project="calib")
    assert not match(flt, run_number=150, project="data")
    assert match(flt, datatype="RAW")
    assert not match(flt, datatype="RAWX")  # '=' is equality here
    assert match({"meta_filter": "datatype!=AOD"}, datatype="RAW")
    assert not match({"meta_filter": "datatype!=AOD"}, datatype="AOD")
    assert not match({"meta_filter": "run_number>5"}, run_number="many")
    assert match({"meta_filter": "created_at>2025-12-31"})
    assert not match({"meta_filter": "created_at<2025-12-31"})
    assert match({"meta_filter": "length<1"})  # DID columns are there too


def test_meta_filter_type_groups() -> None:
    flt = {"did_type": ["FILE", "DATASET"], "meta_filter": "type=file,name=*.root"}
    assert match(flt, did(name="a.root", did_type="FILE"))
    assert not match(flt, did(name="a.root", did_type="DATASET"))


def test_needs_meta_only_with_metadata_conditions() -> None:
    assert not parse_filter({"scope": ["x"], "pattern": "y"})[0].needs_meta
    assert parse_filter({"datatype": "RAW"})[0].needs_meta
    assert parse_filter({"meta_filter": "a=1"})[0].needs_meta


def test_matches_did_skips_metadata() -> None:
    flt, _ = parse_filter({"pattern": "data", "datatype": "RAW"})
    assert flt.matches_did(did())
    assert not flt.matches(did(), {})


# --- parsing --------------------------------------------------------------------------------


def test_the_stored_form_is_normalised() -> None:
    _, stored = parse_filter(
        {
            "scope": "data18",
            "exclude_pattern": "x",
            "did_type": ["container", "FILE"],
            "account": "tzero",
            "datatype": "RAW",
            "split_rule": False,
        }
    )
    assert stored == {
        "scope": ["data18"],
        "excluded_pattern": "x",
        "did_type": ["FILE", "CONTAINER"],
        "account": ["tzero"],
        "datatype": ["RAW"],
        "split_rule": False,
    }
    assert parse_filter(None) == (SubscriptionFilter(), {})


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ([], "must be a JSON object"),
        ({"pattern": "data[0-9"}, "'pattern': 'data[0-9' is not a valid regular expression"),
        ({"scope": ["ok", "(bad"]}, "'scope': '(bad' is not a valid regular expression"),
        ({"scope": []}, "'scope' is an empty list"),
        ({"pattern": ""}, "'pattern' must be a non-empty string"),
        ({"pattern": 5}, "'pattern' must be a non-empty string"),
        ({"excluded_pattern": "a", "exclude_pattern": "b"}, "'excluded_pattern' is given twice"),
        ({"did_type": "FOLDER"}, "'FOLDER' is not one of FILE, DATASET, CONTAINER"),
        ({"account": "Not An Account"}, "filter 'account': invalid account"),
        ({"min_avg_file_size": -1}, "'min_avg_file_size' must be a number of bytes"),
        ({"max_avg_file_size": "big"}, "'max_avg_file_size' must be a number of bytes"),
        ({"split_rule": True}, "'split_rule' is not supported"),
        ({"meta_filter": ""}, "'meta_filter' must be a non-empty query"),
        ({"meta_filter": "a<<b"}, "filter 'meta_filter':"),
        ({"name": "x"}, "unknown filter key 'name': match names with 'pattern'"),
        ({"type": "FILE"}, "unknown filter key 'type': use 'did_type'"),
        ({"bad.key": "x"}, "unknown filter key 'bad.key': invalid metadata key"),
        ({"datatype": {"a": 1}}, "values must be strings"),
        ({"datatype": None}, "values must be strings"),
    ],
)
def test_bad_filters_say_what_is_wrong(flt: Any, message: str) -> None:
    with pytest.raises(InvalidFilter) as info:
        parse_filter(flt)
    assert message in str(info.value)


def test_metadata_keys_can_be_checked_against_known_ones() -> None:
    known = {"datatype"}.__contains__
    parse_filter({"datatype": "RAW", "pattern": "x"}, known)
    with pytest.raises(InvalidFilter, match=r"unknown filter key 'datatyp': .* meta_filter"):
        parse_filter({"datatyp": "RAW"}, known)
