"""The conformance suite every storage backend passes (as fsspec's ``tests/abstract``).

A backend's tests subclass :class:`StorageConformance` and provide ``storage`` (a
:class:`~fedlake.storage.base.Storage`) and ``base_url`` (a directory URL the tests may
write below), either as pytest fixtures or as class attributes::

    class TestPosix(StorageConformance):
        __test__ = True

        @pytest.fixture
        def storage(self) -> Storage:
            return PosixStorage()

        @pytest.fixture
        def base_url(self, tmp_path: Path) -> str:
            return f"file://localhost{tmp_path}"

Every test works in its own fresh sub-directory of ``base_url``. Backends whose
``listdir`` hides temporaries should override :meth:`StorageConformance.raw_listdir`
so the suite can also check that failed writes leave no temporary behind.

The base class sets ``__test__ = False`` so pytest never collects it by itself;
subclasses set ``__test__ = True``.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fedlake.domain.checksums import Digest
from fedlake.domain.errors import ChecksumMismatch
from fedlake.storage.base import Storage

__all__ = ["StorageConformance", "Target"]

DATA = b"The lake keeps every byte it is given, verified.\n" * 37


def digest_of(data: bytes) -> Digest:
    return Digest(
        len(data), f"{zlib.adler32(data):08x}", hashlib.md5(data, usedforsecurity=False).hexdigest()
    )


class _Boom(RuntimeError):
    """Raised by a chunk iterator half-way through a write."""


def _failing_chunks(data: bytes, fail_after: int = 2) -> Iterator[bytes]:
    for i in range(fail_after):
        yield data[i::fail_after]
    raise _Boom("the source broke off")


def _chunked(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@dataclass
class Target:
    """One test's storage and its own empty directory URL."""

    storage: Storage
    dir_url: str

    def url(self, name: str) -> str:
        return f"{self.dir_url}/{name}"

    def put(self, name: str, data: bytes = DATA) -> str:
        url = self.url(name)
        self.storage.write(url, _chunked(data))
        return url

    def read(self, url: str, offset: int = 0, length: int | None = None) -> bytes:
        return b"".join(self.storage.read(url, offset, length))


