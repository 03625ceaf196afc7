"""The error hierarchy of fedlake.

Every error a caller can see is a :class:`LakeError`. Each class carries the Rucio
exception class name it is sent as over HTTP (``rucio_class``), the HTTP status, and
a message that says what was wrong and what to do next. The server maps errors to
responses in one place (``fedlake.server.errors``); the client re-raises the same
class from the ``ExceptionClass`` header.

    LakeError
    ├── InvalidInput (400)
    │   ├── InvalidName, InvalidMetadata, InvalidFilter, InvalidRSEExpression,
    │   │   InvalidChecksum, UnsupportedMetadataPlugin, RequestTooLarge (413)
    ├── AuthenticationFailed (401)      -> CannotAuthenticate
    ├── AccessDenied (401)
    ├── NotFound (404)
    │   ├── AccountNotFound, ScopeNotFound, DIDNotFound, RSENotFound, ReplicaNotFound,
    │   │   RuleNotFound, KeyNotFound, ProtocolNotSupported, IdentityNotFound,
    │   │   SubscriptionNotFound, GroupNotFound, MembershipNotFound, RegistrationNotFound,
    │   │   EmbargoNotFound, PolicyNotFound
    ├── Conflict (409)
    │   ├── Duplicate, DIDAlreadyExists, DuplicateContent, DuplicateRule,
    │   │   UnsupportedOperation, FileAlreadyExists, InvalidReplicationRule,
    │   │   InsufficientAccountLimit, InsufficientTargetRSEs, ChecksumMismatch,
    │   │   SubscriptionDuplicate
    └── StorageError (502)               -> storage endpoint failed
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AccountNotFound",
    "AuthenticationFailed",
    "ChecksumMismatch",
    "ClientNotFound",
    "Conflict",
    "DIDAlreadyExists",
    "DIDNotFound",
    "DatabaseBusy",
    "Duplicate",
    "DuplicateContent",
    "DuplicateRule",
    "EmbargoNotFound",
    "FileAlreadyExists",
    "FileConsistencyMismatch",
    "GroupNotFound",
    "IdentityNotFound",
    "InsufficientAccountLimit",
    "InsufficientTargetRSEs",
    "InvalidChecksum",
    "InvalidFilter",
    "InvalidInput",
    "InvalidMetadata",
    "InvalidName",
    "InvalidRSEExpression",
    "InvalidReplicationRule",
    "KeyNotFound",
    "LakeError",
    "MembershipNotFound",
    "NotFound",
    "OAuthError",
    "PolicyNotFound",
    "ProtocolNotSupported",
    "RSENotFound",
    "RangeNotSatisfiable",
    "RegistrationNotFound",
    "ReplicaNotFound",
    "RequestNotFound",
    "RequestTooLarge",
    "RuleNotFound",
    "ScopeNotFound",
    "StorageError",
    "SubscriptionDuplicate",
    "SubscriptionNotFound",
    "UnsupportedMetadataPlugin",
    "UnsupportedOperation",
    "error_class_for",
]


class LakeError(Exception):
    """Root of every error fedlake raises on purpose."""

    status: int = 500
    rucio_class: str = "RucioException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(LakeError):
    """The request is malformed: a value has the wrong type, format or range."""

    status = 400
    rucio_class = "InvalidObject"


class InvalidName(InvalidInput):
    """A scope, DID, account or RSE name breaks the naming rules."""

    rucio_class = "InvalidObject"


class InvalidMetadata(InvalidInput):
    """A metadata key or value is not allowed."""

    rucio_class = "InvalidMetadata"


class InvalidFilter(InvalidInput):
    """A DID metadata filter cannot be parsed."""

    rucio_class = "DIDFilterSyntaxError"


class InvalidRSEExpression(InvalidInput):
    """An RSE expression cannot be parsed or matches no RSE."""

    rucio_class = "InvalidRSEExpression"


class InvalidChecksum(InvalidInput):
    """A checksum is not in the expected format (adler32: 8 hex digits, md5: 32)."""

    rucio_class = "InvalidObject"


class UnsupportedMetadataPlugin(InvalidInput):
    """The metadata plugin asked for does not exist."""

    rucio_class = "UnsupportedMetadataPlugin"


class RequestTooLarge(InvalidInput):
    """The request body exceeds the configured maximum size."""

    status = 413
    rucio_class = "InvalidObject"


class RangeNotSatisfiable(InvalidInput):
    """A byte range starts beyond the end of the file."""

    status = 416
    rucio_class = "InvalidObject"


class AuthenticationFailed(LakeError):
    """No valid credentials: missing, wrong or expired token or password."""

    status = 401
    rucio_class = "CannotAuthenticate"


class AccessDenied(LakeError):
    """The caller is known but not allowed to do this."""

    status = 401
    rucio_class = "AccessDenied"


class NotFound(LakeError):
    """Something named in the request does not exist."""

    status = 404
    rucio_class = "RucioException"


class AccountNotFound(NotFound):
    rucio_class = "AccountNotFound"


class IdentityNotFound(NotFound):
    rucio_class = "IdentityNotFound"


class ScopeNotFound(NotFound):
    rucio_class = "ScopeNotFound"


class DIDNotFound(NotFound):
    rucio_class = "DataIdentifierNotFound"


class RSENotFound(NotFound):
    rucio_class = "RSENotFound"


class ReplicaNotFound(NotFound):
    rucio_class = "ReplicaNotFound"


class RuleNotFound(NotFound):
    rucio_class = "RuleNotFound"


class RequestNotFound(NotFound):
    rucio_class = "RequestNotFound"


class KeyNotFound(NotFound):
    rucio_class = "KeyNotFound"


class ProtocolNotSupported(NotFound):
    rucio_class = "RSEProtocolNotSupported"


class SubscriptionNotFound(NotFound):
    rucio_class = "SubscriptionNotFound"


class GroupNotFound(NotFound):
    """An identity group (``/escape/cms``) does not exist."""

    rucio_class = "GroupNotFound"


class EmbargoNotFound(NotFound):
    """No embargo with that id."""

    rucio_class = "EmbargoNotFound"


class PolicyNotFound(NotFound):
    """No namespace rule (policy v2) with that id."""

    rucio_class = "PolicyNotFound"


class MembershipNotFound(NotFound):
    """The account is not a member of the group."""

    rucio_class = "MembershipNotFound"


class RegistrationNotFound(NotFound):
    """A registration request id is unknown."""

    rucio_class = "RegistrationNotFound"


class ClientNotFound(NotFound):
    """An OAuth client id is unknown."""

    rucio_class = "ClientNotFound"


class Conflict(LakeError):
    """The request conflicts with the current state of the catalogue."""

    status = 409
    rucio_class = "RucioException"


class Duplicate(Conflict):
    rucio_class = "Duplicate"


class DIDAlreadyExists(Conflict):
    """The DID exists, or existed once: names are never reused."""

    rucio_class = "DataIdentifierAlreadyExists"


class DuplicateContent(Conflict):
    rucio_class = "DuplicateContent"


class DuplicateRule(Conflict):
    rucio_class = "DuplicateRule"


class FileAlreadyExists(Conflict):
    rucio_class = "FileAlreadyExists"


class UnsupportedOperation(Conflict):
    rucio_class = "UnsupportedOperation"


class InvalidReplicationRule(Conflict):
    rucio_class = "InvalidReplicationRule"


class InsufficientAccountLimit(Conflict):
    rucio_class = "InsufficientAccountLimit"


class InsufficientTargetRSEs(Conflict):
    rucio_class = "InsufficientTargetRSEs"


class FileConsistencyMismatch(Conflict):
    """A file is registered again with a different size or checksum than it has."""

    rucio_class = "FileConsistencyMismatch"


class SubscriptionDuplicate(Conflict):
    """An account already has a subscription of that name."""

    rucio_class = "SubscriptionDuplicate"


class ChecksumMismatch(Conflict):
    """Bytes received do not match the declared checksum; nothing was kept."""

    rucio_class = "ChecksumMismatch"


class DatabaseBusy(LakeError):
    """A write met a conflicting write (a deadlock, a serialization failure, a lock it
    could not get in time) and was rolled back: nothing was changed, and the same
    request may simply be sent again. Sent as 503, which Rucio's clients retry."""

    status = 503
    rucio_class = "DatabaseException"


