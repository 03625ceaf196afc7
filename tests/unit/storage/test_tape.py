"""The tape emulation: the conformance suite, staging, pins and eviction, shared state, crashes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fedlake.storage import get_storage
from fedlake.storage.backends import tape as tape_module
from fedlake.storage.backends.tape import NotOnline, TapeStorage
from fedlake.storage.base import Stageable, Storage, TransientStorageError
from fedlake.storage.testing import StorageConformance, digest_of

URL = "tape://tape.example/lake/f.dat"
DATA = b"0123456789" * 100  # 1000 bytes


def _areas(storage: TapeStorage, url: str) -> tuple[Path, Path]:
    """The tape and buffer directories of a URL (how the layout puts them on disk)."""
    path = url.split("://", 1)[1].partition("/")[2]
    return storage.root / "tape" / path, storage.root / "buffer" / path


def _listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.is_dir() else []


def _read(storage: Storage, url: str) -> bytes:
    return b"".join(storage.read(url))


def _offline(storage: TapeStorage, url: str = URL, data: bytes = DATA) -> str:
    storage.write(url, [data])
    storage.evict(url)
    assert not storage.is_online(url)
    return url


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(tmp_path / "tape-root")


class TestTapeConformance(StorageConformance):
    """A fresh write is online, so the suite's write-then-read works unchanged."""

    __test__ = True

    @pytest.fixture
    def storage(self, root: str) -> Storage:
        return TapeStorage(root=root, recall_latency=0.2)

    @pytest.fixture
    def base_url(self) -> str:
        return "tape://localhost/lake/conformance"

    def raw_listdir(self, storage: Storage, dir_url: str) -> list[str]:
        """Both areas, temporaries included: neither may keep anything of a failed write."""
        assert isinstance(storage, TapeStorage)
        tape, buffer = _areas(storage, dir_url)
        return sorted(set(os.listdir(tape)) | set(_listing(buffer)))


# --- construction, options, URLs -----------------------------------------------------------


def test_registry_gives_tape(root: str) -> None:
    storage = get_storage("tape", root=root)
    assert isinstance(storage, TapeStorage)
    assert isinstance(storage, Stageable)
    assert isinstance(get_storage("tape"), TapeStorage)


def test_construction_touches_no_disk(root: str) -> None:
    TapeStorage(root=root)
    assert not Path(root).exists()
    assert TapeStorage().root == Path.home() / ".fedlake" / "tape"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"recall_latency": -1}, "recall_latency=-1 must be at least 0"),
        ({"recall_latency": "2s"}, r"recall_latency='2s' must be a number \(seconds\)"),
        ({"recall_latency": True}, "recall_latency=True must be a number"),
        ({"recall_latency": float("nan")}, "recall_latency=nan must be a number"),
        ({"recall_throughput": 0}, "recall_throughput=0 must be above 0"),
        ({"buffer_bytes": 0}, "buffer_bytes=0 must be above 0"),
        ({"buffer_bytes": 10.5}, "buffer_bytes=10.5 must be whole bytes"),
        ({"buffer_bytes": "1G"}, r"buffer_bytes='1G' must be a number \(bytes\)"),
        ({"write_pin": -0.5}, "write_pin=-0.5 must be at least 0"),
        ({"migration": "deferred"}, "migration='deferred': only 'immediate' exists"),
        ({"root": ""}, "root='' must be a directory path"),
        ({"root": 5}, "root=5 must be a directory path"),
        ({"root": "relative/dir"}, "root='relative/dir' must be an absolute path"),
        ({"latency": 1}, "unknown tape option.* latency; known: root, recall_latency"),
    ],
)
def test_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TapeStorage(**options)  # type: ignore[arg-type]


