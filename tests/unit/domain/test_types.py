"""Enumerations: Rucio names as values, parsing of names and one-letter codes."""

from __future__ import annotations

import pytest

from fedlake.domain import types
from fedlake.domain.errors import InvalidInput
from fedlake.domain.types import (
    AccountStatus,
    DIDType,
    IdentityType,
    LockState,
    ReplicaState,
    RSEType,
    RuleGrouping,
    RuleNotification,
    RuleState,
)

ENUMS = [getattr(types, name) for name in types.__all__]


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
def test_values_are_names(enum: type[types._LakeEnum]) -> None:
    for member in enum:
        assert member.value == member.name
        assert str(member) == member.name
        assert enum.parse(member.name) is member
        assert enum.parse(member.name.lower()) is member
        assert enum.parse(member) is member
        assert enum.parse(f"{enum.__name__}.{member.name}") is member
        assert enum.parse(f"  {member.name}  ") is member


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
def test_codes_point_at_members(enum: type[types._LakeEnum]) -> None:
    for code, name in enum._codes().items():
        assert len(code) == 1
        assert enum.parse(code) is enum[name]
        assert enum.parse(code.lower()) is enum[name]


@pytest.mark.parametrize(
    ("enum", "code", "member"),
    [
        (DIDType, "F", DIDType.FILE),
        (DIDType, "D", DIDType.DATASET),
        (DIDType, "C", DIDType.CONTAINER),
        (ReplicaState, "A", ReplicaState.AVAILABLE),
        (ReplicaState, "U", ReplicaState.UNAVAILABLE),
        (ReplicaState, "C", ReplicaState.COPYING),
        (ReplicaState, "B", ReplicaState.BEING_DELETED),
        (ReplicaState, "D", ReplicaState.BAD),
        (ReplicaState, "T", ReplicaState.TEMPORARY_UNAVAILABLE),
        (RuleState, "O", RuleState.OK),
        (RuleState, "R", RuleState.REPLICATING),
        (RuleState, "S", RuleState.STUCK),
        (RuleState, "U", RuleState.SUSPENDED),
        (RuleState, "W", RuleState.WAITING_APPROVAL),
        (RuleState, "I", RuleState.INJECT),
        (LockState, "R", LockState.REPLICATING),
        (RuleGrouping, "N", RuleGrouping.NONE),
        (RuleNotification, "P", RuleNotification.PROGRESS),
    ],
)
def test_rucio_letter_codes(enum: type[types._LakeEnum], code: str, member: object) -> None:
    assert enum.parse(code) is member


def test_enums_compare_as_strings() -> None:
    assert DIDType.FILE == "FILE"
    assert f"{ReplicaState.AVAILABLE}" == "AVAILABLE"
    assert sorted([RSEType.TAPE, RSEType.DISK]) == ["DISK", "TAPE"]


@pytest.mark.parametrize("value", ["FOLDER", "", "X", "FILES"])
def test_unknown_value_lists_choices(value: str) -> None:
    with pytest.raises(
        InvalidInput, match="not a valid DIDType; use one of: FILE, DATASET, CONTAINER"
    ):
        DIDType.parse(value)


@pytest.mark.parametrize("value", [None, 1, b"FILE", ["FILE"]])
def test_non_string(value: object) -> None:
    with pytest.raises(InvalidInput, match="DIDType must be a string"):
        DIDType.parse(value)


def test_no_codes_without_table() -> None:
    with pytest.raises(InvalidInput):
        AccountStatus.parse("A")
    with pytest.raises(InvalidInput):
        IdentityType.parse("U")


def test_other_enum_member_is_not_accepted_as_is() -> None:
    # a member of another enum is parsed by its text, not passed through
    assert RuleState.parse(LockState.OK) is RuleState.OK
    with pytest.raises(InvalidInput):
        AccountStatus.parse(DIDType.FILE)
