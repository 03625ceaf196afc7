"""The POSIX backend: the conformance suite, file:// URL handling, and the temporary sweeper."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedlake.domain.paths import build_pfn, path_hash, path_identity
from fedlake.storage import get_storage
from fedlake.storage.backends.posix import (
    TMP_MARK,
    PosixStorage,
    is_temporary,
    local_path,
    sweep_temporaries,
)
from fedlake.storage.base import Storage
from fedlake.storage.testing import StorageConformance, Target


class TestPosixConformance(StorageConformance):
    __test__ = True

    @pytest.fixture
    def storage(self) -> Storage:
        return PosixStorage()

    @pytest.fixture
    def base_url(self, tmp_path: Path) -> str:
        return f"file://localhost{tmp_path}"

    def raw_listdir(self, storage: Storage, dir_url: str) -> list[str]:
        return os.listdir(local_path(dir_url))

    def test_temporary_exists_while_writing(self, tmp_path: Path) -> None:
        """The raw listing (unlike listdir) does show the temporary of a write in progress."""
        storage = PosixStorage()
        url = f"file://localhost{tmp_path}/w/obs.ms"
        during: list[str] = []

        def chunks() -> Iterator[bytes]:
            yield b"abc"
            during.extend(os.listdir(tmp_path / "w"))
            yield b"def"

        storage.write(url, chunks())
        assert len(during) == 1
        assert during[0].startswith(".obs.ms" + TMP_MARK)
        assert is_temporary(during[0])
        assert os.listdir(tmp_path / "w") == ["obs.ms"]


class TestPosixConformanceWithAttributes(StorageConformance):
    """A backend may give ``storage`` and ``base_url`` as plain attributes."""

    __test__ = True
    storage = PosixStorage()
    base_url = "file://localhost" + str(Path(os.environ.get("TMPDIR", "/tmp")).resolve())

    def raw_listdir(self, storage: Storage, dir_url: str) -> list[str]:
        return os.listdir(local_path(dir_url))

    @pytest.fixture(autouse=True)
    def _clean_up(self, target: Target) -> Iterator[None]:
        yield
        shutil.rmtree(local_path(target.dir_url), ignore_errors=True)


def test_registry_gives_posix_for_file() -> None:
    assert isinstance(get_storage("file"), PosixStorage)


# --- file:// URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("file://localhost/data/rse/a", "/data/rse/a"),
        ("file:///data/rse/a", "/data/rse/a"),
        ("file://worker-7/data/a b", "/data/a b"),
        ("/data/plain/path", "/data/plain/path"),
        # names are literal, as build_pfn writes them and the rucio client reads them
        ("file://localhost/data/a%41", "/data/a%41"),
        ("file://localhost/data/a%2Fb", "/data/a%2Fb"),
    ],
)
def test_local_path(url: str, path: str) -> None:
    assert local_path(url) == Path(path)


@pytest.mark.parametrize("url", ["https://h:443/data/a", "s3://b/k", "data/relative"])
def test_local_path_refuses_other_schemes(url: str) -> None:
    with pytest.raises(ValueError, match="is not a file:// URL"):
        local_path(url)


def test_percent_names_do_not_collide(tmp_path: Path) -> None:
    """Names ``a%41`` and ``aA`` are two files at their literal paths (once they were one)."""
    storage = PosixStorage()
    for name, content in (("a%41", b"one"), ("aA", b"two")):
        pfn = build_pfn("file", "localhost", 0, str(tmp_path), path_identity("skao", name))
        storage.write(pfn, [content])
    assert (tmp_path / "skao" / "a%41").read_bytes() == b"one"
    assert (tmp_path / "skao" / "aA").read_bytes() == b"two"
    hashed = build_pfn("file", "localhost", 0, str(tmp_path), path_hash("skao", "x%20y"))
    storage.write(hashed, [b"three"])
    assert (tmp_path / path_hash("skao", "x%20y")).read_bytes() == b"three"


def test_exists_is_false_for_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    storage = PosixStorage()
    assert not storage.exists(f"file://localhost{tmp_path}/d")
    with pytest.raises(IsADirectoryError):
        storage.stat(f"file://localhost{tmp_path}/d")


def test_listdir_hides_temporaries(tmp_path: Path) -> None:
    for name in ("f", ".f.fedlake-tmp-0123456789ab", "g.rucio.upload", ".hidden"):
        (tmp_path / name).write_bytes(b"x")
    assert PosixStorage().listdir(f"file://localhost{tmp_path}") == [".hidden", "f"]


@pytest.mark.parametrize(
    ("name", "temporary"),
    [
        (".obs.ms.fedlake-tmp-0123456789ab", True),
        (".a b.fedlake-tmp-abcdefabcdef", True),
        ("f.rucio.upload", True),
        ("obs.ms", False),
        (".hidden", False),
        # a user's file whose name merely contains the mark is data, not a temporary
        ("run.fedlake-tmp-notes", False),
        ("x.fedlake-tmp-0123456789ab", False),
        (".x.fedlake-tmp-0123456789ab.bak", False),
        (".x.fedlake-tmp-XYZ", False),
    ],
)
def test_is_temporary(name: str, temporary: bool) -> None:
    assert is_temporary(name) is temporary


# --- sweep_temporaries ----------------------------------------------------------------


def _file(path: Path, age: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_sweep_removes_only_old_temporaries(tmp_path: Path) -> None:
    old_ours = _file(tmp_path / "skao/ab/cd/.f.fedlake-tmp-0123456789ab", 7200)
    old_rucio = _file(tmp_path / "user/jdoe/12/34/f.rucio.upload", 7200)
    fresh = _file(tmp_path / "skao/ab/cd/.g.fedlake-tmp-abcdefabcdef", 10)
    data = _file(tmp_path / "skao/ab/cd/f", 7200)
    lookalike = _file(tmp_path / "skao/ab/cd/run.fedlake-tmp-notes", 7200)

    assert sweep_temporaries(tmp_path, older_than=3600) == 2
    assert not old_ours.exists()
    assert not old_rucio.exists()
    assert fresh.exists()
    assert data.exists()
    assert lookalike.exists()
    assert sweep_temporaries(tmp_path, older_than=3600) == 0
    assert sweep_temporaries(tmp_path, older_than=0) == 1
    assert not fresh.exists()


def test_sweep_leaves_temporaries_of_running_writes(tmp_path: Path) -> None:
    storage = PosixStorage()
    url = f"file://localhost{tmp_path}/skao/f"
    swept: list[int] = []

    def chunks() -> Iterator[bytes]:
        yield b"abc"
        swept.append(sweep_temporaries(tmp_path))  # default age: one hour
        yield b"def"

    storage.write(url, chunks())
    assert swept == [0]
    assert (tmp_path / "skao/f").read_bytes() == b"abcdef"


def test_sweep_of_a_missing_root(tmp_path: Path) -> None:
    assert sweep_temporaries(tmp_path / "nope") == 0


class TestPosixConformanceWithFsync(StorageConformance):
    """The same behaviour with ``fsync`` on (files and directories flushed to disk)."""

    __test__ = True

    @pytest.fixture
    def storage(self) -> Storage:
        return PosixStorage(fsync=True)

    @pytest.fixture
    def base_url(self, tmp_path: Path) -> str:
        return f"file://localhost{tmp_path}"


def test_fsync_option_is_checked() -> None:
    with pytest.raises(ValueError, match="fsync must be true or false"):
        PosixStorage(fsync="yes")  # type: ignore[arg-type]
    assert get_storage("file", fsync=True).fsync is True  # type: ignore[attr-defined]


def test_copy_local_copies_and_verifies(tmp_path: Path) -> None:
    from fedlake.domain.checksums import Digest
    from fedlake.domain.errors import ChecksumMismatch
    from fedlake.storage.backends.posix import SourceReadError

    data = os.urandom(300_000)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    storage = PosixStorage()
    dest = f"file://localhost{tmp_path}/out/dir/copy.bin"
    got = storage.copy_local(f"file://localhost{src}", dest)
    assert (tmp_path / "out/dir/copy.bin").read_bytes() == data
    import hashlib
    import zlib

    assert got == Digest(
        len(data), f"{zlib.adler32(data):08x}", hashlib.md5(data, usedforsecurity=False).hexdigest()
    )
    with pytest.raises(FileExistsError):
        storage.copy_local(f"file://localhost{src}", dest)
    wrong = Digest(len(data), "00000001", None)
    with pytest.raises(ChecksumMismatch):
        storage.copy_local(f"file://localhost{src}", dest, expected=wrong, overwrite=True)
    assert (tmp_path / "out/dir/copy.bin").read_bytes() == data  # the old copy stays
    assert sorted(os.listdir(tmp_path / "out/dir")) == ["copy.bin"]  # no temporary
    with pytest.raises(SourceReadError) as caught:
        storage.copy_local(f"file://localhost{tmp_path}/missing", f"{dest}.2")
    assert isinstance(caught.value.cause, FileNotFoundError)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert storage.copy_local(f"file://localhost{empty}", f"{dest}.empty").adler32 == "00000001"