class StorageError(LakeError):
    """A storage endpoint failed; the message names the endpoint and the cause."""

    status = 502
    rucio_class = "RSEOperationNotSupported"


class OAuthError(LakeError):
    """An OAuth 2.0 error (RFC 6749 5.2, RFC 8628 3.5, RFC 8693): the OAuth endpoints
    answer ``{"error": error, "error_description": message}``."""

    status = 400
    rucio_class = "CannotAuthenticate"

    def __init__(self, error: str, message: str | None = None, status: int = 400) -> None:
        if message is None:  # OAuthError(message): an invalid request
            error, message = "invalid_request", error
        super().__init__(message)
        self.error = error
        self.status = status


def _all_subclasses(cls: type[LakeError]) -> list[type[LakeError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


def error_class_for(rucio_class: str, status: int, own_class: str | None = None) -> type[LakeError]:
    """Return the fedlake error class of an error response (used by the client).

    ``own_class`` (the ``FedlakeClass`` a fedlake server sends) names it exactly when it is
    a known class with that status. Otherwise several fedlake classes can share one Rucio
    name; the most specific one whose status matches wins, else the generic class for the
    status.
    """
    subclasses = _all_subclasses(LakeError)
    for cls in subclasses:
        if own_class and cls.__name__ == own_class and cls.status == status:
            return cls
    for cls in reversed(subclasses):
        if cls.rucio_class == rucio_class and cls.status == status:
            return cls
    by_status: dict[int, type[LakeError]] = {
        400: InvalidInput,
        401: AuthenticationFailed,
        404: NotFound,
        409: Conflict,
        413: RequestTooLarge,
        502: StorageError,
    }
    return by_status.get(status, LakeError)