class StorageConformance:
    """Behaviour every :class:`~fedlake.storage.base.Storage` must show."""

    __test__ = False

    def raw_listdir(self, storage: Storage, dir_url: str) -> list[str]:
        """Every entry of a directory, temporaries included (override where they're hidden)."""
        return storage.listdir(dir_url)

    @pytest.fixture
    def target(self, request: pytest.FixtureRequest) -> Target:
        storage: Storage = self._provided(request, "storage")
        base_url: str = self._provided(request, "base_url")
        return Target(storage, f"{base_url.rstrip('/')}/conformance-{secrets.token_hex(6)}")

    def _provided(self, request: pytest.FixtureRequest, name: str) -> Any:
        try:
            return request.getfixturevalue(name)
        except pytest.FixtureLookupError:
            value = getattr(self, name, None)
            if value is None or (callable(value) and not isinstance(value, Storage)):
                raise TypeError(
                    f"{type(self).__name__} must provide {name!r} as a fixture or attribute"
                ) from None
            return value

    def _assert_only(self, t: Target, names: list[str]) -> None:
        """The directory holds exactly ``names``: no target, no temporary left over."""
        assert sorted(t.storage.listdir(t.dir_url)) == sorted(names)
        assert sorted(self.raw_listdir(t.storage, t.dir_url)) == sorted(names)

    # --- write and read ------------------------------------------------------------------

    def test_round_trip(self, target: Target) -> None:
        url = target.url("a.dat")
        got = target.storage.write(url, _chunked(DATA))
        assert got == digest_of(DATA)
        assert target.read(url) == DATA
        assert target.storage.exists(url)

    def test_round_trip_empty_file(self, target: Target) -> None:
        url = target.url("empty")
        assert target.storage.write(url, iter([])) == digest_of(b"")
        assert target.read(url) == b""
        assert target.storage.stat(url).size == 0

    def test_round_trip_large_file(self, target: Target) -> None:
        data = bytes(range(256)) * (5 * 4096 + 3)  # > 4 MiB, not a multiple of any block
        url = target.url("large.bin")
        assert target.storage.write(url, _chunked(data, 1 << 20)) == digest_of(data)
        assert digest_of(target.read(url)) == digest_of(data)

    def test_names_are_literal(self, target: Target) -> None:
        names = ["with space", "pct%41x", "plus+sign", "ünï.cöde", "semi;colon", "a:b"]
        for name in names:
            target.put(name, name.encode())
        for name in names:
            assert target.read(target.url(name)) == name.encode()
        assert sorted(target.storage.listdir(target.dir_url)) == sorted(names)

    def test_nested_directories_are_created(self, target: Target) -> None:
        url = target.url("x/y/z.dat")
        target.storage.write(url, [b"deep"])
        assert target.read(url) == b"deep"
        assert target.storage.listdir(target.url("x/y")) == ["z.dat"]

    def test_put_file(self, target: Target, tmp_path: Path) -> None:
        local = tmp_path / "local.dat"
        local.write_bytes(DATA)
        url = target.url("uploaded")
        assert target.storage.put_file(str(local), url, expected=digest_of(DATA)) == digest_of(DATA)
        assert target.read(url) == DATA

    # --- atomicity -----------------------------------------------------------------------

    def test_failing_source_leaves_nothing(self, target: Target) -> None:
        target.put("sibling")
        url = target.url("broken.dat")
        with pytest.raises(_Boom):
            target.storage.write(url, _failing_chunks(DATA))
        assert not target.storage.exists(url)
        self._assert_only(target, ["sibling"])

    def test_failed_overwrite_keeps_the_old_file(self, target: Target) -> None:
        url = target.put("kept.dat", b"old content")
        with pytest.raises(_Boom):
            target.storage.write(url, _failing_chunks(DATA), overwrite=True)
        assert target.read(url) == b"old content"
        self._assert_only(target, ["kept.dat"])

    def test_existing_target_without_overwrite(self, target: Target) -> None:
        url = target.put("once.dat", b"first")
        with pytest.raises(FileExistsError):
            target.storage.write(url, [b"second"])
        assert target.read(url) == b"first"
        self._assert_only(target, ["once.dat"])

    def test_overwrite_replaces(self, target: Target) -> None:
        url = target.put("twice.dat", b"first version, longer")
        assert target.storage.write(url, [b"second"], overwrite=True) == digest_of(b"second")
        assert target.read(url) == b"second"
        self._assert_only(target, ["twice.dat"])

    def test_write_in_progress_is_invisible(self, target: Target) -> None:
        target.put("sibling")
        url = target.url("growing.dat")
        seen: dict[str, object] = {}

        def chunks() -> Iterator[bytes]:
            yield DATA[:100]
            seen["exists"] = target.storage.exists(url)
            seen["listing"] = target.storage.listdir(target.dir_url)
            yield DATA[100:]

        target.storage.write(url, chunks())
        assert seen == {"exists": False, "listing": ["sibling"]}
        assert target.read(url) == DATA

    # --- verification --------------------------------------------------------------------

    @pytest.mark.parametrize("wrong", ["bytes", "adler32", "md5"])
    def test_checksum_mismatch_keeps_nothing(self, target: Target, wrong: str) -> None:
        target.put("sibling")
        good = digest_of(DATA)
        expected = {
            "bytes": Digest(good.bytes + 1, good.adler32, good.md5),
            "adler32": Digest(good.bytes, f"{(int(good.adler32, 16) ^ 1):08x}", good.md5),
            "md5": Digest(good.bytes, good.adler32, "0" * 32),
        }[wrong]
        url = target.url("bad.dat")
        with pytest.raises(ChecksumMismatch):
            target.storage.write(url, _chunked(DATA), expected=expected)
        assert not target.storage.exists(url)
        self._assert_only(target, ["sibling"])

    def test_checksum_mismatch_on_overwrite_keeps_the_old_file(self, target: Target) -> None:
        url = target.put("kept.dat", b"old content")
        wrong = Digest(len(DATA), "00000001", None)
        with pytest.raises(ChecksumMismatch):
            target.storage.write(url, _chunked(DATA), expected=wrong, overwrite=True)
        assert target.read(url) == b"old content"
        self._assert_only(target, ["kept.dat"])

    def test_expected_digest_accepted(self, target: Target) -> None:
        url = target.url("good.dat")
        assert target.storage.write(url, _chunked(DATA), expected=digest_of(DATA)) == digest_of(
            DATA
        )
        adler_only = Digest(len(DATA), digest_of(DATA).adler32, None)
        got = target.storage.write(target.url("adler-only.dat"), [DATA], expected=adler_only)
        assert (got.bytes, got.adler32) == (len(DATA), adler_only.adler32)

    # --- byte ranges ---------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("offset", "length"),
        [(0, None), (7, None), (0, 10), (7, 10), (0, 0), (7, 0), (-3, None), (-3, 2), (-1, 10)],
    )
    def test_byte_ranges(self, target: Target, offset: int, length: int | None) -> None:
        url = target.put("ranges.dat")
        start = offset if offset >= 0 else len(DATA) + offset  # negative: from the end
        end = len(DATA) if length is None else min(len(DATA), start + length)
        assert target.read(url, start, length) == DATA[start:end]

    def test_range_past_the_end_is_empty(self, target: Target) -> None:
        url = target.put("short.dat", b"0123456789")
        assert target.read(url, 10) == b""
        assert target.read(url, 25, 5) == b""
        assert target.read(url, 8, 100) == b"89"

    def test_read_streams_in_chunks(self, target: Target) -> None:
        url = target.put("stream.dat")
        chunks = list(target.storage.read(url))
        assert all(isinstance(c, bytes) and c for c in chunks)
        assert b"".join(chunks) == DATA

    # --- stat, exists, delete, listdir ---------------------------------------------------

    def test_stat(self, target: Target) -> None:
        url = target.put("s.dat")
        st = target.storage.stat(url)
        assert st.size == len(DATA)
        assert st.mtime > 0
        full = target.storage.stat(url, checksums=True)
        assert full.size == len(DATA)
        assert full.adler32 == digest_of(DATA).adler32
        assert full.md5 in (None, digest_of(DATA).md5)

    def test_missing_file(self, target: Target) -> None:
        target.put("sibling")
        url = target.url("missing.dat")
        assert not target.storage.exists(url)
        with pytest.raises(FileNotFoundError):
            target.storage.stat(url)
        with pytest.raises(FileNotFoundError):
            target.read(url)
        with pytest.raises(FileNotFoundError):
            target.storage.delete(url)

    def test_delete(self, target: Target) -> None:
        gone = target.put("gone.dat")
        target.put("stays.dat")
        target.storage.delete(gone)
        assert not target.storage.exists(gone)
        assert target.storage.exists(target.url("stays.dat"))
        self._assert_only(target, ["stays.dat"])
        target.storage.write(gone, [b"again"])  # the name can be written again
        assert target.read(gone) == b"again"

    def test_listdir(self, target: Target) -> None:
        for name in ("b.dat", "a.dat", "c"):
            target.put(name)
        assert target.storage.listdir(target.dir_url) == ["a.dat", "b.dat", "c"]
        assert target.storage.listdir(target.dir_url + "/") == ["a.dat", "b.dat", "c"]

    def test_listdir_of_a_missing_directory(self, target: Target) -> None:
        target.put("sibling")
        with pytest.raises(FileNotFoundError):
            target.storage.listdir(target.url("no-such-dir"))

    def test_mkdir(self, target: Target) -> None:
        target.storage.mkdir(target.url("m/n"))
        target.storage.mkdir(target.url("m/n"))  # again: no error
        url = target.url("m/n/f.dat")
        target.storage.write(url, [b"in a made directory"])
        assert target.storage.listdir(target.url("m/n")) == ["f.dat"]

    # --- checksums -----------------------------------------------------------------------

    @pytest.mark.parametrize("algorithm", ["adler32", "md5"])
    def test_checksum(self, target: Target, algorithm: str) -> None:
        url = target.put("sum.dat")
        want = digest_of(DATA)
        assert target.storage.checksum(url, algorithm) == getattr(want, algorithm)

    def test_checksum_of_an_empty_file(self, target: Target) -> None:
        url = target.url("empty.dat")
        target.storage.write(url, iter([]))
        assert target.storage.checksum(url, "adler32") == "00000001"

    def test_checksum_of_a_missing_file(self, target: Target) -> None:
        target.put("sibling")
        with pytest.raises(FileNotFoundError):
            target.storage.checksum(target.url("missing.dat"), "adler32")

    def test_checksum_unknown_algorithm(self, target: Target) -> None:
        url = target.put("sum.dat")
        with pytest.raises(ValueError, match="unknown checksum algorithm"):
            target.storage.checksum(url, "sha1")