def test_json_numbers_are_accepted(root: str) -> None:
    storage = TapeStorage(root=root, buffer_bytes=1e6, recall_throughput=5, recall_latency=0)
    assert storage.buffer_bytes == 1_000_000
    assert storage.recall_throughput == 5.0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file://localhost/lake/f", "is not a tape:// URL"),
        ("tape://host", "has no path"),
        ("tape://host/lake/../../etc/passwd", "'..' is not allowed"),
    ],
)
def test_bad_urls(root: str, url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TapeStorage(root=root).exists(url)


def test_names_with_url_characters_are_literal(root: str) -> None:
    storage = TapeStorage(root=root)
    for name in ("q?x=1", "frag#ment", "a%41"):
        storage.write(f"tape://h/lake/{name}", [name.encode()])
    assert storage.listdir("tape://h/lake") == ["a%41", "frag#ment", "q?x=1"]
    assert _read(storage, "tape://h/lake/q?x=1") == b"q?x=1"


def test_listdir_shows_the_namespace_only(root: str) -> None:
    storage = TapeStorage(root=root)
    storage.write(URL, [DATA])
    _offline(storage, "tape://h/other/g")
    assert storage.listdir("tape://h/") == ["lake", "other"]
    assert storage.listdir("tape://h/other") == ["g"]  # offline files are listed too
    assert {"buffer", "locks", "state.sqlite", "tape"} <= set(os.listdir(root))


# --- online and offline ----------------------------------------------------------------


def test_a_fresh_write_is_online(root: str) -> None:
    storage = TapeStorage(root=root)
    storage.write(URL, [DATA])
    assert storage.is_online(URL)
    tape, buffer = _areas(storage, URL)
    assert tape.read_bytes() == buffer.read_bytes() == DATA


def test_read_of_an_offline_file_raises_not_online(root: str) -> None:
    storage = TapeStorage(root=root)
    _offline(storage)
    with pytest.raises(NotOnline, match="stage it first") as caught:
        storage.read(URL)
    assert isinstance(caught.value, TransientStorageError)  # the engine retries it
    assert URL in str(caught.value)
    assert caught.value.errno == errno.EAGAIN


def test_stat_and_checksums_of_an_offline_file_need_no_recall(root: str) -> None:
    storage = TapeStorage(root=root)
    _offline(storage)
    want = digest_of(DATA)
    st = storage.stat(URL, checksums=True)
    assert (st.size, st.adler32, st.md5) == (len(DATA), want.adler32, want.md5)
    assert st.mtime > 0
    assert storage.checksum(URL, "adler32") == want.adler32
    assert storage.checksum(URL, "md5") == want.md5
    assert storage.exists(URL)
    assert not storage.is_online(URL)


def test_missing_files_in_the_staging_calls(root: str) -> None:
    storage = TapeStorage(root=root)
    missing = "tape://h/lake/missing"
    for call in (storage.stage, storage.is_online, storage.release, storage.evict):
        with pytest.raises(FileNotFoundError, match="no such file on tape"):
            call(missing)


# --- staging ---------------------------------------------------------------------------


def test_stage_completes_after_the_latency(root: str) -> None:
    storage = TapeStorage(root=root, recall_latency=0.3)
    _offline(storage)
    request_id = storage.stage(URL)
    assert not storage.is_online(URL)
    with pytest.raises(NotOnline, match=r"recall is pending \(due in 0\.\d s\)"):
        storage.read(URL)
    assert storage.stage(URL) == request_id  # idempotent while pending
    time.sleep(0.35)
    assert storage.is_online(URL)
    assert _read(storage, URL) == DATA
    assert storage.stage(URL) == request_id  # and once online
    tape, buffer = _areas(storage, URL)
    assert os.stat(tape).st_ino != os.stat(buffer).st_ino  # a recall copies


def test_read_and_stat_complete_a_due_recall(root: str) -> None:
    storage = TapeStorage(root=root, recall_latency=0)
    _offline(storage, "tape://h/lake/a")
    _offline(storage, "tape://h/lake/b")
    storage.stage("tape://h/lake/a")
    storage.stage("tape://h/lake/b")
    assert _read(storage, "tape://h/lake/a") == DATA
    storage.stat("tape://h/lake/b")
    _tape, buffer = _areas(storage, "tape://h/lake/b")
    assert buffer.read_bytes() == DATA


def test_throughput_term_of_the_recall_time(root: str) -> None:
    storage = TapeStorage(root=root, recall_latency=0, recall_throughput=len(DATA) / 0.3)
    _offline(storage)
    storage.stage(URL)
    assert not storage.is_online(URL)  # 1000 bytes at 3333 bytes/s: 0.3 s
    time.sleep(0.35)
    assert storage.is_online(URL)
    fast = TapeStorage(root=root, recall_latency=0, recall_throughput=1e12)
    _offline(fast, "tape://h/lake/fast")
    fast.stage("tape://h/lake/fast")
    assert fast.is_online("tape://h/lake/fast")


def test_two_instances_share_the_stage_state(root: str) -> None:
    one = TapeStorage(root=root, recall_latency=0.3)
    two = TapeStorage(root=root, recall_latency=0.3)
    _offline(one)
    request_id = one.stage(URL)
    assert two.stage(URL) == request_id
    assert not two.is_online(URL)
    time.sleep(0.35)
    assert two.is_online(URL)  # two completes the recall one asked for
    assert one.is_online(URL)
    assert _read(one, URL) == DATA
    one.release(URL)
    two.evict(URL)
    assert not one.is_online(URL)


def test_release_cancels_a_pending_recall(root: str) -> None:
    storage = TapeStorage(root=root, recall_latency=0.2)
    _offline(storage)
    first = storage.stage(URL)
    storage.release(URL)
    time.sleep(0.25)
    assert not storage.is_online(URL)
    assert storage.stage(URL) != first


def test_bad_pin_seconds(root: str) -> None:
    storage = TapeStorage(root=root)
    storage.write(URL, [DATA])
    with pytest.raises(ValueError, match="pin_seconds=-1 must be at least 0"):
        storage.stage(URL, pin_seconds=-1)


# --- the disk buffer: pins and eviction ----------------------------------------------------


def _urls(n: int) -> list[str]:
    return [f"tape://h/lake/f{i}" for i in range(n)]


def test_release_makes_copies_evictable_least_recently_used_first(root: str) -> None:
    storage = TapeStorage(root=root, buffer_bytes=3 * len(DATA), recall_latency=0)
    a, b, c, d = _urls(4)
    for url in (a, b, c):
        storage.write(url, [DATA])  # pinned for write_pin (300 s)
    with pytest.raises(OSError, match="online copies are pinned") as caught:
        storage.write(d, [DATA])
    assert caught.value.errno == errno.ENOSPC
    assert not storage.exists(d)
    storage.release(a)
    storage.release(b)
    time.sleep(0.01)
    assert _read(storage, a) == DATA  # a is now used more recently than b
    storage.write(d, [DATA])
    assert [storage.is_online(u) for u in (a, b, c, d)] == [True, False, True, True]
    with pytest.raises(NotOnline):
        storage.read(b)
    assert storage.stat(b, checksums=True).adler32 == digest_of(DATA).adler32
    tape, buffer = _areas(storage, "tape://h/lake")
    assert _listing(tape) == ["f0", "f1", "f2", "f3"]
    assert _listing(buffer) == ["f0", "f2", "f3"]


def test_concurrent_writers_never_overfill_the_buffer(root: str) -> None:
    storage = TapeStorage(root=root, buffer_bytes=4 * len(DATA), write_pin=0)
    urls = _urls(16)
    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(lambda url: storage.write(url, [DATA]), urls))
    assert digests == [digest_of(DATA)] * 16
    tape, buffer = _areas(storage, "tape://h/lake")
    assert sum(p.stat().st_size for p in buffer.iterdir()) <= 4 * len(DATA)
    assert len(_listing(buffer)) == 4
    assert _listing(tape) == sorted(f"f{i}" for i in range(16))


