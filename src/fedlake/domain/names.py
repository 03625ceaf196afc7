"""Validation of every name that enters the lake. Errors say what is wrong and how to fix it."""

from __future__ import annotations

import re

from fedlake.domain.errors import InvalidName

__all__ = [
    "MAX_NAME_LENGTH",
    "split_did",
    "validate_account",
    "validate_did_name",
    "validate_meta_key",
    "validate_rse_name",
    "validate_scope",
]

MAX_NAME_LENGTH = 255
_SCOPE = re.compile(r"^[A-Za-z0-9_.\-]{1,25}$")
_ACCOUNT = re.compile(r"^[a-z0-9_\-.]{1,25}$")
_RSE = re.compile(r"^[A-Z0-9]+([_\-][A-Z0-9]+)*$")
_META_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,99}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAME_BAD = re.compile(r"[^A-Za-z0-9._\-+=@,~]")
_NAME_OK = re.compile(
    r"[A-Za-z0-9_\-+=@,~][A-Za-z0-9._\-+=@,~]{0,254}|\.[A-Za-z0-9_\-+=@,~][A-Za-z0-9._\-+=@,~]{0,253}"
)


def validate_scope(scope: object) -> str:
    if not isinstance(scope, str) or not _SCOPE.match(scope):
        raise InvalidName(
            f"invalid scope {scope!r}: use 1-25 characters from letters, digits, '_', '-', '.'"
        )
    return scope


def validate_account(account: object) -> str:
    if not isinstance(account, str) or not _ACCOUNT.match(account):
        raise InvalidName(
            f"invalid account {account!r}: use 1-25 lower-case letters, digits, '_', '-', '.'"
        )
    return account


def validate_rse_name(rse: object) -> str:
    if not isinstance(rse, str) or len(rse) > 64 or not _RSE.match(rse):
        raise InvalidName(
            f"invalid RSE name {rse!r}: use upper-case letters and digits, "
            "separated by single '_' or '-' (e.g. CERN-DISK_1), at most 64 characters"
        )
    return rse


def validate_did_name(name: object) -> str:
    """A DID name: 1-255 of ``A-Za-z0-9._-+=@,~``, not '.' or starting with '..'.

    Characters with a meaning in URLs or paths (``/ # ? % : *`` spaces ...) are refused so
    that a name maps to exactly one file on every storage and in every PFN.
    """
    if isinstance(name, str) and _NAME_OK.fullmatch(name):  # the common case, one regex
        return name
    if not isinstance(name, str):
        raise InvalidName(f"a DID name must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidName("a DID name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(
            f"DID name is {len(name)} characters long; the maximum is {MAX_NAME_LENGTH}"
        )
    if _CONTROL.search(name):
        raise InvalidName(f"DID name {name!r} contains a control character (NUL, newline, tab...)")
    if "/" in name:
        raise InvalidName(f"DID name {name!r} contains '/'; use a dataset or container instead")
    if name in (".", "..") or name.startswith(".."):
        raise InvalidName(f"DID name {name!r} must not be '.' or start with '..'")
    bad = _NAME_BAD.search(name)
    if bad is not None:
        raise InvalidName(
            f"DID name {name!r} contains {bad.group()!r}; use letters, digits and . _ - + = @ , ~ "
            "(characters with a meaning in URLs and paths are refused)"
        )
    return name


def validate_meta_key(key: object) -> str:
    if not isinstance(key, str) or not _META_KEY.match(key):
        raise InvalidName(
            f"invalid metadata key {key!r}: start with a letter or '_', then letters, "
            "digits, '_' or '-' (no '.', which separates filter operators), at most 100"
        )
    return key


def split_did(did: str, default_scope: str | None = None) -> tuple[str, str]:
    """Split ``scope:name``; without ``:`` use ``default_scope`` if given."""
    if ":" in did:
        scope, name = did.split(":", 1)
    elif default_scope is not None:
        scope, name = default_scope, did
    else:
        raise InvalidName(f"{did!r} is not a DID: write it as scope:name")
    return validate_scope(scope), validate_did_name(name)
