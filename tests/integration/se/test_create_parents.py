"""``[server] create_parents = true``: a PUT whose parent collection is missing creates the
missing collections as MKCOL would, each authorised for ``create`` before any is made,
instead of answering 409 (what the rucio client's WebDAV plugin needs: it takes a 409 for
"the file exists"). Without the option a missing parent stays 409."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from fedlake.domain.errors import InvalidInput
from fedlake.se.config import parse_config
from tests.issuer_app import WLCG_ANY, TestIssuer, run_issuer
from tests.servers.fedlake_se import SEServer, running_se

CONFIG = """
[server]
create_parents = true

[[issuers]]
issuer = "{issuer}"
audiences = ["{aud}"]
"""


@pytest.fixture(scope="module")
def issuer() -> Iterator[TestIssuer]:
    with run_issuer() as iss:
        yield iss


@pytest.fixture(scope="module")
def se(issuer: TestIssuer) -> Iterator[SEServer]:
    with running_se(config=CONFIG.format(issuer=issuer.url, aud=WLCG_ANY)) as server:
        (server.root / "w").mkdir()
        (server.root / "w" / "file").write_bytes(b"x")
        yield server


def put(se: SEServer, path: str, token: str, body: bytes = b"data") -> httpx.Response:
    return httpx.put(
        se.url(path), content=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_a_put_creates_the_missing_collections(se: SEServer, issuer: TestIssuer) -> None:
    token = issuer.mint(scope="storage.create:/w/new")
    r = put(se, "/w/new/a/b/f.dat", token)
    assert r.status_code == 201, r.text
    assert (se.root / "w/new/a/b/f.dat").read_bytes() == b"data"
    r = put(se, "/w/new/a/c/g.dat", token)  # some collections exist now, some do not
    assert r.status_code == 201, r.text
    assert sorted(p.name for p in (se.root / "w/new/a").iterdir()) == ["b", "c"]


def test_a_refused_put_makes_no_collection(se: SEServer, issuer: TestIssuer) -> None:
    # the file itself is not allowed
    r = put(se, "/w/other/x/f.dat", issuer.mint(scope="storage.create:/w/new"))
    assert r.status_code == 403, r.text
    assert not (se.root / "w/other").exists()
    # the file is, but a collection above it is not: nothing is made either
    r = put(se, "/w/p/q/f.dat", issuer.mint(scope="storage.create:/w/p/q/f.dat"))
    assert r.status_code == 403, r.text
    assert "storage.create on /w/p" in r.text
    assert not (se.root / "w/p").exists()
    # without a token: 401, nothing made
    r = httpx.put(se.url("/w/anon/f.dat"), content=b"x", timeout=30)
    assert r.status_code == 401
    assert not (se.root / "w/anon").exists()


def test_a_file_in_the_way_is_409(se: SEServer, issuer: TestIssuer) -> None:
    r = put(se, "/w/file/sub/f.dat", issuer.mint(scope="storage.create:/w"))
    assert r.status_code == 409, r.text
    assert (se.root / "w/file").read_bytes() == b"x"


def test_without_the_option_a_missing_parent_is_409() -> None:
    with running_se(anonymous=True) as plain:
        r = httpx.put(plain.url("/a/b/f.dat"), content=b"x", timeout=30)
        assert r.status_code == 409, r.text
        assert not (plain.root / "a").exists()


def test_the_option_is_a_bool() -> None:
    assert parse_config({"server": {"create_parents": True}}).create_parents is True
    assert parse_config({}).create_parents is False
    with pytest.raises(InvalidInput, match="create_parents"):
        parse_config({"server": {"create_parents": "yes"}})
