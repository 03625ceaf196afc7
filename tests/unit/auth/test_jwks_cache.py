"""The JWKS cache against a real issuer on a loopback port: it fetches once, refreshes on an
unknown kid at most once per interval, checks the discovery document's issuer, keeps old
keys when a refresh fails, and refuses plain http off loopback."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from fedlake.auth.jwks_cache import JWKSCache, check_fetch_url, discovery_url_of
from fedlake.domain.errors import AuthenticationFailed, InvalidInput
from tests.issuer_app import TestIssuer, run_issuer


@pytest.fixture
def issuer() -> Iterator[TestIssuer]:
    with run_issuer() as iss:
        yield iss


def test_keys_are_fetched_once_and_cached(issuer: TestIssuer) -> None:
    cache = JWKSCache(min_refresh=60)
    rsa = cache.key(issuer.url, None, issuer.rsa.kid or "")
    ec = cache.key(issuer.url, None, issuer.ec.kid or "")
    assert rsa.key_type == "RSA" and ec.key_type == "EC"
    assert rsa.as_dict(private=False)["n"] == issuer.rsa.as_dict(private=False)["n"]
    for _ in range(20):
        cache.key(issuer.url, None, issuer.rsa.kid or "")
    assert issuer.requests == {"discovery": 1, "jwks": 1}
    assert cache.fetches[issuer.url] == 1


def test_only_public_parts_are_kept(issuer: TestIssuer) -> None:
    key = JWKSCache().key(issuer.url, None, issuer.rsa.kid or "")
    assert "d" not in key.as_dict(private=False)
    assert key.is_private is False


def test_a_flood_of_unknown_kids_costs_at_most_one_fetch_per_interval(
    issuer: TestIssuer,
) -> None:
    cache = JWKSCache(min_refresh=60)
    cache.key(issuer.url, None, issuer.rsa.kid or "")
    for n in range(200):
        with pytest.raises(AuthenticationFailed, match="no key"):
            cache.key(issuer.url, None, f"made-up-{n}")
    assert issuer.requests["jwks"] == 1


def test_an_unknown_kid_after_rotation_refreshes_once_the_interval_passed(
    issuer: TestIssuer,
) -> None:
    cache = JWKSCache(min_refresh=0.5)
    cache.key(issuer.url, None, issuer.rsa.kid or "")
    issuer.rotate()
    time.sleep(0.6)
    assert cache.key(issuer.url, None, issuer.rsa.kid or "").kid == issuer.rsa.kid
    assert issuer.requests["jwks"] == 2


def test_old_keys_are_fetched_again_after_max_age(issuer: TestIssuer) -> None:
    cache = JWKSCache(min_refresh=0.1, max_age=0.3)
    kid = issuer.rsa.kid or ""
    cache.key(issuer.url, None, kid)
    time.sleep(0.4)
    cache.key(issuer.url, None, kid)
    assert issuer.requests["jwks"] == 2


def test_a_failed_refresh_keeps_the_old_keys() -> None:
    cache = JWKSCache(min_refresh=0.1, max_age=0.2, timeout=1)
    with run_issuer() as issuer:
        kid = issuer.rsa.kid or ""
        cache.key(issuer.url, None, kid)
    time.sleep(0.3)  # stale, and the issuer is gone
    assert cache.key(issuer.url, None, kid).kid == kid
    with pytest.raises(AuthenticationFailed, match="no key"):
        cache.key(issuer.url, None, "other")


def test_an_unreachable_issuer_is_a_401_and_retried_only_after_the_interval() -> None:
    with run_issuer() as gone:
        url = gone.url
    cache = JWKSCache(min_refresh=60, timeout=1)
    with pytest.raises(AuthenticationFailed, match="cannot fetch"):
        cache.key(url, None, "k")
    with pytest.raises(AuthenticationFailed, match="could not be fetched"):
        cache.key(url, None, "k")
    assert cache.fetches[url] == 1


def test_the_discovery_document_must_name_the_issuer(issuer: TestIssuer) -> None:
    issuer.served_issuer = issuer.url + "/other"
    with pytest.raises(AuthenticationFailed, match="names issuer"):
        JWKSCache().key(issuer.url, None, issuer.rsa.kid or "")
    assert issuer.requests["jwks"] == 0


def test_an_explicit_discovery_url_is_used(issuer: TestIssuer) -> None:
    url = f"{issuer.url}/.well-known/openid-configuration"
    assert discovery_url_of(issuer.url) == url
    assert discovery_url_of(issuer.url + "/") == url
    assert discovery_url_of(issuer.url, "https://x.org/d") == "https://x.org/d"
    cache = JWKSCache()
    cache.key(issuer.url, url, issuer.ec.kid or "")
    with pytest.raises(AuthenticationFailed, match="HTTP 404"):
        cache.key(issuer.url, f"{issuer.url}/nothing-here", issuer.ec.kid or "")


@pytest.mark.parametrize(
    "url",
    [
        "http://iam.example.org/",
        "http://10.0.0.1/",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "/relative",
    ],
)
def test_plain_http_is_refused_off_loopback(url: str) -> None:
    with pytest.raises(InvalidInput):
        check_fetch_url(url, "the issuer")
    with pytest.raises(AuthenticationFailed):
        JWKSCache().key(url, None, "k")


@pytest.mark.parametrize(
    "url", ["https://iam.example.org/", "http://127.0.0.1:9/", "http://localhost/", "http://[::1]/"]
)
def test_https_and_loopback_are_allowed(url: str) -> None:
    assert check_fetch_url(url, "the issuer") == url


def test_a_silent_issuer_times_out_quickly() -> None:
    with socket.socket() as server:  # accepts connections, never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        cache = JWKSCache(timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(AuthenticationFailed, match="cannot fetch"):
            cache.key(url, None, "k")
        assert time.monotonic() - t0 < 3
