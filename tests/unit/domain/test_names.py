"""Name validation: what is accepted, what is refused, and that refusals say why."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedlake.domain.errors import InvalidInput, InvalidName
from fedlake.domain.names import (
    MAX_NAME_LENGTH,
    split_did,
    validate_account,
    validate_did_name,
    validate_meta_key,
    validate_rse_name,
    validate_scope,
)


@pytest.mark.parametrize("scope", ["skao", "user.alice", "cms_embargoed", "a", "A-b.c_9", "x" * 25])
def test_valid_scopes(scope: str) -> None:
    assert validate_scope(scope) == scope


@pytest.mark.parametrize("scope", ["", "x" * 26, "a b", "a:b", "a/b", "é", None, 5])
def test_invalid_scopes(scope: object) -> None:
    with pytest.raises(InvalidName, match=r"invalid scope.*1-25 characters"):
        validate_scope(scope)


@pytest.mark.parametrize("account", ["root", "alice", "svc-transfer", "a.b_c", "x" * 25])
def test_valid_accounts(account: str) -> None:
    assert validate_account(account) == account


@pytest.mark.parametrize("account", ["", "Alice", "x" * 26, "a b", "a:b", None])
def test_invalid_accounts(account: object) -> None:
    with pytest.raises(InvalidName, match=r"invalid account.*lower-case"):
        validate_account(account)


@pytest.mark.parametrize("rse", ["CERN-PROD", "CERN-DISK_1", "X", "A1B2", "A" * 64])
def test_valid_rse_names(rse: str) -> None:
    assert validate_rse_name(rse) == rse


@pytest.mark.parametrize(
    "rse", ["", "cern", "CERN--PROD", "CERN_", "-CERN", "CERN PROD", "A" * 65, "CERN.PROD", None]
)
def test_invalid_rse_names(rse: object) -> None:
    with pytest.raises(InvalidName, match=r"invalid RSE name.*upper-case"):
        validate_rse_name(rse)


@pytest.mark.parametrize(
    "name",
    ["f.txt", "a", ".hidden", "a..b", "x" * MAX_NAME_LENGTH, "run+1=2@host,~v", "A-Z_0.9"],
)
def test_valid_did_names(name: str) -> None:
    assert validate_did_name(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "must not be empty"),
        ("x" * (MAX_NAME_LENGTH + 1), "256 characters long; the maximum is 255"),
        ("a\nb", "control character"),
        ("a\x00b", "control character"),
        ("a\tb", "control character"),
        ("a/b", "contains '/'"),
        (".", r"must not be '\.'"),
        ("..", r"must not be '\.'"),
        ("..x", "start with '..'"),
        (" a", "contains ' '"),
        ("a ", "contains ' '"),
        ("with space inside", "contains ' '"),
        ("run#1", "contains '#'"),
        ("q?x", r"contains '\?'"),
        ("p%41", "contains '%'"),
        ("a:b", "contains ':'"),
        ("star*", r"contains '\*'"),
        ("é", "contains 'é'"),
        (5, "must be a string, got int"),
        (None, "must be a string, got NoneType"),
    ],
)
def test_invalid_did_names(name: object, reason: str) -> None:
    with pytest.raises(InvalidName, match=reason):
        validate_did_name(name)


@pytest.mark.parametrize("key", ["datatype", "run_number", "_x", "a-b", "K" * 100])
def test_valid_meta_keys(key: str) -> None:
    assert validate_meta_key(key) == key


@pytest.mark.parametrize("key", ["", "1abc", "a.gt", "a b", "K" * 101, None, "-a"])
def test_invalid_meta_keys(key: object) -> None:
    with pytest.raises(InvalidName, match="invalid metadata key"):
        validate_meta_key(key)


def test_split_did() -> None:
    assert split_did("skao:obs.ms") == ("skao", "obs.ms")
    assert split_did("user.jdoe:a=1,b@c") == ("user.jdoe", "a=1,b@c")
    assert split_did("obs.ms", default_scope="skao") == ("skao", "obs.ms")


def test_split_did_without_scope() -> None:
    with pytest.raises(InvalidName, match="write it as scope:name"):
        split_did("obs.ms")


@pytest.mark.parametrize("did", ["bad scope:x", ":x", "skao:", "skao:a/b", "user.jdoe:a:b"])
def test_split_did_validates_both_parts(did: str) -> None:
    with pytest.raises(InvalidName):
        split_did(did)


def test_invalid_name_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as info:
        validate_scope("a b")
    assert info.value.status == 400


_ALLOWED = set("abcXYZ019._-+=@,~")


@given(st.text(alphabet="abcXYZ019._-+=@,~/:#% \x00\té", max_size=260))
def test_did_name_rule_matches_its_specification(name: str) -> None:
    spec_ok = (
        0 < len(name) <= 255 and set(name) <= _ALLOWED and name != "." and not name.startswith("..")
    )
    try:
        validate_did_name(name)
        accepted = True
    except InvalidName:
        accepted = False
    assert accepted == spec_ok, name
