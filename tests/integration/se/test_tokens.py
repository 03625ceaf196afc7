"""Tokens at ``fedlake se serve``: a real second issuer (tests/issuer_app.py) whose keys the
SE fetches, WLCG capability scopes, StoRM-style group policies of storage areas, anonymous
read, and the 401/403 answers; a refused write never leaves anything behind."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fedlake.storage.backends.webdav import HttpStorage
from tests.issuer_app import WLCG_ANY, TestIssuer, run_issuer
from tests.servers.fedlake_se import SEServer, running_se


@pytest.fixture(scope="module")
def issuer() -> Iterator[TestIssuer]:
    with run_issuer() as iss:
        yield iss


CONFIG = """
[[issuers]]
issuer = "{issuer}"
audiences = ["{aud}"]

[[areas]]
path = "/cms"
policies = [
  {{ who = "/cms/prod", actions = ["read", "write"] }},
  {{ who = "/cms/banned", actions = ["read", "write"], deny = true }},
  {{ who = "/cms", actions = ["read"] }},
]

[[areas]]
path = "/cms/embargoed"
policies = [ {{ who = "/cms/prod", actions = ["read", "write"] }} ]

[[areas]]
path = "/public"
policies = [
  {{ who = "anonymous", actions = ["read"] }},
  {{ who = "any-authenticated", actions = ["write"] }},
]
"""


@pytest.fixture(scope="module")
def se(issuer: TestIssuer) -> Iterator[SEServer]:
    with running_se(config=CONFIG.format(issuer=issuer.url, aud=WLCG_ANY), workers=2) as server:
        for area in ("cms", "cms/embargoed", "public"):
            (server.root / area).mkdir()
        (server.root / "cms" / "data.bin").write_bytes(b"cms data")
        (server.root / "cms" / "embargoed" / "e.bin").write_bytes(b"secret")
        (server.root / "public" / "p.bin").write_bytes(b"public data")
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def token(issuer: TestIssuer, *, groups: list[str] | None = None, scope: str = "openid") -> str:
    extra: dict[str, Any] = {"scope": scope}
    if groups is not None:
        extra["wlcg.groups"] = groups
    return issuer.mint("user-" + os.urandom(3).hex(), **extra)


def call(
    client: httpx.Client,
    method: str,
    url: str,
    bearer: str | None = None,
    content: bytes | None = None,
    **headers: str,
) -> httpx.Response:
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    if bearer is not None:
        sent["Authorization"] = f"Bearer {bearer}"
    return client.request(method, url, headers=sent, content=content)


# --- anonymous --------------------------------------------------------------------------


def test_anonymous_may_read_where_a_policy_says(se: SEServer, http: httpx.Client) -> None:
    r = call(http, "GET", se.url("/public/p.bin"))
    assert (r.status_code, r.content) == (200, b"public data")
    assert call(http, "PROPFIND", se.url("/public/"), Depth="1").status_code == 207


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/cms/data.bin"), ("PUT", "/public/new.bin"), ("DELETE", "/public/p.bin"),
     ("MKCOL", "/public/dir"), ("PROPFIND", "/"), ("GET", "/elsewhere")],
)  # fmt: skip
def test_anonymous_is_asked_for_a_token(
    se: SEServer, http: httpx.Client, method: str, path: str
) -> None:
    r = call(http, method, se.url(path), content=b"x" if method == "PUT" else None)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "bearer token" in r.text
    assert not (se.root / "public" / "new.bin").exists()
    assert (se.root / "public" / "p.bin").exists()
    assert not (se.root / "public" / "dir").exists()


# --- bad tokens ---------------------------------------------------------------------------


def test_bad_tokens_are_401(se: SEServer, http: httpx.Client, issuer: TestIssuer) -> None:
    url = se.url("/public/p.bin")  # anonymous could read it: a bad token still fails
    cases = {
        "not-a-jwt": "not a JWT",
        issuer.mint(exp=int(time.time()) - 3600): "expired",
        issuer.mint(aud="https://other.example"): "audience",
        issuer.mint(scope="storage.read:/../etc"): "refused",
        issuer.mint(iss="https://untrusted.example"): "untrusted issuer",
        issuer.forge({"alg": "none", "typ": "JWT"}, issuer.claims(), None): "algorithm",
    }
    for bearer, says in cases.items():
        r = call(http, "GET", url, bearer)
        assert r.status_code == 401, says
        assert says in r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = http.get(url, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401
    assert "Bearer" in r.text


# --- group policies (tokens without storage scopes) --------------------------------------


def test_group_policies(se: SEServer, http: httpx.Client, issuer: TestIssuer) -> None:
    prod = token(issuer, groups=["/cms", "/cms/prod"])
    member = token(issuer, groups=["/cms"])
    banned = token(issuer, groups=["/cms/banned", "/cms"])
    other = token(issuer, groups=["/atlas"])
    assert call(http, "PUT", se.url("/cms/by-prod.bin"), prod, b"prod").status_code == 201
    assert call(http, "GET", se.url("/cms/by-prod.bin"), member).content == b"prod"
    r = call(http, "PUT", se.url("/cms/by-member.bin"), member, b"member")
    assert r.status_code == 403
    assert "cms" in r.text and "write" in r.text
    assert "www-authenticate" not in r.headers
    r = call(http, "DELETE", se.url("/cms/by-prod.bin"), member)
    assert r.status_code == 403
    r = call(http, "GET", se.url("/cms/data.bin"), banned)  # deny comes first
    assert r.status_code == 403
    assert "denies" in r.text
    assert call(http, "GET", se.url("/cms/data.bin"), other).status_code == 403
    # the more specific area decides: /cms members may not even read the embargoed part
    assert call(http, "GET", se.url("/cms/embargoed/e.bin"), member).status_code == 403
    assert call(http, "GET", se.url("/cms/embargoed/e.bin"), prod).content == b"secret"
    # any-authenticated may write in /public
    assert call(http, "PUT", se.url("/public/by-other.bin"), other, b"o").status_code == 201
    assert sorted(os.listdir(se.root / "cms")) == ["by-prod.bin", "data.bin", "embargoed"]


# --- capability scopes ---------------------------------------------------------------------


def test_capability_scopes(se: SEServer, http: httpx.Client, issuer: TestIssuer) -> None:
    reader = token(issuer, scope="storage.read:/cms")
    creator = token(issuer, scope="storage.create:/cms/new storage.read:/cms/new")
    modifier = token(issuer, scope="storage.modify:/cms/new")
    # scopes decide, not groups: a /cms/prod member holding only a read scope cannot write
    scoped_prod = token(issuer, groups=["/cms/prod"], scope="storage.read:/public")
    assert call(http, "GET", se.url("/cms/data.bin"), reader).content == b"cms data"
    r = call(http, "GET", se.url("/cms/embargoed/e.bin"), reader)  # scopes ignore areas
    assert r.status_code == 200
    r = call(http, "PUT", se.url("/cms/r.bin"), reader, b"r")
    assert r.status_code == 403
    assert "storage.create" in r.text
    r = call(http, "PUT", se.url("/cms/s.bin"), scoped_prod, b"s")
    assert r.status_code == 403
    assert call(http, "MKCOL", se.url("/cms/new"), creator).status_code == 201
    assert call(http, "PUT", se.url("/cms/new/a.bin"), creator, b"a").status_code == 201
    r = call(http, "PUT", se.url("/cms/new/a.bin"), creator, b"changed")  # overwrite: modify
    assert r.status_code == 403
    assert "storage.modify" in r.text
    assert call(http, "DELETE", se.url("/cms/new/a.bin"), creator).status_code == 403
    dest = se.url("/cms/new/b.bin")
    r = call(http, "MOVE", se.url("/cms/new/a.bin"), creator, Destination=dest)
    assert r.status_code == 201  # onto a free name create is enough (the WLCG profile)
    assert call(http, "PUT", se.url("/cms/new/a.bin"), creator, b"a2").status_code == 201
    r = call(http, "MOVE", se.url("/cms/new/a.bin"), creator, Destination=dest)
    assert r.status_code == 403  # replacing b.bin: modify
    assert "storage.modify" in r.text
    assert (se.root / "cms" / "new" / "b.bin").read_bytes() == b"a"
    assert call(http, "PUT", se.url("/cms/new/a.bin"), modifier, b"changed").status_code == 204
    r = call(http, "MOVE", se.url("/cms/new/a.bin"), modifier, Destination=dest)
    assert r.status_code == 204
    assert (se.root / "cms" / "new" / "b.bin").read_bytes() == b"changed"
    r = call(http, "MOVE", dest, modifier, Destination=se.url("/cms/out.bin"))
    assert r.status_code == 403  # the destination is outside the scope
    assert call(http, "DELETE", dest, modifier).status_code == 204
    assert sorted(os.listdir(se.root / "cms" / "new")) == []


def test_our_client_uploads_with_a_create_only_token(se: SEServer, issuer: TestIssuer) -> None:
    """The webdav plugin PUTs a temporary and MOVEs it onto the name: storage.create is
    enough for a new file, and an overwrite needs storage.modify."""
    bearer = token(issuer, scope="storage.create:/cms/up storage.read:/cms/up")
    with HttpStorage(token=bearer, timeout=30) as client:
        url = se.url("/cms/up/deep/f.bin")
        got = client.write(url, [b"uploaded"])
        assert (se.root / "cms" / "up" / "deep" / "f.bin").read_bytes() == b"uploaded"
        assert client.checksum(url, "adler32") == got.adler32
        with pytest.raises(PermissionError):
            client.write(url, [b"again"], overwrite=True)
    assert os.listdir(se.root / "cms" / "up" / "deep") == ["f.bin"]
    assert (se.root / "cms" / "up" / "deep" / "f.bin").read_bytes() == b"uploaded"
