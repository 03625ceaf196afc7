"""The copier against real faults on local RSEs: a full destination disk (a tiny tmpfs), a
destination that refuses writes, sources that changed, and third-party copies whose result
does not verify (a fake TPC plugin: what is tested is the copier's handling, not a protocol).

Each test queues a request, claims it as a worker would (``Scheduler.claim``) and drives
``Copier.run`` directly, so the outcome is checked before anything is committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import rses as rse_core
from fedlake.catalog import transfers as core
from fedlake.catalog.models import Replica
from fedlake.catalog.replicas import replica_path
from fedlake.catalog.transfers import Claimed, Outcome
from fedlake.domain.checksums import Digest
from fedlake.services import transfers as svc
from fedlake.storage import registry
from fedlake.storage.backends.posix import PosixStorage
from fedlake.storage.base import StatResult, Storage
from fedlake.transfers.copier import Copier
from fedlake.transfers.endpoints import Endpoints
from fedlake.transfers.scheduler import Scheduler
from tests.integration.transfers.conftest import SCOPE

_ADMIN = Caller("root", admin=True)  # sees embargoed data too

OWNER = "copier-faults"
IN_CI = os.environ.get("CI") == "true"


def _claim(lake: Lake, root: Caller, name: str, rse: str = "LOCAL-SAFE", **kw: Any) -> Claimed:
    [rid] = svc.submit(lake, root, {"dids": [{"scope": SCOPE, "name": name}], "rse": rse, **kw})
    claimed = Scheduler(lake.db, Endpoints(lake.db, ttl=0), OWNER).claim(1)
    assert [c.id for c in claimed] == [rid]
    return claimed[0]


def _run(lake: Lake, c: Claimed) -> Outcome:
    return Copier(Endpoints(lake.db, ttl=0)).run(c)


def _rse_dir(lake: Lake, directory: str) -> Path:
    return Path(lake.settings.data_dir).resolve() / "rses" / directory


def _files_under(root: Path) -> list[str]:
    """Every file below ``root``, temporaries included (they must not linger either)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def _pfn(lake: Lake, rse: str, name: str) -> Path:
    with lake.db.read() as s:
        info = rse_core.rse_info(s, rse_core.get_rse(s, rse))
        return Path(info.protocols[0].prefix) / replica_path(info, SCOPE, name, None)


def _replica_state(lake: Lake, rse: str, name: str) -> str | None:
    with lake.db.read() as s:
        rse_id = rse_core.get_rse(s, rse).id
        row = s.get(Replica, (rse_id, SCOPE, name))
        return None if row is None else row.state


def _mount(args: list[str], target: Path) -> None:
    """Mount or skip (fail in CI): needs root with CAP_SYS_ADMIN."""
    r = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if r.returncode != 0:
        why = f"cannot mount a tmpfs on {target} ({r.stderr.strip()}): needs root/CAP_SYS_ADMIN"
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)


def _umount(target: Path) -> None:
    if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.fixture
def tiny_safe(lake: Lake) -> Iterator[Path]:
    """LOCAL-SAFE's directory on a 64 KiB tmpfs."""
    target = _rse_dir(lake, "safe")
    _mount(["-t", "tmpfs", "-o", "size=64k", "tmpfs"], target)
    try:
        yield target
    finally:
        _umount(target)


@pytest.fixture
def readonly_safe(lake: Lake) -> Iterator[Path]:
    """LOCAL-SAFE's directory on a read-only tmpfs."""
    target = _rse_dir(lake, "safe")
    _mount(["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs"], target)
    try:
        yield target
    finally:
        _umount(target)


# --- the destination ---------------------------------------------------------------------


def test_destination_disk_full_fails_and_leaves_nothing(
    lake: Lake, root: Caller, put: Callable[..., Any], tiny_safe: Path
) -> None:
    name, _ = put("big", os.urandom(256 * 1024))
    c = _claim(lake, root, name)
    out = _run(lake, c)
    assert (out.kind, out.recoverable) == ("failed", False), out
    assert out.error is not None and out.error.startswith("destination: no space left: ")
    assert "No space left on device" in out.error
    assert _files_under(tiny_safe) == []
    # the space came back: a small file fits on the same filesystem afterwards
    small, data = put("small", b"x" * 1024)
    out = _run(lake, _claim(lake, root, small))
    assert out.kind == "done", out
    assert _pfn(lake, "LOCAL-SAFE", small).read_bytes() == data
    assert _files_under(tiny_safe) == [str(_pfn(lake, "LOCAL-SAFE", small).relative_to(tiny_safe))]


