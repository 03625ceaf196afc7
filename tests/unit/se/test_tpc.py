"""HTTP third-party copy's pure parts: the [tpc] allow-list and its parsing, the headers
passed on to the remote server, and the performance marker format."""

from __future__ import annotations

import pytest

from fedlake.domain.errors import InvalidInput
from fedlake.se.config import parse_config
from fedlake.se.tpc import forwarded_headers, perf_marker
from fedlake.se.tpc_config import LOOPBACK, TPCConfig, normalise_url, parse_tpc


def test_default_allows_loopback_only() -> None:
    config = TPCConfig()
    assert config.allow == LOOPBACK
    for url in ("http://127.0.0.1:8443/a", "davs://localhost/a", "https://[::1]:1/x"):
        assert config.refusal(url) is None, url
    for url in ("https://127.0.0.2/a", "https://se.example.org/a", "http://10.0.0.1/"):
        reason = config.refusal(url)
        assert reason is not None and "[tpc] allow" in reason


def test_hosts_ports_and_url_prefixes() -> None:
    config = parse_tpc(
        {"allow": ["se.example.org", "other.example:8443", "https://third.example/cms/", "::1"]}
    )
    allowed = [
        "https://se.example.org/any/path",
        "http://SE.example.org:81/x",  # host names compare without case; any port
        "davs://other.example:8443/f",
        "https://third.example:443/cms/f",
        "davs://third.example/cms",
        "http://[::1]:80/f",
    ]
    refused = [
        "https://other.example/f",  # another port
        "https://third.example/cmsx/f",  # not below the prefix
        "http://third.example/cms/f",  # another scheme
        "https://se.example.org.evil.example/f",
        "https://third.example:8443/cms/f",
    ]
    for url in allowed:
        assert config.refusal(url) is None, url
    for url in refused:
        assert config.refusal(url) is not None, url


def test_normalise_url() -> None:
    assert normalise_url("davs://H.example/a%20b") == ("https", "h.example", 443, "/a%20b")
    assert normalise_url("dav://h:81") == ("http", "h", 81, "/")
    for bad in ("ftp://h/a", "https:///a", "https://u:p@h/a", "https://h:99999/a", "/a"):
        with pytest.raises(ValueError, match=r"URL|port|password"):
            normalise_url(bad)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"allow": "127.0.0.1"}, "list of hosts"),
        ({"allow": ["https://"]}, "not an http"),
        ({"allow": ["h/path"]}, "not a host"),
        ({"allow": ["h:port"]}, "bad port"),
        ({"marker_interval": 0}, "above 0"),
        ({"timeout": "1"}, "number of seconds"),
        ({"verify_tls": "yes"}, "true or false"),
        ({"ca_file": ""}, "a path"),
        ({"allowed": []}, "unknown key(s) allowed"),
    ],
)
def test_bad_tpc_tables(raw: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidInput, match=r"\[tpc\]") as info:
        parse_tpc(raw)
    assert says in str(info.value)


def test_the_tpc_table_in_the_configuration() -> None:
    assert parse_config({}).tpc == TPCConfig()
    config = parse_config({"tpc": {"allow": ["se.example.org"], "marker_interval": 0.5}})
    assert config.tpc.allow == ("se.example.org",)
    assert config.tpc.marker_interval == 0.5
    with pytest.raises(InvalidInput, match="must be a table"):
        parse_config({"tpc": ["x"]})


def test_forwarded_headers() -> None:
    got = forwarded_headers(
        {
            "transferheaderauthorization": "Bearer t",
            "transferheaderx-extra": "1",
            "transferheaderhost": "evil",
            "transferheadercontent-length": "9",
            "transferheader": "empty name",
            "authorization": "Bearer own",
            "source": "https://s/a",
        }
    )
    assert got == {"authorization": "Bearer t", "x-extra": "1"}


def test_perf_marker() -> None:
    assert perf_marker(1234, now=1795317563.9) == (
        b"Perf Marker\nTimestamp: 1795317563\nStripe Index: 0\n"
        b"Stripe Bytes Transferred: 1234\nTotal Stripe Count: 1\nEnd\n"
    )
