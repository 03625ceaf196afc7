"""Tokens of the embedded issuer: round trip, and every way a token must be refused."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws, jwt
from joserfc.jwk import ECKey, OctKey
from sqlalchemy import select

from fedlake.auth.tokens import ALGORITHM, LEEWAY, TokenClaims, TokenService
from fedlake.catalog.db import Database
from fedlake.catalog.migrate import upgrade
from fedlake.catalog.models import SigningKey
from fedlake.domain.errors import AuthenticationFailed

ISSUER = "https://lake.example.org"


def _database(path: Path) -> Database:
    db = Database(f"sqlite:///{path / 'c.db'}")
    upgrade(db)
    return db


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = _database(tmp_path_factory.mktemp("tokens"))
    yield database
    database.dispose()


@pytest.fixture
def service(db: Database) -> TokenService:
    return TokenService(db, ISSUER, 3600)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _signing_key(db: Database, service: TokenService) -> ECKey:
    """The private key the service signs with, read as another process would."""
    service.jwks()  # make sure a key exists
    with db.read() as session:
        rows = session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))).all()
    newest = max(rows, key=lambda r: r.created_at)
    return ECKey.import_key(json.loads(newest.private_jwk))


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "wlcg.ver": "1.0",
        "aud": "https://wlcg.cern.ch/jwt/v1/any",
        "iss": ISSUER,
        "sub": "sub-1",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "fedlake.account": "alice",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(db: Database, service: TokenService, claims: dict[str, Any]) -> str:
    key = _signing_key(db, service)
    return jwt.encode({"alg": ALGORITHM, "kid": key.kid}, claims, key, algorithms=[ALGORITHM])


def _refused(service: TokenService, token: str, reason: str) -> None:
    with pytest.raises(AuthenticationFailed, match=reason) as info:
        service.validate(token)
    assert info.value.status == 401


# --- round trip -------------------------------------------------------------------------


def test_issue_and_validate(service: TokenService) -> None:
    before = int(time.time())
    token, exp = service.issue(
        "alice", "alice@idp", scope="openid storage.read:/", groups=("/skao",)
    )
    assert before + 3600 <= exp <= int(time.time()) + 3600
    claims = service.validate(token)
    assert isinstance(claims, TokenClaims)
    assert claims.account == "alice"
    assert claims.subject == "alice@idp"
    assert claims.issuer == ISSUER
    assert claims.expires_at == exp
    assert claims.scope == "openid storage.read:/"
    assert claims.groups == ("/skao",)
    assert len(claims.jti) == 32


def test_wlcg_profile_claims(service: TokenService) -> None:
    token, _ = service.issue("bob", "bob", lifetime=120)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert header["alg"] == "ES256"
    assert header["kid"]
    assert payload["wlcg.ver"] == "1.0"
    assert payload["aud"] == "https://wlcg.cern.ch/jwt/v1/any"
    assert payload["exp"] - payload["iat"] == 120
    assert "wlcg.groups" not in payload
    assert service.validate(token).groups == ()


def test_tokens_are_unique(service: TokenService) -> None:
    first, _ = service.issue("alice", "a")
    second, _ = service.issue("alice", "a")
    assert first != second
    assert service.validate(first).jti != service.validate(second).jti


def test_jwks_is_public(service: TokenService) -> None:
    keys = service.jwks()["keys"]
    assert keys
    for key in keys:
        assert key["kty"] == "EC"
        assert key["crv"] == "P-256"
        assert "d" not in key
        assert key["kid"]


def test_other_process_with_same_catalogue_accepts_token(db: Database) -> None:
    token, _ = TokenService(db, ISSUER, 3600).issue("alice", "a")
    assert TokenService(db, ISSUER, 3600).validate(token).account == "alice"


def test_key_added_by_another_process_is_picked_up(db: Database, service: TokenService) -> None:
    service.jwks()  # this process has loaded the keys it knows
    new = ECKey.generate_key("P-256", parameters={"kid": "rotated-key-1"})
    with db.write() as session:
        session.add(
            SigningKey(
                kid="rotated-key-1",
                algorithm=ALGORITHM,
                private_jwk=json.dumps(new.as_dict(private=True)),
            )
        )
    token = jwt.encode(
        {"alg": ALGORITHM, "kid": "rotated-key-1"}, _claims(), new, algorithms=[ALGORITHM]
    )
    assert service.validate(token).account == "alice"


def test_expiry_leeway(db: Database, service: TokenService) -> None:
    now = int(time.time())
    assert service.validate(_sign(db, service, _claims(exp=now - LEEWAY // 2))).account == "alice"


# --- refused ----------------------------------------------------------------------------


def test_expired(service: TokenService) -> None:
    token, _ = service.issue("alice", "a", lifetime=-3600)
    _refused(service, token, "has expired")


def test_not_yet_valid(db: Database, service: TokenService) -> None:
    token = _sign(db, service, _claims(nbf=int(time.time()) + 3600))
    _refused(service, token, "not valid yet")


@pytest.mark.parametrize("exp", [None, "2999999999", 1e12])
def test_exp_must_be_an_integer(db: Database, service: TokenService, exp: Any) -> None:
    claims = _claims()
    claims.pop("exp")
    if exp is not None:
        claims["exp"] = exp
    _refused(service, _sign(db, service, claims), "has expired")


def test_wrong_issuer(db: Database, service: TokenService) -> None:
    token, _ = TokenService(db, "https://other.example.org", 3600).issue("alice", "a")
    _refused(service, token, "issued by another issuer")


def test_missing_account(db: Database, service: TokenService) -> None:
    _refused(service, _sign(db, service, _claims(**{"fedlake.account": None})), "names no account")
    _refused(service, _sign(db, service, _claims(**{"fedlake.account": 7})), "names no account")


@pytest.mark.parametrize("groups", [5, "skao", ["/a", 1], {"a": 1}])
def test_malformed_groups(db: Database, service: TokenService, groups: Any) -> None:
    _refused(service, _sign(db, service, _claims(**{"wlcg.groups": groups})), "wlcg.groups")


def test_tampered_signature(service: TokenService) -> None:
    token, _ = service.issue("alice", "a")
    head, payload, sig = token.split(".")
    middle = len(sig) // 2
    flipped = sig[:middle] + ("A" if sig[middle] != "A" else "B") + sig[middle + 1 :]
    _refused(service, f"{head}.{payload}.{flipped}", "cannot be verified")
    _refused(service, f"{head}.{payload}.", "cannot be verified")


def test_tampered_payload(service: TokenService) -> None:
    token, _ = service.issue("alice", "a")
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["fedlake.account"] = "root"
    _refused(service, f"{head}.{_b64(json.dumps(claims).encode())}.{sig}", "cannot be verified")


def test_alg_none(service: TokenService) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    _refused(service, f"{header}.{payload}.", "cannot be verified")
    _refused(service, f"{header}.{payload}.c2ln", "cannot be verified")


def test_hs256_with_the_public_key_as_secret(service: TokenService) -> None:
    """Algorithm confusion: an HMAC token keyed with the published JWKS must fail."""
    public = json.dumps(service.jwks()["keys"][0]).encode()
    token = jwt.encode({"alg": "HS256"}, _claims(), OctKey.import_key(public), algorithms=["HS256"])
    _refused(service, token, "cannot be verified")


def test_token_of_another_lake(tmp_path: Path, service: TokenService) -> None:
    other_db = _database(tmp_path)
    try:
        token, _ = TokenService(other_db, ISSUER, 3600).issue("alice", "a")
    finally:
        other_db.dispose()
    _refused(service, token, "cannot be verified")


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"alice"', b"\xff\xfe", b"null"])
def test_signed_payload_that_is_not_a_claims_object(
    db: Database, service: TokenService, payload: bytes
) -> None:
    key = _signing_key(db, service)
    token = jws.serialize_compact({"alg": ALGORITHM, "kid": key.kid}, payload, key)
    _refused(service, token, "cannot be verified")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",  # a JWE
        "..",
        "a.b.c",
        "é.é.é",
        "eyJhbGciOiJFUzI1NiJ9.e30.",
        _b64(b"[1]") + ".e30.c2ln",
        _b64(b"{}") + ".e30.c2ln",
    ],
)
def test_not_a_jwt(service: TokenService, token: str) -> None:
    _refused(service, token, "not a JWT|cannot be verified")


_B64URL = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=40
)


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.one_of(_B64URL, st.text(max_size=10)), min_size=1, max_size=4))
def test_garbage_is_always_authentication_failed(db: Database, parts: list[str]) -> None:
    with pytest.raises(AuthenticationFailed):
        TokenService(db, ISSUER, 3600).validate(".".join(parts))
