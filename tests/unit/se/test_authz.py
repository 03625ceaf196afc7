"""Decisions: anonymous mode, capability scopes, and the storage areas' ordered policies."""

from __future__ import annotations

import pytest

from fedlake.auth.capabilities import parse_scopes
from fedlake.se.authz import ANONYMOUS_CALLER, Authorizer, Caller, Forbidden, Unauthenticated
from fedlake.se.config import parse_config

CONFIG = parse_config(
    {
        "areas": [
            {
                "path": "/cms",
                "policies": [
                    {"who": "/cms/banned", "actions": ["read", "write"], "deny": True},
                    {"who": "/cms/prod", "actions": ["read", "write"]},
                    {"who": "any-authenticated", "actions": ["read"]},
                ],
            },
            {"path": "/cms/private", "policies": [{"who": "/cms/prod", "actions": ["read"]}]},
            {"path": "/", "policies": [{"who": "anonymous", "actions": ["read"]}]},
        ]
    }
)


def user(*groups: str, scope: str = "") -> Caller:
    return Caller(True, "sub", "https://iss", groups, parse_scopes(scope))


def allowed(caller: Caller, operation: str, path: str) -> bool:
    try:
        Authorizer(CONFIG).check(caller, operation, path)
    except (Forbidden, Unauthenticated):
        return False
    return True


@pytest.mark.parametrize(
    ("caller", "operation", "path", "expected"),
    [
        (user("/cms/prod"), "create", "/cms/a", True),
        (user("/cms/prod"), "modify", "/cms/a", True),
        (user("/cms"), "read", "/cms/a", True),  # any-authenticated reads
        (user("/cms"), "create", "/cms/a", False),
        (user("/cms/prod", "/cms/banned"), "read", "/cms/a", False),  # first match wins
        (user("/cms/prod"), "create", "/cms/private/a", False),  # the longest prefix decides
        (user("/cms/prod"), "read", "/cms/private/a", True),
        (user("/atlas"), "read", "/cmsx", True),  # /cmsx is not in /cms: the root area
        (user("/atlas"), "create", "/atlas", False),
        (ANONYMOUS_CALLER, "read", "/else", True),
        (ANONYMOUS_CALLER, "read", "/cms/a", False),
        # scopes alone decide for tokens that carry them
        (user("/cms/prod", scope="storage.read:/cms"), "create", "/cms/a", False),
        (user(scope="storage.create:/cms"), "create", "/cms/private/x", True),
        (user(scope="storage.create:/cms"), "modify", "/cms/x", False),
        (user(scope="storage.modify:/cms"), "create", "/cms/x", True),
        (user(scope="storage.read:/cms"), "read", "/cmsx", False),
    ],
)
def test_decisions(caller: Caller, operation: str, path: str, expected: bool) -> None:
    assert allowed(caller, operation, path) is expected


def test_refusals_say_why() -> None:
    authorizer = Authorizer(CONFIG)
    with pytest.raises(Unauthenticated, match="bearer token"):
        authorizer.check(ANONYMOUS_CALLER, "create", "/x")
    with pytest.raises(Forbidden, match="denies read to /cms/banned"):
        authorizer.check(user("/cms/banned"), "read", "/cms/a")
    with pytest.raises(Forbidden, match=r"do not grant storage.create on /cms/a"):
        authorizer.check(user(scope="storage.read:/cms"), "create", "/cms/a")
    with pytest.raises(Forbidden, match="no storage area covers"):
        Authorizer(parse_config({})).check(user(), "read", "/a")


def test_anonymous_mode_allows_everything() -> None:
    authorizer = Authorizer(parse_config({"server": {"allow_anonymous": True}}))
    authorizer.check(ANONYMOUS_CALLER, "modify", "/anything")


def test_bearer_header() -> None:
    assert Authorizer.bearer(None) is None
    assert Authorizer.bearer("Bearer abc ") == "abc"
    for bad in ("Basic abc", "Bearer ", "abc"):
        with pytest.raises(Unauthenticated):
            Authorizer.bearer(bad)


def test_untrusted_or_malformed_tokens() -> None:
    authorizer = Authorizer(parse_config({"issuers": [{"issuer": "https://iss.example"}]}))
    with pytest.raises(Unauthenticated, match="not a JWT"):
        authorizer.authenticate("garbage")
    # header {"alg":"RS256"}, claims {"iss":"https://other.example"}
    other = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL290aGVyLmV4YW1wbGUifQ.x"
    with pytest.raises(Unauthenticated, match="untrusted issuer"):
        authorizer.authenticate(other)
