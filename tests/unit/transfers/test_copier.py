"""The copier's own logic, without a catalogue: which copy path it takes, what it verifies,
and how failures become outcomes (retry with backoff, another source, give up, wait).

The RSE view is a small stand-in for ``Endpoints`` and the storage an in-memory one; the
real POSIX path, full disks and a faked third-party copy are covered by
``tests/integration/transfers/test_copier_faults.py``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any, cast

import pytest

from fedlake.catalog.transfers import Claimed
from fedlake.domain.checksums import Digest
from fedlake.domain.errors import ChecksumMismatch, ProtocolNotSupported
from fedlake.domain.timefmt import utcnow
from fedlake.storage.base import Stageable, StatResult, Storage, TransientStorageError
from fedlake.storage.checksums import checksummer
from fedlake.transfers.copier import Copier, _tpc_pair
from fedlake.transfers.endpoints import Endpoint, Endpoints

DATA = b"0123456789abcdef" * 64
ADLER = f"{zlib.adler32(DATA):08x}"
SRC_URL = "mem://host:1094/src/sc/f.dat"
DST_URL = "mem://host:1094/dst/sc/f.dat"


class MemStorage(Storage):
    """Files in a dict; ``fail[op]`` makes an operation raise. Writes verify and are atomic."""

    scheme = "mem"

    def __init__(self, files: dict[str, bytes], tpc: bool = False) -> None:
        self.files = files  # shared by every storage of a test: URLs differ by prefix
        self.fail: dict[str, BaseException] = {}
        self.calls: list[tuple[str, str]] = []
        self.tpc_result: bytes | None = None  # what a third-party copy lands (None: the source)
        if tpc:
            self.tpc_modes = frozenset({"pull"})

    def _maybe_fail(self, op: str, url: str) -> None:
        self.calls.append((op, url))
        if op in self.fail:
            raise self.fail[op]

    def exists(self, url: str) -> bool:
        return url in self.files

    def stat(self, url: str, *, checksums: bool = False) -> StatResult:
        self._maybe_fail("stat", url)
        if url not in self.files:
            raise FileNotFoundError(url)
        return StatResult(len(self.files[url]), 0.0)

    def read(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        self._maybe_fail("read", url)
        if url not in self.files:
            raise FileNotFoundError(url)
        data = self.files[url]
        for i in range(0, len(data), 100):
            if i >= 500 and "read-midway" in self.fail:
                raise self.fail["read-midway"]
            yield data[i : i + 100]

    def write(
        self,
        url: str,
        chunks: Iterable[bytes],
        *,
        expected: Digest | None = None,
        overwrite: bool = False,
    ) -> Digest:
        self._maybe_fail("write", url)
        summer = checksummer()
        body = b""
        for c in chunks:
            summer.update(c)
            body += c
        got = summer.digest()
        if expected is not None and (
            expected.bytes != got.bytes
            or (expected.adler32 and expected.adler32 != got.adler32)
            or (expected.md5 and expected.md5 != got.md5)
        ):
            raise ChecksumMismatch(f"{url}: got {got}, expected {expected}")
        self.files[url] = body
        return got

    def delete(self, url: str) -> None:
        self._maybe_fail("delete", url)
        del self.files[url]

    def listdir(self, url: str) -> list[str]:
        return []

    def mkdir(self, url: str) -> None:
        return None

    def checksum(self, url: str, algorithm: str) -> str:
        self._maybe_fail("checksum", url)
        return super().checksum(url, algorithm)

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
        self._maybe_fail("tpc", dest_url)
        src = self.files[source_url]
        self.files[dest_url] = src if self.tpc_result is None else self.tpc_result


class TapeMem(MemStorage, Stageable):
    def __init__(self, files: dict[str, bytes], online_after: int) -> None:
        super().__init__(files)
        self.polls = 0
        self.online_after = online_after
        self.released: list[str] = []

    def stage(self, url: str, *, pin_seconds: float = 3600.0) -> str:
        self.calls.append(("stage", url))
        return "req-1"

    def is_online(self, url: str) -> bool:
        self.polls += 1
        return self.polls > self.online_after

    def release(self, url: str) -> None:
        self.released.append(url)
        if "release" in self.fail:
            raise self.fail["release"]


class Info:
    def __init__(self, deterministic: bool) -> None:
        self.deterministic = deterministic


class FakeEndpoints:
    """What Copier asks of Endpoints: paths, the deterministic flag and protocols."""

    def __init__(self) -> None:
        self.eps: dict[tuple[str, str], list[Endpoint]] = {}
        self.deterministic = {"SRC": True, "DST": True}
        self.refuse: dict[tuple[str, str], BaseException] = {}

    def add(
        self, rse: str, storage: Storage, *, tpc: bool = False, scheme: str = "mem"
    ) -> Endpoint:
        ep = Endpoint(scheme, "host", 1094, f"/{rse.lower()}", storage, *(2 * [1 if tpc else None]))
        for op in ("read", "write"):
            self.eps.setdefault((rse, op), []).append(ep)
        return ep

    def endpoints(self, rse_id: str, operation: str) -> list[Endpoint]:
        if (rse_id, operation) in self.refuse:
            raise self.refuse[(rse_id, operation)]
        return self.eps[(rse_id, operation)]

    def info(self, rse_id: str) -> Info:
        return Info(self.deterministic[rse_id])

    def path(self, rse_id: str, scope: str, name: str, stored: str | None) -> str:
        return stored if stored is not None else f"{scope}/{name}"


def _claimed(**kw: Any) -> Claimed:
    args: dict[str, Any] = {
        "id": 7,
        "scope": "sc",
        "name": "f.dat",
        "dest_rse_id": "DST",
        "bytes": len(DATA),
        "adler32": ADLER,
        "md5": None,
        "attempt": 1,
        "max_attempts": 5,
        "activity": "default",
        "priority": 3,
        "verify_source": False,
        "state": "QUEUED",
        "source_rse_id": "SRC",
    }
    args.update(kw)
    return Claimed(**args)


@pytest.fixture
def lake() -> tuple[FakeEndpoints, MemStorage, MemStorage]:
    ep = FakeEndpoints()
    files: dict[str, bytes] = {SRC_URL: DATA}
    src, dst = MemStorage(files), MemStorage(files)
    ep.add("SRC", src)
    ep.add("DST", dst)
    return ep, src, dst


Fixture = tuple[FakeEndpoints, MemStorage, MemStorage]


def _copier(ep: FakeEndpoints, **kw: Any) -> Copier:
    return Copier(cast(Endpoints, ep), **kw)


def test_a_streamed_copy_is_done_and_verified(lake: Fixture) -> None:
    ep, _src, dst = lake
    out = _copier(ep).run(_claimed())
    assert (out.kind, out.error, out.tpc, out.bytes) == ("done", None, False, len(DATA))
    assert dst.files[DST_URL] == DATA
    assert (out.request_id, out.attempt, out.source_rse_id, out.dest_rse_id) == (7, 1, "SRC", "DST")
    assert out.dest_path is None  # deterministic: the path follows from the name
    assert out.started_at <= out.finished_at and out.seconds >= 0


def test_a_non_deterministic_destination_records_the_path(lake: Fixture) -> None:
    ep, _src, _dst = lake
    ep.deterministic["DST"] = False
    out = _copier(ep).run(_claimed())
    assert (out.kind, out.dest_path) == ("done", "sc/f.dat")


def test_a_wrong_catalogue_checksum_keeps_nothing(lake: Fixture) -> None:
    ep, _src, dst = lake
    out = _copier(ep).run(_claimed(adler32="00000001"))
    assert (out.kind, out.recoverable) == ("exclude_source", False)
    assert out.error is not None and out.error.startswith("checksum mismatch")
    assert DST_URL not in dst.files


def test_a_transient_error_is_retried_later_with_backoff(lake: Fixture) -> None:
    ep, _src, dst = lake
    dst.fail["write"] = TransientStorageError("503 busy")
    before = utcnow()
    out = _copier(ep).run(_claimed(attempt=3))
    assert (out.kind, out.recoverable) == ("retry", True)
    assert out.error == "destination: TransientStorageError: 503 busy"
    assert out.not_before is not None
    assert before + timedelta(seconds=8) <= out.not_before <= utcnow() + timedelta(seconds=8)


def test_the_last_attempt_gives_up_instead_of_retrying(lake: Fixture) -> None:
    ep, _src, dst = lake
    dst.fail["write"] = TimeoutError("slow server")
    out = _copier(ep).run(_claimed(attempt=5, max_attempts=5))
    assert (out.kind, out.recoverable, out.not_before) == ("failed", True, None)
    assert out.error == "destination: TimeoutError: slow server (gave up after 5 attempts)"


def test_a_missing_source_is_excluded_and_marked_bad(lake: Fixture) -> None:
    ep, src, dst = lake
    del src.files[SRC_URL]
    out = _copier(ep).run(_claimed())
    assert (out.kind, out.recoverable, out.mark_source_bad) == ("exclude_source", False, True)
    assert out.error is not None and out.error.startswith("source: FileNotFoundError")
    assert out.not_before is None
    assert DST_URL not in dst.files


def test_a_missing_source_on_the_last_attempt_fails_but_still_says_bad(lake: Fixture) -> None:
    ep, src, _dst = lake
    del src.files[SRC_URL]
    out = _copier(ep).run(_claimed(attempt=2, max_attempts=2))
    assert (out.kind, out.mark_source_bad) == ("failed", True)


def test_a_source_breaking_mid_stream_is_a_source_error(lake: Fixture) -> None:
    ep, src, dst = lake
    src.fail["read-midway"] = ConnectionResetError("peer reset")
    out = _copier(ep).run(_claimed())
    assert (out.kind, out.recoverable) == ("retry", True)
    assert out.error == "source: ConnectionResetError: peer reset"
    assert DST_URL not in dst.files


def test_a_destination_permission_error_fails_the_request(lake: Fixture) -> None:
    ep, _src, dst = lake
    dst.fail["write"] = PermissionError("403 Forbidden")
    out = _copier(ep).run(_claimed())
    assert (out.kind, out.recoverable) == ("failed", False)


def test_a_source_rse_without_a_usable_protocol_is_excluded(lake: Fixture) -> None:
    ep, _src, _dst = lake
    ep.refuse[("SRC", "read")] = ProtocolNotSupported("no plugin for gsiftp")
    out = _copier(ep).run(_claimed())
    assert out.kind == "exclude_source"
    assert out.error == "source: ProtocolNotSupported: no plugin for gsiftp"


def test_a_destination_rse_without_a_usable_protocol_fails(lake: Fixture) -> None:
    ep, _src, _dst = lake
    ep.refuse[("DST", "write")] = ProtocolNotSupported("no plugin for gsiftp")
    out = _copier(ep).run(_claimed())
    assert (out.kind, out.recoverable) == ("failed", False)


def test_verify_source_refuses_a_corrupt_source_before_writing(lake: Fixture) -> None:
    ep, src, dst = lake
    src.files[SRC_URL] = b"X" + DATA[1:]
    out = _copier(ep).run(_claimed(verify_source=True))
    assert (out.kind, out.recoverable, out.mark_source_bad) == ("exclude_source", False, False)
    assert out.error is not None and "source adler32 is" in out.error
    assert ("write", DST_URL) not in dst.calls  # the copy never started
    assert DST_URL not in dst.files


def test_verify_source_that_cannot_read_the_checksum_is_a_source_error(lake: Fixture) -> None:
    ep, src, _dst = lake
    src.fail["checksum"] = TransientStorageError("checksum query failed")
    out = _copier(ep).run(_claimed(verify_source=True))
    assert out.kind == "retry"
    assert out.error is not None and out.error.startswith("source: ")


def test_without_verify_source_the_source_checksum_is_not_asked(lake: Fixture) -> None:
    ep, src, _dst = lake
    assert _copier(ep).run(_claimed()).kind == "done"
    assert not [c for c in src.calls if c[0] == "checksum"]


def test_verify_source_checks_an_md5_only_file(lake: Fixture) -> None:
    import hashlib

    ep, src, dst = lake
    md5 = hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    src.files[SRC_URL] = b"X" + DATA[1:]
    _copier(ep).run(_claimed(verify_source=True, adler32=None, md5=md5))
    assert ("write", DST_URL) not in dst.calls


# --- tape sources ----------------------------------------------------------------------


def _with_tape(lake: Fixture, online_after: int) -> TapeMem:
    ep, src, _dst = lake
    tape = TapeMem(src.files, online_after)
    ep.eps[("SRC", "read")] = [Endpoint("mem", "host", 1094, "/src", tape, None, None)]
    return tape


def test_an_offline_tape_source_is_staged_and_waits(lake: Fixture) -> None:
    ep, _src, dst = lake
    tape = _with_tape(lake, online_after=5)
    before = utcnow()
    out = _copier(ep, stage_poll=3.0).run(_claimed())
    assert (out.kind, out.error) == ("waiting", "staging from tape")
    assert out.not_before is not None and out.not_before >= before + timedelta(seconds=3)
    assert ("stage", SRC_URL) in tape.calls
    assert DST_URL not in dst.files


def test_a_staged_source_is_copied_then_released(lake: Fixture) -> None:
    ep, _src, dst = lake
    tape = _with_tape(lake, online_after=1)  # online right after the stage request
    out = _copier(ep).run(_claimed())
    assert out.kind == "done"
    assert dst.files[DST_URL] == DATA
    assert tape.released == [SRC_URL]


def test_a_failed_release_does_not_fail_the_copy(lake: Fixture) -> None:
    ep, _src, _dst = lake
    tape = _with_tape(lake, online_after=0)
    tape.fail["release"] = TransientStorageError("tape system busy")
    assert _copier(ep).run(_claimed()).kind == "done"
    assert ("stage", SRC_URL) not in tape.calls  # already online: no recall asked


# --- third-party copy ------------------------------------------------------------------


def _tpc_lake(lake: Fixture) -> tuple[FakeEndpoints, MemStorage, MemStorage]:
    ep, old, _ = lake
    src, dst = MemStorage(old.files, tpc=True), MemStorage(old.files, tpc=True)
    ep.eps.clear()
    ep.add("SRC", src, tpc=True)
    ep.add("DST", dst, tpc=True)
    return ep, src, dst


def test_tpc_when_both_ends_speak_it(lake: Fixture) -> None:
    ep, _src, dst = _tpc_lake(lake)
    out = _copier(ep).run(_claimed())
    assert (out.kind, out.tpc) == ("done", True)
    assert ("tpc", DST_URL) in dst.calls
    assert ("write", DST_URL) not in dst.calls
    assert ("checksum", DST_URL) in dst.calls  # verified after the copy


def test_a_tpc_landing_other_bytes_is_deleted(lake: Fixture) -> None:
    ep, _src, dst = _tpc_lake(lake)
    dst.tpc_result = b"Y" + DATA[1:]
    out = _copier(ep).run(_claimed())
    assert (out.kind, out.recoverable) == ("exclude_source", False)
    assert out.error is not None and "destination adler32 is" in out.error
    assert ("delete", DST_URL) in dst.calls
    assert DST_URL not in dst.files


def test_a_tpc_landing_another_size_is_deleted_without_a_checksum(lake: Fixture) -> None:
    ep, _src, dst = _tpc_lake(lake)
    dst.tpc_result = DATA[:-1]
    out = _copier(ep).run(_claimed())
    assert out.kind == "exclude_source"
    assert out.error is not None and f"destination has {len(DATA) - 1} bytes" in out.error
    assert ("checksum", DST_URL) not in dst.calls
    assert DST_URL not in dst.files


def test_a_tpc_whose_copy_vanished_before_the_delete_still_reports_the_mismatch(
    lake: Fixture,
) -> None:
    ep, _src, dst = _tpc_lake(lake)
    dst.tpc_result = b"Y" + DATA[1:]
    dst.fail["delete"] = FileNotFoundError("already gone")
    out = _copier(ep).run(_claimed())
    assert out.kind == "exclude_source"
    assert out.error is not None and out.error.startswith("checksum mismatch")


def _ep(scheme: str, storage: Storage, read: int | None, write: int | None) -> Endpoint:
    return Endpoint(scheme, "h", 1, "/p", storage, read, write)


def test_tpc_pair_needs_pull_mode_same_scheme_and_tpc_on_both_ends() -> None:
    pull = MemStorage({}, tpc=True)
    push_only = MemStorage({})
    push_only.tpc_modes = frozenset({"push"})
    plain = MemStorage({})
    s = _ep("davs", pull, 1, 1)
    d = _ep("davs", pull, 1, 1)
    assert _tpc_pair([s], [d]) == (s, d)
    assert _tpc_pair([s], [_ep("davs", pull, 1, None)]) is None  # no tpc write at the dest
    assert _tpc_pair([_ep("davs", pull, None, 1)], [d]) is None  # no tpc read at the source
    assert _tpc_pair([_ep("root", pull, 1, 1)], [d]) is None  # schemes differ
    assert _tpc_pair([s], [_ep("davs", plain, 1, 1)]) is None  # the plugin has no TPC
    assert _tpc_pair([s], [_ep("davs", push_only, 1, 1)]) is None  # only push
    # the first matching pair in priority order
    s2 = _ep("root", pull, 1, 1)
    d2 = _ep("root", pull, 1, 1)
    assert _tpc_pair([s2, s], [d, d2]) == (s, d)
    assert _tpc_pair([s2, s], [d2, d]) == (s2, d2)