def test_concurrent_pollers_copy_a_recall_once(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = TapeStorage(root=root, recall_latency=0)
    _offline(storage)
    storage.stage(URL)
    copies: list[Path] = []
    real_copy = tape_module._copy_bytes

    def slow_copy(src: Path, dst: Path) -> None:
        copies.append(dst)
        time.sleep(0.1)
        real_copy(src, dst)

    monkeypatch.setattr(tape_module, "_copy_bytes", slow_copy)
    with ThreadPoolExecutor(6) as pool:
        first = list(pool.map(lambda _: storage.is_online(URL), range(6)))
    assert first.count(True) >= 1  # the copier; the others saw the copy in progress
    assert storage.is_online(URL)
    assert len(copies) == 1


def test_a_file_larger_than_the_buffer(root: str) -> None:
    storage = TapeStorage(root=root, buffer_bytes=len(DATA) - 1)
    with pytest.raises(OSError, match="never fit the 999-byte disk buffer") as caught:
        storage.write(URL, [DATA])
    assert caught.value.errno == errno.ENOSPC
    with pytest.raises(OSError, match="never fit"):
        storage.write(URL, [DATA], expected=digest_of(DATA))  # refused before any byte
    tape, buffer = _areas(storage, URL)
    assert _listing(tape.parent) == _listing(buffer.parent) == []
    big = TapeStorage(root=root)
    big.write(URL, [DATA])
    with pytest.raises(OSError, match="never fit") as staged:
        storage.stage(URL)
    assert staged.value.errno == errno.ENOSPC


def test_a_recall_waits_for_room(root: str) -> None:
    storage = TapeStorage(root=root, buffer_bytes=2 * len(DATA), recall_latency=0)
    a, b, c = _urls(3)
    storage.write(a, [DATA])
    storage.release(a)
    storage.write(b, [DATA])
    storage.write(c, [DATA])  # evicts a; b and c are pinned
    assert not storage.is_online(a)
    storage.stage(a)
    assert not storage.is_online(a)
    with pytest.raises(NotOnline, match="waiting for room"):
        storage.read(a)
    storage.release(b)
    assert storage.is_online(a)
    assert not storage.is_online(b)


def test_pins_expire(root: str) -> None:
    """Pins of 0.4 s: long enough that a loaded machine does not expire them early."""
    storage = TapeStorage(root=root, buffer_bytes=2 * len(DATA), recall_latency=0, write_pin=0.4)
    a, b, c = _urls(3)
    storage.write(a, [DATA])
    storage.write(b, [DATA])
    with pytest.raises(OSError, match="pinned"):
        storage.write(c, [DATA])
    time.sleep(0.45)
    storage.write(c, [DATA])  # the write pins have expired: a (least recent) goes
    assert [storage.is_online(u) for u in (a, b, c)] == [False, True, True]
    storage.stage(a, pin_seconds=0.4)  # recalled at once, evicting b
    assert storage.is_online(a)
    assert not storage.is_online(b)
    with pytest.raises(OSError, match="pinned"):  # a is pinned by the stage, c by the write
        storage.write(b, [DATA], overwrite=True)
    time.sleep(0.45)
    storage.write(b, [DATA], overwrite=True)
    assert storage.is_online(b)


def test_overwrite_replaces_the_online_copy_and_the_checksums(root: str) -> None:
    storage = TapeStorage(root=root, recall_latency=0.2)
    _offline(storage)
    storage.stage(URL)
    storage.write(URL, [b"new"], overwrite=True)
    assert storage.is_online(URL)  # the new version, online at once
    time.sleep(0.25)
    assert _read(storage, URL) == b"new"  # the old recall did not bring the old bytes back
    assert storage.checksum(URL, "md5") == digest_of(b"new").md5


@pytest.mark.parametrize("action", ["overwrite", "release", "delete", "evict-and-restage"])
def test_changes_during_a_recall_copy_win(
    root: str, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """A write, release or delete while a recall copies: the copy is thrown away."""
    storage = TapeStorage(root=root, recall_latency=0)
    _offline(storage)
    storage.stage(URL)
    real_copy = tape_module._copy_bytes

    def copy_and_interfere(src: Path, dst: Path) -> None:
        real_copy(src, dst)
        if action == "overwrite":
            storage.write(URL, [b"new"], overwrite=True)
        elif action == "release":
            storage.release(URL)
        elif action == "delete":
            storage.delete(URL)
        else:
            storage.release(URL)
            storage.stage(URL)  # a new request: the old copier must not complete it

    monkeypatch.setattr(tape_module, "_copy_bytes", copy_and_interfere)
    online = storage.is_online(URL)
    monkeypatch.setattr(tape_module, "_copy_bytes", real_copy)
    _tape, buffer = _areas(storage, URL)
    if action == "overwrite":
        assert online
        assert _read(storage, URL) == b"new"
    elif action == "delete":
        assert not storage.exists(URL)
        assert not buffer.exists()
    else:
        assert not online
        assert not buffer.exists()
    assert not [n for n in _listing(buffer.parent) if n != "f.dat"]  # no temporary
    if action == "evict-and-restage":
        assert storage.is_online(URL)  # the new request completes on its own
        assert _read(storage, URL) == DATA


def test_delete_removes_both_copies_and_the_state(root: str) -> None:
    storage = TapeStorage(root=root, recall_latency=0.2)
    storage.write(URL, [DATA])
    storage.delete(URL)
    tape, buffer = _areas(storage, URL)
    assert not tape.exists()
    assert not buffer.exists()
    storage.write(URL, [b"again"])
    assert storage.checksum(URL, "adler32") == digest_of(b"again").adler32
    storage.evict(URL)
    storage.stage(URL)
    storage.delete(URL)  # with a recall pending
    with pytest.raises(FileNotFoundError):
        storage.stage(URL)


def test_a_tape_copy_changed_behind_the_state_is_detected(root: str) -> None:
    """The window of a write killed after its rename but before its commit."""
    storage = TapeStorage(root=root, recall_latency=0)
    storage.write(URL, [DATA])
    tape, _buffer = _areas(storage, URL)
    replacement = tape.with_name("replacement")
    replacement.write_bytes(b"other bytes")
    os.replace(replacement, tape)
    assert not storage.is_online(URL)  # the buffer holds an older version: never served
    assert storage.checksum(URL, "md5") == digest_of(b"other bytes").md5
    storage.stage(URL)
    assert _read(storage, URL) == b"other bytes"


# --- crashes ------------------------------------------------------------------------------

_RECALL_CHILD = """
import sys, time
from pathlib import Path
from fedlake.storage.backends import tape

root, url, marker = sys.argv[1:]

def interrupted_copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(fin.read(100))
    Path(marker).touch()
    time.sleep(60)  # killed here, half-way through the copy

tape._copy_bytes = interrupted_copy
tape.TapeStorage(root=root, recall_latency=0).is_online(url)
"""

_WRITE_CHILD = """
import sys, time
from pathlib import Path
from fedlake.storage.backends.tape import TapeStorage

root, url, marker = sys.argv[1:]

def chunks():
    yield b"half of the bytes"
    Path(marker).touch()
    time.sleep(60)  # killed here, half-way through the write
    yield b"never"

TapeStorage(root=root).write(url, chunks())
"""


def _kill_when_marked(
    script: str, root: str, marker: Path, meanwhile: Callable[[], None] = lambda: None
) -> None:
    """Run ``script`` in a child; once it touches ``marker``, call ``meanwhile``, kill -9 it."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, root, URL, str(marker)], stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert child.poll() is None, child.stderr.read() if child.stderr else b""
            assert time.monotonic() < deadline, "the child never reached the crash point"
            time.sleep(0.02)
        meanwhile()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL


def test_a_recall_killed_mid_copy_is_redone(root: str, tmp_path: Path) -> None:
    storage = TapeStorage(root=root, recall_latency=0)
    data = bytes(range(256)) * 40
    _offline(storage, data=data)
    storage.stage(URL)
    tape, buffer = _areas(storage, URL)

    def while_the_child_copies() -> None:
        assert not storage.is_online(URL)  # the child holds the recall: no second copy
        with pytest.raises(NotOnline, match="being copied in"):
            storage.read(URL)

    _kill_when_marked(_RECALL_CHILD, root, tmp_path / "copying", while_the_child_copies)
    leftovers = _listing(buffer.parent)
    assert len(leftovers) == 1  # the dead copier's half-written temporary
    assert leftovers[0].startswith(".f.dat.fedlake-tmp-")
    assert storage.listdir("tape://h/lake") == ["f.dat"]
    assert storage.is_online(URL)  # the recall is redone by whoever looks next
    assert _read(storage, URL) == data
    assert _listing(buffer.parent) == ["f.dat"]  # the temporary is gone
    assert tape.read_bytes() == data


def test_a_write_killed_mid_stream_leaves_nothing_visible(root: str, tmp_path: Path) -> None:
    storage = TapeStorage(root=root)
    storage.mkdir("tape://h/lake")
    _kill_when_marked(_WRITE_CHILD, root, tmp_path / "writing")
    assert not storage.exists(URL)
    assert storage.listdir("tape://h/lake") == []
    tape, _buffer = _areas(storage, URL)
    assert len(_listing(tape.parent)) == 1  # a hidden temporary, swept later
    assert storage.sweep_temporaries(older_than=0) == 1
    assert _listing(tape.parent) == []
    storage.write(URL, [DATA])
    assert _read(storage, URL) == DATA
