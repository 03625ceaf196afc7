"""Request paths to files below the root: normalised, never outside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fedlake.se.paths import BadPath, OutsideRoot, Resolver, clean_path


@pytest.mark.parametrize(
    ("path", "clean"),
    [("/", "/"), ("//a//b/", "/a/b"), ("/a/./b", "/a/b"), ("/a b/ü", "/a b/ü"), ("/a..b", "/a..b")],
)
def test_clean_path(path: str, clean: str) -> None:
    assert clean_path(path) == clean


@pytest.mark.parametrize(
    "path", ["/..", "/a/../b", "/a/..", "a/b", "", "/a\x00b", "/a\\b", "/a\nb", "/" + "x" * 256]
)
def test_bad_paths(path: str) -> None:
    with pytest.raises(BadPath):
        clean_path(path)


def test_resolve_inside(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    resolver = Resolver(tmp_path)
    got = resolver.resolve("/d/f.bin")
    assert got.url_path == "/d/f.bin"
    assert got.fs_path == got.entry == os.path.join(os.path.realpath(tmp_path), "d", "f.bin")
    assert resolver.resolve("/").is_root


def test_symlinks(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "out").symlink_to(outside)
    (root / "dangling-out").symlink_to(outside / "nothing")
    (root / "real.bin").write_bytes(b"x")
    (root / "in").symlink_to(root / "real.bin")
    resolver = Resolver(root)
    for path in ("/out", "/out/x", "/dangling-out"):
        with pytest.raises(OutsideRoot):
            resolver.resolve(path)
    inside = resolver.resolve("/in")
    assert inside.fs_path == str(root / "real.bin")  # read through the link
    assert inside.entry == str(root / "in")  # written, renamed, deleted: the link itself


def test_the_state_directory_is_hidden(tmp_path: Path) -> None:
    resolver = Resolver(tmp_path)
    for path in ("/.fedlake-se", "/.fedlake-se/checksums/x"):
        with pytest.raises(FileNotFoundError):
            resolver.resolve(path)
    (tmp_path / "link").symlink_to(tmp_path / ".fedlake-se")
    with pytest.raises(FileNotFoundError):
        resolver.resolve("/link/x")
    assert resolver.resolve("/d/.fedlake-se").name == ".fedlake-se"  # only at the root


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        Resolver(tmp_path / "missing")
