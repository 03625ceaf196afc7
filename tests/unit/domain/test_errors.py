"""The error hierarchy: statuses, Rucio class names, and the client's reverse lookup."""

from __future__ import annotations

import pytest

from fedlake.domain import errors
from fedlake.domain.errors import (
    AccessDenied,
    AuthenticationFailed,
    ChecksumMismatch,
    Conflict,
    DIDAlreadyExists,
    DIDNotFound,
    InvalidChecksum,
    InvalidFilter,
    InvalidInput,
    InvalidName,
    InvalidRSEExpression,
    LakeError,
    NotFound,
    RequestTooLarge,
    RSENotFound,
    StorageError,
    error_class_for,
)

ERROR_CLASSES = [
    obj
    for name in errors.__all__
    if isinstance(obj := getattr(errors, name), type) and issubclass(obj, LakeError)
]


def _all(cls: type[LakeError]) -> set[type[LakeError]]:
    out = {cls}
    for sub in cls.__subclasses__():
        out |= _all(sub)
    return out


def test_every_error_class_is_exported() -> None:
    defined = {c for c in _all(LakeError) if c.__module__ == errors.__name__}
    assert defined == set(ERROR_CLASSES)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_message_and_status(cls: type[LakeError]) -> None:
    exc = cls("what went wrong; do this")
    assert str(exc) == "what went wrong; do this"
    assert exc.message == "what went wrong; do this"
    assert exc.args == ("what went wrong; do this",)
    assert isinstance(exc, Exception)
    assert 400 <= exc.status <= 599
    assert exc.rucio_class


@pytest.mark.parametrize(
    ("cls", "parent", "status"),
    [
        (InvalidName, InvalidInput, 400),
        (InvalidFilter, InvalidInput, 400),
        (InvalidRSEExpression, InvalidInput, 400),
        (InvalidChecksum, InvalidInput, 400),
        (RequestTooLarge, InvalidInput, 413),
        (AuthenticationFailed, LakeError, 401),
        (AccessDenied, LakeError, 401),
        (DIDNotFound, NotFound, 404),
        (RSENotFound, NotFound, 404),
        (DIDAlreadyExists, Conflict, 409),
        (ChecksumMismatch, Conflict, 409),
        (StorageError, LakeError, 502),
    ],
)
def test_hierarchy(cls: type[LakeError], parent: type[LakeError], status: int) -> None:
    assert issubclass(cls, parent)
    assert cls.status == status


@pytest.mark.parametrize(
    ("cls", "rucio"),
    [
        (AuthenticationFailed, "CannotAuthenticate"),
        (DIDNotFound, "DataIdentifierNotFound"),
        (DIDAlreadyExists, "DataIdentifierAlreadyExists"),
        (InvalidFilter, "DIDFilterSyntaxError"),
        (InvalidRSEExpression, "InvalidRSEExpression"),
        (RSENotFound, "RSENotFound"),
        (AccessDenied, "AccessDenied"),
    ],
)
def test_rucio_class_names(cls: type[LakeError], rucio: str) -> None:
    assert cls.rucio_class == rucio


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_error_class_for_round_trip(cls: type[LakeError]) -> None:
    """The client gets back a class with the same Rucio name and status."""
    got = error_class_for(cls.rucio_class, cls.status)
    assert got.rucio_class == cls.rucio_class
    assert got.status == cls.status


@pytest.mark.parametrize(
    "cls",
    [
        c
        for c in ERROR_CLASSES
        if sum(o.rucio_class == c.rucio_class and o.status == c.status for o in ERROR_CLASSES) == 1
    ],
    ids=lambda c: c.__name__,
)
def test_error_class_for_unique_names_is_exact(cls: type[LakeError]) -> None:
    assert error_class_for(cls.rucio_class, cls.status) is cls


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_error_class_for_with_fedlake_class_is_exact(cls: type[LakeError]) -> None:
    """A fedlake server also sends the class's own name: shared Rucio names stay apart."""
    assert error_class_for(cls.rucio_class, cls.status, cls.__name__) is cls


def test_error_class_for_ignores_a_fedlake_class_that_does_not_fit() -> None:
    unknown = error_class_for("InvalidObject", 400, "NoSuchClass")
    assert unknown is error_class_for("InvalidObject", 400)  # as without the name
    # a known name with another status is not trusted: the Rucio name and status decide
    assert error_class_for("SomethingNew", 404, "InvalidInput") is NotFound


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, InvalidInput),
        (401, AuthenticationFailed),
        (404, NotFound),
        (409, Conflict),
        (413, RequestTooLarge),
        (502, StorageError),
        (500, LakeError),
        (418, LakeError),
    ],
)
def test_error_class_for_unknown_name_falls_back_to_status(
    status: int, cls: type[LakeError]
) -> None:
    assert error_class_for("SomethingNew", status) is cls


def test_hierarchy_is_drawn_in_docstring() -> None:
    doc = errors.__doc__ or ""
    for cls in (InvalidInput, AuthenticationFailed, AccessDenied, NotFound, Conflict, StorageError):
        assert cls.__name__ in doc
