"""WLCG capability scopes: parsing, normalisation, traversal refusal, hierarchical match."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedlake.auth.capabilities import (
    OPERATIONS,
    Capability,
    allows,
    has_storage_scopes,
    normalise_path,
    parse_scopes,
)
from fedlake.domain.errors import AuthenticationFailed


def test_the_four_storage_scopes_are_parsed_and_others_ignored() -> None:
    caps = parse_scopes(
        "openid offline_access storage.read:/ storage.create:/escape/cms "
        "storage.modify:/escape/lofar/ storage.stage:/tape compute.read storage.issue:/x"
    )
    assert caps == (
        Capability("read", "/"),
        Capability("create", "/escape/cms"),
        Capability("modify", "/escape/lofar"),
        Capability("stage", "/tape"),
    )
    assert [str(c) for c in caps][1] == "storage.create:/escape/cms"
    assert parse_scopes("openid profile") == ()
    assert not has_storage_scopes(parse_scopes("openid"))
    assert has_storage_scopes(parse_scopes("storage.read:/a"))


def test_duplicates_collapse() -> None:
    assert parse_scopes("storage.read:/a storage.read:/a/ storage.read://a") == (
        Capability("read", "/a"),
    )


@pytest.mark.parametrize(
    "scope",
    [
        "storage.read:/escape/../cms",
        "storage.read:/..",
        "storage.modify:/a/b/../../c",
        "storage.read:escape",  # relative
        "storage.read:",  # empty path
        "storage.read",  # no path at all
        "storage.create:/a\\..\\b",
        "storage.read:/a\x00b",
        "openid storage.read:/ok storage.stage:/x/../y",  # one bad scope refuses the token
    ],
)
def test_malformed_storage_scopes_refuse_the_token(scope: str) -> None:
    with pytest.raises(AuthenticationFailed):
        parse_scopes(scope)


def test_traversal_never_grants_the_target() -> None:
    with pytest.raises(AuthenticationFailed, match=r"climbs up with '\.\.'"):
        parse_scopes("storage.read:/escape/../cms")
    # nor does a clean scope grant a request path that climbs out of it
    assert not allows(parse_scopes("storage.read:/escape"), "read", "/escape/../cms")


def test_paths_are_normalised() -> None:
    assert normalise_path("/") == "/"
    assert normalise_path("//a///b/./c/") == "/a/b/c"
    assert normalise_path("/./") == "/"
    for bad in ("a/b", "", "/a/../b", "/..", "/a/\x7f"):
        with pytest.raises(ValueError, match=r"absolute|climbs|control"):
            normalise_path(bad)


def test_hierarchical_match() -> None:
    caps = parse_scopes("storage.read:/foo/bar")
    assert allows(caps, "read", "/foo/bar")
    assert allows(caps, "read", "/foo/bar/")
    assert allows(caps, "read", "/foo/bar/x/y")
    assert not allows(caps, "read", "/foo/bargain")
    assert not allows(caps, "read", "/foo")
    assert not allows(caps, "read", "/")
    assert not allows(caps, "read", "/foo/bar/../baz")  # the request path climbs out
    assert not allows(caps, "read", "foo/bar")
    assert allows(parse_scopes("storage.read:/"), "read", "/anything/at/all")


def test_implied_operations() -> None:
    modify = parse_scopes("storage.modify:/d")
    assert allows(modify, "modify", "/d/f") and allows(modify, "create", "/d/f")
    assert not allows(modify, "read", "/d/f") and not allows(modify, "stage", "/d/f")
    stage = parse_scopes("storage.stage:/t")
    assert allows(stage, "stage", "/t/f") and allows(stage, "read", "/t/f")
    assert not allows(stage, "create", "/t/f")
    create = parse_scopes("storage.create:/d")
    assert allows(create, "create", "/d/new") and not allows(create, "modify", "/d/new")
    read = parse_scopes("storage.read:/d")
    assert not allows(read, "stage", "/d") and not allows(read, "create", "/d")
    with pytest.raises(ValueError, match="unknown operation"):
        allows(read, "delete", "/d")


# --- properties ------------------------------------------------------------------------------

segment = st.text(alphabet="abcxyz0-_.", min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..")
)
paths = st.lists(segment, max_size=5).map(lambda parts: "/" + "/".join(parts))


@given(paths, paths)
def test_a_scope_covers_exactly_its_subtree(granted: str, asked: str) -> None:
    caps = parse_scopes(f"storage.read:{granted}")
    g, a = normalise_path(granted), normalise_path(asked)
    expected = g == "/" or a == g or a.startswith(g + "/")
    assert allows(caps, "read", asked) is expected
    g_parts = [p for p in g.split("/") if p]
    a_parts = [p for p in a.split("/") if p]
    assert expected == (a_parts[: len(g_parts)] == g_parts)  # the same rule, segment-wise


@given(paths, st.lists(segment, max_size=3), paths)
def test_dot_dot_anywhere_is_refused(head: str, middle: list[str], tail: str) -> None:
    path = head.rstrip("/") + "/" + "/".join([*middle, ".."]) + tail
    with pytest.raises(AuthenticationFailed):
        parse_scopes(f"storage.read:{path}")
    assert not allows(parse_scopes("storage.read:/"), "read", path)


@given(paths, st.sampled_from(OPERATIONS))
def test_normalising_is_idempotent_and_match_stable(path: str, op: str) -> None:
    once = normalise_path(path)
    assert normalise_path(once) == once
    caps = parse_scopes(f"storage.{op}:{path}")
    assert allows(caps, op, once) and allows(caps, op, once + "/child")
