"""Attacks on token validation, one test per case, through the real API: tokens of a trusted
external issuer (tests/issuer_app.py, a real HTTP issuer on a loopback port) and, where the
case applies, the lake's own tokens.

(Revoked jti and refresh tokens used as access tokens are tested with the embedded issuer;
embargo cases come with the authorization policy.)
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from joserfc import jwt
from starlette.testclient import TestClient

from fedlake.bootstrap import Lake
from tests.conftest import BACKENDS
from tests.helpers import ROOT_PASSWORD, assert_error, lake_on, one, post
from tests.issuer_app import WLCG_ANY, TestIssuer, run_issuer

KINDS = ["external", "own"]


@pytest.fixture(scope="module")
def issuer() -> Iterator[TestIssuer]:
    with run_issuer() as iss:
        yield iss


@pytest.fixture
def trusted(api: TestClient, issuer: TestIssuer) -> TestIssuer:
    """The issuer trusted by the lake, its subject alice-sub mapped to account alice."""
    r = post(api, "/iam/issuers", {"issuer": issuer.url, "audiences": [WLCG_ANY]})
    assert r.status_code == 201, r.text
    assert post(api, "/accounts/alice", {"type": "USER"}).status_code == 201
    body = {"identity": f"SUB=alice-sub, ISS={issuer.url}", "authtype": "OIDC", "email": "a@b.c"}
    assert post(api, "/accounts/alice/identities", body).status_code == 201
    return issuer


def whoami(api: TestClient, token: str) -> httpx.Response:
    return api.get("/accounts/whoami", headers={"X-Rucio-Auth-Token": token, "Authorization": ""})


def refused(api: TestClient, token: str, *words: str) -> None:
    r = whoami(api, token)
    message = assert_error(r, 401, "CannotAuthenticate")
    for word in words:
        assert word in message, message
    assert token not in r.text and token not in str(r.headers)


def unpack(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a JWT, unverified."""
    head, payload, _ = token.split(".")
    return tuple(  # type: ignore[return-value]
        json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in (head, payload)
    )


def own_claims(lake: Lake, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "wlcg.ver": "1.0",
        "iss": lake.tokens.issuer,
        "sub": "root",
        "aud": WLCG_ANY,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "scope": "openid",
        "fedlake.account": "root",
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def own_token(lake: Lake, **extra: Any) -> str:
    """A token signed with the lake's own current key, with any claims."""
    key, alg = lake.tokens.keys.current()
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, own_claims(lake, **extra), key, algorithms=[alg])


def good_token(kind: str, lake: Lake, issuer: TestIssuer, **extra: Any) -> str:
    return issuer.mint("alice-sub", **extra) if kind == "external" else own_token(lake, **extra)


def test_genuine_tokens_are_accepted(api: TestClient, lake: Lake, trusted: TestIssuer) -> None:
    """The control case: without it every refusal below could be a broken set-up."""
    assert one(whoami(api, trusted.mint("alice-sub")))["account"] == "alice"
    assert one(whoami(api, trusted.mint("alice-sub", alg="ES256")))["account"] == "alice"
    assert one(whoami(api, own_token(lake)))["account"] == "root"


@pytest.mark.parametrize("kind", KINDS)
def test_alg_none_is_refused(kind: str, api: TestClient, lake: Lake, trusted: TestIssuer) -> None:
    genuine = good_token(kind, lake, trusted)
    header, claims = unpack(genuine)
    header |= {"alg": "none"}
    refused(api, trusted.forge(header, claims, None))
    refused(api, trusted.forge(header | {"alg": "None"}, claims, None))


@pytest.mark.parametrize("kind", KINDS)
def test_hs256_signed_with_the_public_key_is_refused(
    kind: str, api: TestClient, lake: Lake, trusted: TestIssuer
) -> None:
    genuine = good_token(kind, lake, trusted)
    header, claims = unpack(genuine)
    header |= {"alg": "HS256"}
    if kind == "external":
        secrets = [trusted.public_pem(), trusted.rsa.as_dict(private=False)["n"].encode()]
    else:
        key, _ = lake.tokens.keys.current()
        secrets = [key.as_pem(private=False)]
    for secret in secrets:
        refused(api, trusted.forge(header, claims, secret))


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_signature_is_refused(
    kind: str, api: TestClient, lake: Lake, trusted: TestIssuer
) -> None:
    genuine = good_token(kind, lake, trusted)
    head, payload, signature = genuine.split(".")
    other = good_token(kind, lake, trusted, scope="storage.modify:/", jti="other")
    refused(api, f"{head}.{other.split('.')[1]}.{signature}")  # claims swapped
    flipped = signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")
    refused(api, f"{head}.{payload}.{flipped}")


