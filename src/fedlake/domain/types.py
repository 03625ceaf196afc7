"""Enumerations shared by every layer. Values are the Rucio names; ``parse`` also
accepts Rucio's one-letter codes (``"A"`` for AVAILABLE) because clients send them."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from fedlake.domain.errors import InvalidInput

__all__ = [
    "AccountStatus",
    "AccountType",
    "DIDType",
    "IdentityType",
    "LockState",
    "RSEType",
    "ReplicaState",
    "RequestState",
    "RuleGrouping",
    "RuleNotification",
    "RuleState",
    "ScopeStatus",
]


class _LakeEnum(StrEnum):
    """A StrEnum whose members also answer to a one-letter code."""

    @classmethod
    def _codes(cls) -> dict[str, str]:
        return {}

    @classmethod
    def parse(cls, value: object) -> Self:
        """Return the member named ``value`` (case-insensitive) or with that letter code."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise InvalidInput(f"{cls.__name__} must be a string, got {type(value).__name__}")
        text = value.strip()
        if text.startswith(f"{cls.__name__}."):
            text = text.split(".", 1)[1]
        upper = text.upper()
        if upper in cls.__members__:
            return cls[upper]
        code = cls._codes().get(upper)
        if code is not None:
            return cls[code]
        choices = ", ".join(cls.__members__)
        raise InvalidInput(f"{value!r} is not a valid {cls.__name__}; use one of: {choices}")


class DIDType(_LakeEnum):
    FILE = "FILE"
    DATASET = "DATASET"
    CONTAINER = "CONTAINER"

    @classmethod
    def _codes(cls) -> dict[str, str]:
        return {"F": "FILE", "D": "DATASET", "C": "CONTAINER"}


class ReplicaState(_LakeEnum):
    AVAILABLE = "AVAILABLE"
    UNAVAILABLE = "UNAVAILABLE"
    COPYING = "COPYING"
    BEING_DELETED = "BEING_DELETED"
    BAD = "BAD"
    TEMPORARY_UNAVAILABLE = "TEMPORARY_UNAVAILABLE"

    @classmethod
    def _codes(cls) -> dict[str, str]:
        return {
            "A": "AVAILABLE",
            "U": "UNAVAILABLE",
            "C": "COPYING",
            "B": "BEING_DELETED",
            "D": "BAD",
            "T": "TEMPORARY_UNAVAILABLE",
        }


class RuleState(_LakeEnum):
    OK = "OK"
    REPLICATING = "REPLICATING"
    STUCK = "STUCK"
    SUSPENDED = "SUSPENDED"
    WAITING_APPROVAL = "WAITING_APPROVAL"
    INJECT = "INJECT"

    @classmethod
    def _codes(cls) -> dict[str, str]:
        return {
            "O": "OK",
            "R": "REPLICATING",
            "S": "STUCK",
            "U": "SUSPENDED",
            "W": "WAITING_APPROVAL",
            "I": "INJECT",
        }


class LockState(_LakeEnum):
    OK = "OK"
    REPLICATING = "REPLICATING"
    STUCK = "STUCK"

    @classmethod
    def _codes(cls) -> dict[str, str]:
        return {"O": "OK", "R": "REPLICATING", "S": "STUCK"}


class RequestState(_LakeEnum):
    """A transfer request's life: QUEUED → SUBMITTED → DONE / FAILED.

    WAITING: the source is on tape and being staged. NO_SOURCES: no replica can be read.
    CANCELLED: stopped by an operator.
    """

    QUEUED = "QUEUED"
    SUBMITTED = "SUBMITTED"
    WAITING = "WAITING"
    DONE = "DONE"
    FAILED = "FAILED"
    NO_SOURCES = "NO_SOURCES"
    CANCELLED = "CANCELLED"

    @classmethod
    def _codes(cls) -> dict[str, str]:
        return {
            "Q": "QUEUED",
            "S": "SUBMITTED",
            "W": "WAITING",
            "D": "DONE",
            "F": "FAILED",
            "N": "NO_SOURCES",
            "C": "CANCELLED",
        }

    @property
    def active(self) -> bool:
        return self in (RequestState.QUEUED, RequestState.SUBMITTED, RequestState.WAITING)


class RuleGrouping(_LakeEnum):
    ALL = "ALL"
    DATASET = "DATASET"
    NONE = "NONE"

    @classmethod
    def _codes(cls) -> dict[str, str]:
        return {"A": "ALL", "D": "DATASET", "N": "NONE"}


class RuleNotification(_LakeEnum):
    YES = "YES"
    NO = "NO"
    CLOSE = "CLOSE"
    PROGRESS = "PROGRESS"

    @classmethod
    def _codes(cls) -> dict[str, str]:
        return {"Y": "YES", "N": "NO", "C": "CLOSE", "P": "PROGRESS"}


class AccountType(_LakeEnum):
    USER = "USER"
    GROUP = "GROUP"
    SERVICE = "SERVICE"


class AccountStatus(_LakeEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    DELETED = "DELETED"


class IdentityType(_LakeEnum):
    USERPASS = "USERPASS"
    OIDC = "OIDC"


class RSEType(_LakeEnum):
    DISK = "DISK"
    TAPE = "TAPE"


class ScopeStatus(_LakeEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
