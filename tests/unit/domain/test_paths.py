"""Deterministic paths and PFNs must be exactly what Rucio (and its clients) compute."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedlake.domain.errors import InvalidInput
from fedlake.domain.paths import (
    ALGORITHMS,
    build_pfn,
    lfn2path,
    path_hash,
    path_identity,
    split_pfn,
)


def rucio_hash(scope: str, name: str) -> str:
    """Rucio's ``RSEDeterministicTranslation.__hash`` (rucio/rse/translation.py), verbatim logic."""
    hstr = hashlib.md5(f"{scope}:{name}".encode(), usedforsecurity=False).hexdigest()
    if scope.startswith("user") or scope.startswith("group"):
        scope = scope.replace(".", "/")
    return f"{scope}/{hstr[0:2]}/{hstr[2:4]}/{name}"


def rucio_identity(scope: str, name: str) -> str:
    if scope.startswith("user") or scope.startswith("group"):
        scope = scope.replace(".", "/")
    return f"{scope}/{name}"


@pytest.mark.parametrize(
    ("scope", "name", "expected"),
    [
        # md5("user.jdoe:f.txt") = fe1e1a48...
        ("user.jdoe", "f.txt", "user/jdoe/fe/1e/f.txt"),
        # md5("user.jdoe:test.file.1") = 077c8119...
        ("user.jdoe", "test.file.1", "user/jdoe/07/7c/test.file.1"),
        # md5("mock:file") = ca2a039f...
        ("mock", "file", "mock/ca/2a/file"),
        # md5("data18_13TeV:AOD.123") = 96dcd220...: dots stay in ordinary scopes
        ("data18_13TeV", "AOD.123", "data18_13TeV/96/dc/AOD.123"),
    ],
)
def test_hash_known_vectors(scope: str, name: str, expected: str) -> None:
    assert path_hash(scope, name) == expected
    assert lfn2path("hash", scope, name) == expected


def test_hash_uses_md5_of_scope_colon_name() -> None:
    digest = hashlib.md5(b"skao:obs-1.ms", usedforsecurity=False).hexdigest()
    assert path_hash("skao", "obs-1.ms") == f"skao/{digest[:2]}/{digest[2:4]}/obs-1.ms"


@pytest.mark.parametrize(
    ("scope", "directory"),
    [
        ("user.jdoe", "user/jdoe"),
        ("group.phys.higgs", "group/phys/higgs"),
        ("skao", "skao"),
        ("cms_embargoed", "cms_embargoed"),
        ("mc16.a", "mc16.a"),
        # Rucio tests startswith('user'), not 'user.'
        ("userdata.x", "userdata/x"),
        ("groupx.y", "groupx/y"),
        ("auser.x", "auser.x"),
    ],
)
def test_scope_directory(scope: str, directory: str) -> None:
    assert path_identity(scope, "n") == f"{directory}/n"
    assert path_hash(scope, "n").startswith(f"{directory}/")
    assert path_hash(scope, "n").count("/") == directory.count("/") + 3


def test_identity() -> None:
    assert path_identity("user.jdoe", "f.txt") == "user/jdoe/f.txt"
    assert path_identity("skao", "a.b") == "skao/a.b"
    assert lfn2path("identity", "skao", "a.b") == "skao/a.b"


_scopes = st.from_regex(r"\A[A-Za-z0-9_.\-]{1,25}\Z")
_names = st.from_regex(r"\A[A-Za-z0-9_.\-:+]{1,60}\Z")


@given(scope=_scopes, name=_names)
def test_matches_rucio_for_any_did(scope: str, name: str) -> None:
    assert path_hash(scope, name) == rucio_hash(scope, name)
    assert path_identity(scope, name) == rucio_identity(scope, name)


def test_algorithms_table() -> None:
    assert set(ALGORITHMS) == {"hash", "identity"}


def test_unknown_algorithm() -> None:
    with pytest.raises(InvalidInput, match=r"unknown path algorithm 'nope'.*hash.*identity"):
        lfn2path("nope", "skao", "x")


