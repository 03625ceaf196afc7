"""The ``caches`` RSE attribute: which read-through cache a client reads through."""

from __future__ import annotations

import pytest

from fedlake.domain.errors import InvalidInput
from fedlake.domain.site_caches import cache_for, parse_caches

VALUE = "10.1.0.0/16=https://xc.a.org:8443/;site:SITE-B=http://cache.b.org;2001:db8::/32=https://v6"


def test_first_matching_entry_wins() -> None:
    routes = parse_caches(VALUE + ";0.0.0.0/0=https://anywhere")
    assert cache_for(routes, "10.1.2.3", None) == "https://xc.a.org:8443/"
    assert cache_for(routes, "10.1.2.3", "SITE-B") == "https://xc.a.org:8443/"
    assert cache_for(routes, "192.0.2.1", "SITE-B") == "http://cache.b.org/"
    assert cache_for(routes, "2001:db8::1", None) == "https://v6/"
    assert cache_for(routes, "192.0.2.1", None) == "https://anywhere/"


def test_no_match() -> None:
    routes = parse_caches(VALUE)
    assert cache_for(routes, "192.0.2.1", "SITE-C") is None
    assert cache_for(routes, None, None) is None
    assert cache_for(routes, "testclient", None) is None  # not an address: no network matches
    assert cache_for(routes, "::ffff:10.1.0.1", None) is None  # other IP version


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (42, "must be a string"),
        ("", "names no cache"),
        (" ; ", "names no cache"),
        ("10.1.0.0/16", "NETWORK=URL"),
        ("=https://x", "NETWORK=URL"),
        ("10.1.0.0/16=ftp://x", "must be http"),
        ("10.1.0.0/16=https://", "must be http"),
        ("10.1.0.0/16=https://x/?a=1", "no query"),
        ("site:=https://x", "site name"),
        ("cern.ch=https://x", "neither a network"),
        ("10.1.0.0/33=https://x", "neither a network"),
    ],
)
def test_bad_values_are_refused(value: object, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_caches(value)