def test_destination_disk_full_is_committed_as_failed(
    lake: Lake, root: Caller, put: Callable[..., Any], tiny_safe: Path
) -> None:
    name, _ = put("big-commit", os.urandom(256 * 1024))
    c = _claim(lake, root, name)
    out = _run(lake, c)
    with lake.db.write() as s:
        assert core.complete(s, OWNER, [out]) == [c.id]
    req = svc.get_request(lake, _ADMIN, c.id)
    assert req["state"] == "FAILED"
    assert [a["state"] for a in req["attempts"]] == ["FAILED"]
    assert req["attempts"][0]["recoverable"] is False
    assert _replica_state(lake, "LOCAL-SAFE", name) is None


def test_destination_on_a_read_only_filesystem_fails(
    lake: Lake, root: Caller, put: Callable[..., Any], readonly_safe: Path
) -> None:
    name, _ = put("ro")
    out = _run(lake, _claim(lake, root, name))
    assert (out.kind, out.recoverable) == ("failed", False), out
    assert out.error is not None and "Read-only file system" in out.error
    assert out.error.startswith("destination: OSError: ")


def _refuse_writes(directory: Path) -> Callable[[], None]:
    """Make ``directory`` refuse new entries; returns the undo.

    Not root: chmod 0o500 (EACCES). Root ignores permission bits, so there the directory is
    made immutable (``chattr +i``: EPERM, which Python also raises as PermissionError)."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        return lambda: directory.chmod(0o755)
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root (permission bits ignored) and no chattr to make it immutable")
    r = subprocess.run([chattr, "+i", str(directory)], capture_output=True, text=True)
    if r.returncode != 0:
        why = f"chattr +i {directory} failed ({r.stderr.strip()}): the filesystem lacks it"
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)

    def undo() -> None:
        subprocess.run([chattr, "-i", str(directory)], check=True)

    return undo


def test_destination_directory_not_writable_fails(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    name, _ = put("denied")
    target = _pfn(lake, "LOCAL-SAFE", name)
    target.parent.mkdir(parents=True)
    undo = _refuse_writes(target.parent)
    try:
        assert not os.access(target.parent, os.W_OK) or os.geteuid() == 0
        out = _run(lake, _claim(lake, root, name))
        assert (out.kind, out.recoverable) == ("failed", False), out
        assert out.error is not None and out.error.startswith("destination: PermissionError: ")
        assert str(target.parent) in out.error
        assert list(target.parent.iterdir()) == []
    finally:
        undo()


def test_destination_root_not_writable_fails(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    """The hash directories cannot be created either."""
    name, _ = put("denied-root")
    safe = _rse_dir(lake, "safe")
    undo = _refuse_writes(safe)
    try:
        out = _run(lake, _claim(lake, root, name))
        assert (out.kind, out.recoverable) == ("failed", False), out
        assert out.error is not None and out.error.startswith("destination: PermissionError: ")
        assert list(safe.iterdir()) == []
    finally:
        undo()


# --- the source --------------------------------------------------------------------------


@pytest.mark.parametrize("change", ["grew", "shrank"])
def test_a_source_that_changed_size_is_excluded_and_nothing_is_kept(
    lake: Lake, root: Caller, put: Callable[..., Any], change: str
) -> None:
    name, data = put(f"resized-{change}")
    src = _pfn(lake, "LOCAL-DISK", name)
    src.write_bytes(data + b"appended later" if change == "grew" else data[:-7])
    c = _claim(lake, root, name)
    out = _run(lake, c)
    assert (out.kind, out.recoverable, out.mark_source_bad) == ("exclude_source", False, False)
    got = len(data) + 14 if change == "grew" else len(data) - 7
    assert out.error is not None and out.error.startswith("checksum mismatch: ")
    assert f"received {got} bytes, expected {len(data)}" in out.error
    assert _files_under(_rse_dir(lake, "safe")) == []
    # committed: the only source is excluded, so the request has no source left
    with lake.db.write() as s:
        core.complete(s, OWNER, [out])
    assert svc.get_request(lake, _ADMIN, c.id)["state"] == "QUEUED"
    assert Scheduler(lake.db, Endpoints(lake.db, ttl=0), OWNER).claim(1) == []
    assert svc.get_request(lake, _ADMIN, c.id)["state"] == "NO_SOURCES"


def test_verify_source_refuses_a_corrupt_source_before_copying(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    name, data = put("corrupt-verified")
    src = _pfn(lake, "LOCAL-DISK", name)
    src.write_bytes(b"X" + data[1:])  # same size, other bytes
    bad = f"{zlib.adler32(b'X' + data[1:]):08x}"
    out = _run(lake, _claim(lake, root, name, verify_source=True))
    assert (out.kind, out.recoverable) == ("exclude_source", False)
    assert out.error == (
        f"checksum mismatch: source adler32 is {bad}, the catalogue says {zlib.adler32(data):08x}"
    )
    assert _files_under(_rse_dir(lake, "safe")) == []


def test_without_verify_source_the_write_catches_a_corrupt_source(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    name, data = put("corrupt-streamed")
    _pfn(lake, "LOCAL-DISK", name).write_bytes(b"X" + data[1:])
    out = _run(lake, _claim(lake, root, name))
    assert (out.kind, out.recoverable) == ("exclude_source", False)
    assert out.error is not None and "adler32 is" in out.error and "expected" in out.error
    assert _files_under(_rse_dir(lake, "safe")) == []


def test_a_missing_source_is_marked_bad(lake: Lake, root: Caller, put: Callable[..., Any]) -> None:
    name, _ = put("vanished")
    _pfn(lake, "LOCAL-DISK", name).unlink()
    out = _run(lake, _claim(lake, root, name))
    assert (out.kind, out.mark_source_bad) == ("exclude_source", True)
    with lake.db.write() as s:
        core.complete(s, OWNER, [out])
    assert _replica_state(lake, "LOCAL-DISK", name) == "BAD"


def test_a_missing_source_is_marked_bad_on_the_last_attempt(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    name, _ = put("vanished-last")
    _pfn(lake, "LOCAL-DISK", name).unlink()
    c = _claim(lake, root, name, max_attempts=1)
    out = _run(lake, c)
    assert (out.kind, out.mark_source_bad) == ("failed", True)
    with lake.db.write() as s:
        core.complete(s, OWNER, [out])
    assert svc.get_request(lake, _ADMIN, c.id)["state"] == "FAILED"
    assert _replica_state(lake, "LOCAL-DISK", name) == "BAD"


# --- third-party copy (a fake plugin: the copier's verification is under test) ------------

TPC_SCHEME = "faketpc"


class FakeTPCStorage(Storage):
    """``faketpc://host:port/abs/path`` on local files, with a third-party copy whose
    result is set by ``landing``: ``ok`` (the source's bytes), ``corrupt`` (same size,
    other bytes) or ``short`` (one byte missing)."""

    scheme = TPC_SCHEME
    tpc_modes = frozenset({"pull"})
    landing = "ok"
    deleted: list[str] = []

    def __init__(self) -> None:
        self._posix = PosixStorage()

    @staticmethod
    def _file(url: str) -> str:
        return "file://localhost" + urlsplit(url).path

    def exists(self, url: str) -> bool:
        return self._posix.exists(self._file(url))

    def stat(self, url: str, *, checksums: bool = False) -> StatResult:
        return self._posix.stat(self._file(url), checksums=checksums)

    def read(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        return self._posix.read(self._file(url), offset, length)

    def write(
        self,
        url: str,
        chunks: Iterable[bytes],
        *,
        expected: Digest | None = None,
        overwrite: bool = False,
    ) -> Digest:
        return self._posix.write(self._file(url), chunks, expected=expected, overwrite=overwrite)

    def delete(self, url: str) -> None:
        type(self).deleted.append(url)
        self._posix.delete(self._file(url))

    def listdir(self, url: str) -> list[str]:
        return self._posix.listdir(self._file(url))

    def mkdir(self, url: str) -> None:
        self._posix.mkdir(self._file(url))

    def third_party_copy(
        self,
        source_url: str,
        dest_url: str,
        *,
        mode: str = "pull",
        source_token: str | None = None,
        dest_token: str | None = None,
        overwrite: bool = False,
    ) -> None:
        data = b"".join(self.read(source_url))
        if self.landing == "corrupt":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        elif self.landing == "short":
            data = data[:-1]
        self.write(dest_url, [data], overwrite=overwrite)


@pytest.fixture
def tpc_rses(lake: Lake, tmp_path: Path) -> Iterator[dict[str, Path]]:
    """Two RSEs (TPC-A, TPC-B) that speak only ``faketpc``, third-party copy on."""
    registry.register(TPC_SCHEME, f"{__name__}.FakeTPCStorage", clobber=True)
    FakeTPCStorage.landing = "ok"
    FakeTPCStorage.deleted = []
    dirs = {}
    with lake.db.write() as s:
        for rse in ("TPC-A", "TPC-B"):
            d = tmp_path / rse.lower()
            d.mkdir()
            dirs[rse] = d
            row = rse_core.add_rse(s, rse, deterministic=True, lfn2pfn_algorithm="hash")
            rse_core.add_protocol(
                s,
                row,
                {
                    "scheme": TPC_SCHEME,
                    "hostname": "localhost",
                    "port": 1094,
                    "prefix": str(d),
                    "impl": "tests.fake",
                    "domains": {
                        "wan": {
                            "read": 1,
                            "write": 1,
                            "delete": 1,
                            "third_party_copy_read": 1,
                            "third_party_copy_write": 1,
                        }
                    },
                },
            )
    try:
        yield dirs
    finally:
        # a test-only scheme: leave no trace for later tests (known_schemes, the cache)
        registry._known.pop(TPC_SCHEME, None)
        with registry._lock:
            for key in [k for k in registry._cache if k[0] == TPC_SCHEME]:
                del registry._cache[key]


def test_a_verified_tpc_is_done(
    lake: Lake, root: Caller, put: Callable[..., Any], tpc_rses: dict[str, Path]
) -> None:
    name, data = put("tpc-ok", rse="TPC-A")
    out = _run(lake, _claim(lake, root, name, rse="TPC-B"))
    assert (out.kind, out.tpc) == ("done", True), out
    assert _pfn(lake, "TPC-B", name).read_bytes() == data
    assert FakeTPCStorage.deleted == []


@pytest.mark.parametrize(
    ("landing", "says"), [("corrupt", "destination adler32 is"), ("short", "destination has")]
)
def test_a_tpc_that_does_not_verify_deletes_the_destination(
    lake: Lake,
    root: Caller,
    put: Callable[..., Any],
    tpc_rses: dict[str, Path],
    landing: str,
    says: str,
) -> None:
    name, _ = put(f"tpc-{landing}", rse="TPC-A")
    FakeTPCStorage.landing = landing
    c = _claim(lake, root, name, rse="TPC-B")
    out = _run(lake, c)
    assert (out.kind, out.recoverable, out.tpc) == ("exclude_source", False, False), out
    assert out.error is not None and out.error.startswith(f"checksum mismatch: {says}")
    dest = _pfn(lake, "TPC-B", name)
    assert [urlsplit(u).path for u in FakeTPCStorage.deleted] == [str(dest)]
    assert not dest.exists()
    assert _files_under(tpc_rses["TPC-B"]) == []
    with lake.db.write() as s:
        core.complete(s, OWNER, [out])
    assert _replica_state(lake, "TPC-B", name) is None


def test_a_tpc_of_an_md5_only_file_is_verified(
    lake: Lake, root: Caller, put: Callable[..., Any], tpc_rses: dict[str, Path]
) -> None:
    name, _ = put("tpc-md5", rse="TPC-A")
    FakeTPCStorage.landing = "corrupt"
    c = _claim(lake, root, name, rse="TPC-B")
    c.adler32 = None  # as queued for a file registered with an md5 only
    assert c.md5 is not None
    out = _run(lake, c)
    assert out.kind != "done"
    assert not _pfn(lake, "TPC-B", name).exists()


def test_claimed_rows_point_at_the_source_replica(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    """Sanity of the set-up the tests above rely on: the claim picked LOCAL-DISK."""
    name, _ = put("setup")
    c = _claim(lake, root, name)
    with lake.db.read() as s:
        disk = rse_core.get_rse(s, "LOCAL-DISK").id
        assert s.scalar(select(Replica.state).where(Replica.rse_id == disk)) == "AVAILABLE"
    assert (c.source_rse_id, c.attempt, c.state) == (disk, 1, "QUEUED")