@pytest.mark.parametrize(
    ("scheme", "host", "port", "prefix", "path", "pfn"),
    [
        (
            "file",
            "localhost",
            0,
            "/data/rse1",
            "skao/ab/cd/f",
            "file://localhost/data/rse1/skao/ab/cd/f",
        ),
        ("file", "localhost", 1094, "/data/rse1/", "/skao/f", "file://localhost/data/rse1/skao/f"),
        (
            "https",
            "se.example.org",
            443,
            "/dpm/",
            "skao/f",
            "https://se.example.org:443/dpm/skao/f",
        ),
        ("davs", "se", 8443, "data", "a/b", "davs://se:8443/data/a/b"),
        # XRootD's double slash survives, as in Rucio
        ("root", "eos", 1094, "//eos/lake", "a", "root://eos:1094//eos/lake/a"),
        ("s3", "s3.host", 9000, "", "bucket/key", "s3://s3.host:9000/bucket/key"),
        ("https", "h", 443, "/", "x", "https://h:443/x"),
    ],
)
def test_build_pfn(scheme: str, host: str, port: int, prefix: str, path: str, pfn: str) -> None:
    assert build_pfn(scheme, host, port, prefix, path) == pfn


def rucio_pfn(scheme: str, host: str, port: int, prefix: str, path: str) -> str:
    """``RSEProtocol.lfns2pfns`` (and the posix override, which drops the port)."""
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    if not prefix.endswith("/"):
        prefix = prefix + "/"
    hostport = host if scheme == "file" else f"{host}:{port}"
    return f"{scheme}://{hostport}{prefix}{path[1:] if path.startswith('/') else path}"


@given(
    scheme=st.sampled_from(["file", "https", "davs", "root", "s3"]),
    port=st.integers(1, 65535),
    prefix=st.from_regex(r"\A/{0,2}([a-z0-9_]{1,8}/?){0,3}\Z"),
    path=st.from_regex(r"\A/?[a-z0-9_.]{1,8}(/[a-z0-9_.]{1,8}){0,3}\Z"),
)
def test_build_pfn_matches_rucio(scheme: str, port: int, prefix: str, path: str) -> None:
    assert build_pfn(scheme, "host.org", port, prefix, path) == rucio_pfn(
        scheme, "host.org", port, prefix, path
    )


@given(
    scheme=st.sampled_from(["file", "https", "root"]),
    port=st.integers(1, 65535),
    prefix=st.sampled_from(["", "/", "/data", "/data/", "data/rse"]),
    path=st.from_regex(r"\A[a-z0-9_.]{1,8}(/[a-z0-9_.]{1,8}){0,3}\Z"),
)
def test_split_pfn_inverts_build_pfn(scheme: str, port: int, prefix: str, path: str) -> None:
    pfn = build_pfn(scheme, "host.org", port, prefix, path)
    assert split_pfn(pfn, scheme, "host.org", port, prefix) == path


def test_split_pfn_not_under_prefix() -> None:
    assert split_pfn("https://h:443/other/x", "https", "h", 443, "/data") is None
    assert split_pfn("https://h:444/data/x", "https", "h", 443, "/data") is None
    assert split_pfn("https://g:443/data/x", "https", "h", 443, "/data") is None
    assert split_pfn("davs://h:443/data/x", "https", "h", 443, "/data") is None
    # another host is only accepted for file:// protocols declared on localhost
    assert split_pfn("file://otherhost/data/x", "file", "server", 0, "/data") is None


def test_split_pfn_file_on_localhost_accepts_any_host() -> None:
    assert split_pfn("file://worker-7/data/rse/a/b", "file", "localhost", 0, "/data/rse") == "a/b"
    assert split_pfn("file:///data/rse/a/b", "file", "localhost", 0, "/data/rse/") == "a/b"
    assert split_pfn("file://worker-7/elsewhere/a", "file", "localhost", 0, "/data/rse") is None
    assert split_pfn("file://worker-7", "file", "localhost", 0, "/data/rse") is None