@pytest.mark.parametrize("kind", KINDS)
def test_an_expired_token_is_refused(
    kind: str, api: TestClient, lake: Lake, trusted: TestIssuer
) -> None:
    past = int(time.time()) - 3600
    refused(api, good_token(kind, lake, trusted, iat=past - 600, nbf=past - 600, exp=past), "exp")
    if kind == "external":  # a missing exp is no better
        refused(api, trusted.mint("alice-sub", exp=None), "exp")


def test_clock_skew_is_tolerated_a_little(api: TestClient, lake: Lake, trusted: TestIssuer) -> None:
    now = int(time.time())
    token = trusted.mint("alice-sub", exp=now - 20, nbf=now + 20, iat=now + 20)
    assert one(whoami(api, token))["account"] == "alice"


@pytest.mark.parametrize("kind", KINDS)
def test_nbf_in_the_future_is_refused(
    kind: str, api: TestClient, lake: Lake, trusted: TestIssuer
) -> None:
    refused(api, good_token(kind, lake, trusted, nbf=int(time.time()) + 3600), "nbf")


def test_iat_in_the_future_is_refused(api: TestClient, trusted: TestIssuer) -> None:
    refused(api, trusted.mint("alice-sub", iat=int(time.time()) + 3600), "iat")


def test_a_wrong_audience_is_refused(api: TestClient, trusted: TestIssuer) -> None:
    refused(api, trusted.mint("alice-sub", aud="https://other-service.example.org"), "audience")
    refused(api, trusted.mint("alice-sub", aud=["https://a.example", "https://b.example"]))
    refused(api, trusted.mint("alice-sub", aud=None), "audience")
    assert one(whoami(api, trusted.mint("alice-sub", aud=["https://x.example", WLCG_ANY])))


def test_an_untrusted_issuer_is_refused(api: TestClient, trusted: TestIssuer) -> None:
    with run_issuer() as stranger:
        refused(api, stranger.mint("alice-sub"), "untrusted issuer")
        assert stranger.requests == {"discovery": 0, "jwks": 0}  # never contacted
        # a stranger's token claiming the trusted issuer: its key id is unknown there
        forged = stranger.mint("alice-sub", iss=trusted.url)
        refused(api, forged)
    refused(api, trusted.mint("alice-sub", iss="https://idp.example.org"), "untrusted issuer")


def test_missing_wlcg_ver_is_refused(api: TestClient, trusted: TestIssuer) -> None:
    refused(api, trusted.mint("alice-sub", **{"wlcg.ver": None}), "wlcg.ver")
    refused(api, trusted.mint("alice-sub", **{"wlcg.ver": "2.0"}), "wlcg.ver")


def test_own_tokens_without_wlcg_ver_or_for_another_audience_are_refused(
    api: TestClient, lake: Lake
) -> None:
    refused(api, own_token(lake, **{"wlcg.ver": None}), "wlcg.ver")
    refused(api, own_token(lake, aud="https://other-service.example.org"), "audience")
    refused(api, own_token(lake, aud=None), "audience")
    # the lake's own URL is an audience of its own tokens too (one of several, or alone)
    assert one(whoami(api, own_token(lake, aud=[lake.tokens.issuer, "https://x.example"])))
    assert one(whoami(api, own_token(lake, aud=lake.tokens.issuer)))["account"] == "root"


def test_an_algorithm_outside_the_issuers_allow_list_is_refused(
    api: TestClient, trusted: TestIssuer
) -> None:
    r = api.patch(_path(trusted), content=b'{"algorithms": ["ES256"]}')
    assert r.status_code == 200, r.text
    refused(api, trusted.mint("alice-sub", alg="RS256"), "not allowed")
    assert one(whoami(api, trusted.mint("alice-sub", alg="ES256")))["account"] == "alice"


