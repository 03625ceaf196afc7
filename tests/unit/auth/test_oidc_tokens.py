"""Refresh tokens are never access tokens; key rotation across processes; scopes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fedlake.auth.tokens import TokenService
from fedlake.catalog.db import Database
from fedlake.catalog.migrate import upgrade
from fedlake.domain.errors import AuthenticationFailed, OAuthError
from fedlake.services import oidc_scopes as scopes

ISSUER = "https://lake.example.org"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(database)
    yield database
    database.dispose()


def test_refresh_tokens_are_not_access_tokens(db: Database) -> None:
    service = TokenService(db, ISSUER, 3600)
    refresh, jti, _ = service.issue_refresh("alice", "alice", scope="openid", client_id="c")
    with pytest.raises(AuthenticationFailed, match="refresh token is not an access token"):
        service.validate(refresh)
    assert service.validate_refresh(refresh).jti == jti
    access, _ = service.issue("alice", "alice")
    with pytest.raises(AuthenticationFailed, match="not a refresh token"):
        service.validate_refresh(access)


def test_rotation_seen_by_another_process(db: Database) -> None:
    a = TokenService(db, ISSUER, 3600)
    b = TokenService(db, ISSUER, 3600, algorithm="RS256")
    old, _ = a.issue("alice", "a")
    assert b.validate(old).account == "alice"
    kid = b.keys.rotate()
    new, _ = b.issue("alice", "a")
    assert a.validate(new).account == "alice"  # unknown kid: a reloads
    assert a.validate(old).account == "alice"  # the retired key still validates
    assert {k["kid"] for k in a.jwks()["keys"]} >= {kid}
    infos = {k.kid: k for k in a.keys.list()}
    assert infos[kid].current and infos[kid].algorithm == "RS256"


def test_retired_keys_drop_out_after_the_longest_lifetime(db: Database) -> None:
    service = TokenService(db, ISSUER, 60, refresh_lifetime=60)
    service.keys.keep_seconds = 0
    old, _ = service.issue("alice", "a")
    service.keys.rotate()
    with pytest.raises(AuthenticationFailed, match="unknown key"):
        service.validate(old)
    assert len(service.jwks()["keys"]) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("storage.read:/a//b/", ["storage.read:/a/b"]),
        ("openid openid storage.create", ["openid", "storage.create:/"]),
        ("wlcg.groups:/escape/", ["wlcg.groups:/escape"]),
    ],
)
def test_scopes_are_normalised(text: str, expected: list[str]) -> None:
    assert scopes.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["storage.read:/a/../b", "storage.modify:relative", "storage.read:/./x"]
)
def test_bad_paths_are_invalid_scope(text: str) -> None:
    with pytest.raises(OAuthError) as info:
        scopes.parse(text)
    assert info.value.error == "invalid_scope"


def test_grant_and_narrowing() -> None:
    allowed = ["openid", "storage.read:/data", "wlcg.groups"]
    asked = scopes.parse("openid storage.read:/data/x storage.read:/other wlcg.groups:/g foo")
    assert scopes.grant(asked, allowed) == ["openid", "storage.read:/data/x", "wlcg.groups:/g"]
    assert scopes.is_narrower(["storage.read:/data/x/y"], ["storage.read:/data/x"])
    assert not scopes.is_narrower(["storage.read:/data"], ["storage.read:/data/x"])
    assert not scopes.is_narrower(["storage.modify:/data/x"], ["storage.read:/data"])
    assert not scopes.is_narrower(["storage.read:/data-2"], ["storage.read:/data"])


def test_unknown_kid_reloads_are_rate_limited(db: Database) -> None:
    import json
    import time

    from joserfc import jwt
    from joserfc.jwk import ECKey

    from fedlake.catalog.models import SigningKey

    service = TokenService(db, ISSUER, 3600)
    service.jwks()
    service.keys.reload_rate = 0.0  # no refill while the test runs (however slow)
    for n in range(10):  # made-up kids use up the reload allowance
        fake = ECKey.generate_key("P-256", parameters={"kid": f"fake-{n}"})
        forged = jwt.encode({"alg": "ES256", "kid": f"fake-{n}"}, {"iss": ISSUER}, fake)
        with pytest.raises(AuthenticationFailed, match="unknown key"):
            service.validate(forged)
    new = ECKey.generate_key("P-256", parameters={"kid": "added-later"})
    with db.write() as session:
        session.add(
            SigningKey(
                kid="added-later",
                algorithm="ES256",
                private_jwk=json.dumps(new.as_dict(private=True)),
            )
        )
    now = int(time.time())
    claims = {
        "wlcg.ver": "1.0",
        "aud": ISSUER,
        "iss": ISSUER,
        "iat": now,
        "exp": now + 60,
        "fedlake.account": "alice",
    }
    token = jwt.encode({"alg": "ES256", "kid": "added-later"}, claims, new)
    with pytest.raises(AuthenticationFailed, match="unknown key"):
        service.validate(token)  # no reload allowed right now
    service.keys.reload_rate = 1.0
    time.sleep(1.1)
    assert service.validate(token).account == "alice"  # the allowance refilled


def test_the_algorithm_must_match_the_key(db: Database) -> None:
    import base64
    import json

    service = TokenService(db, ISSUER, 3600)
    token, _ = service.issue("alice", "a")
    head, payload, sig = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    header["alg"] = "RS256"
    forged_head = base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=")
    with pytest.raises(AuthenticationFailed, match="wrong algorithm"):
        service.validate(f"{forged_head}.{payload}.{sig}")
    header["alg"] = "HS256"
    forged_head = base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=")
    with pytest.raises(AuthenticationFailed, match="not accepted"):
        service.validate(f"{forged_head}.{payload}.{sig}")