def _path(issuer: TestIssuer) -> str:
    return "/iam/issuers/" + quote(issuer.url, safe="")


def test_an_unknown_kid_after_key_rotation_refreshes_the_keys(
    api: TestClient, lake: Lake, trusted: TestIssuer
) -> None:
    lake.trust.keys.min_refresh = 1  # FEDLAKE_JWKS_MIN_REFRESH=1
    assert one(whoami(api, trusted.mint("alice-sub")))["account"] == "alice"
    before = trusted.requests["jwks"]
    trusted.rotate()
    time.sleep(1.1)
    assert one(whoami(api, trusted.mint("alice-sub")))["account"] == "alice"
    assert trusted.requests["jwks"] == before + 1


def test_a_flood_of_unknown_kids_makes_bounded_fetches(
    api: TestClient, lake: Lake, trusted: TestIssuer
) -> None:
    assert lake.trust.keys.min_refresh == 30  # the default
    assert one(whoami(api, trusted.mint("alice-sub")))["account"] == "alice"
    before = dict(trusted.requests)
    for n in range(100):
        refused(api, trusted.mint("alice-sub", kid=f"made-up-{n}"), "no key")
    assert trusted.requests == before  # not one fetch more


def test_userpass_brute_force_is_throttled(api: TestClient) -> None:
    def login(password: str, username: str = "root") -> httpx.Response:
        return api.get(
            "/auth/userpass",
            headers={"X-Rucio-Username": username, "X-Rucio-Password": password},
        )

    for n in range(5):
        assert "wrong" in assert_error(login(f"guess-{n}"), 401, "CannotAuthenticate")
    # now even the right password waits: the attacker cannot keep guessing at full speed
    assert "too many failed logins" in assert_error(login(ROOT_PASSWORD), 401)
    assert "too many failed logins" in assert_error(login("guess-again"), 401)
    assert "wrong" in assert_error(login("x", username="someone-else"), 401)  # per username


@pytest.mark.parametrize("backend", BACKENDS)
def test_tokens_never_reach_the_server_log(backend: str, tmp_path: Path) -> None:
    with run_issuer() as issuer, lake_on(backend, tmp_path / "lake") as live:
        http = httpx.Client(base_url=live.url, timeout=30)
        r = http.get(
            "/auth/userpass",
            headers={"X-Rucio-Username": "root", "X-Rucio-Password": ROOT_PASSWORD},
        )
        assert r.status_code == 200, r.text
        root = {"X-Rucio-Auth-Token": r.headers["X-Rucio-Auth-Token"]}
        body = {"issuer": issuer.url, "audiences": [WLCG_ANY]}
        assert http.post("/iam/issuers", content=_json(body), headers=root).status_code == 201
        assert http.post("/accounts/alice", content=b"{}", headers=root).status_code == 201
        ident = {"identity": f"SUB=alice-sub, ISS={issuer.url}", "authtype": "OIDC"}
        r = http.post("/accounts/alice/identities", content=_json(ident), headers=root)
        assert r.status_code == 201, r.text
        external = issuer.mint("alice-sub")
        tokens = [root["X-Rucio-Auth-Token"], external]
        for token in tokens:
            for headers in ({"X-Rucio-Auth-Token": token}, {"Authorization": f"Bearer {token}"}):
                assert http.get("/accounts/whoami", headers=headers).status_code == 200
        bad = [
            issuer.mint("alice-sub", aud="https://nope.example"),
            issuer.mint("nobody"),
            issuer.mint("alice-sub", kid="unknown"),
            external[:-5] + "AAAAA",
            "not-a-jwt-" + uuid.uuid4().hex,
        ]
        for token in bad:
            assert http.get("/accounts/whoami", headers={"X-Rucio-Auth-Token": token}).is_error
        tokens += bad
        http.close()
        live.stop()
        log = live.log.read_text(errors="replace")
    assert "fedlake is up" in log  # the log is the server's
    for token in tokens:
        for part in [token, *(p for p in token.split(".") if len(p) >= 16)]:
            assert part not in log, f"a token part is in the server log: {part[:12]}..."


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()
