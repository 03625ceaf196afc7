"""The deletion daemon on real POSIX RSEs, on SQLite and PostgreSQL: what it deletes, in
which order, what it keeps, what it records, and how storage failures are handled."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy import func, select, update

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import deletion as core
from fedlake.catalog import rses as rse_core
from fedlake.catalog.models import DID, Event, Replica, RSEUsage
from fedlake.catalog.replicas import replica_path
from fedlake.daemons.deletion import DeletionDaemon
from fedlake.domain.errors import RSENotFound
from fedlake.domain.timefmt import utcnow
from fedlake.services import accounts as account_svc
from fedlake.services import replicas as replica_svc
from fedlake.services import rses as rse_svc
from fedlake.services import rules as rule_svc
from fedlake.services import transfers as transfer_svc

_ADMIN = Caller("root", admin=True)  # sees embargoed data too

SCOPE = "reap"
DISK = "LOCAL-DISK"
SAFE = "LOCAL-SAFE"
IN_CI = os.environ.get("CI") == "true"


# --- helpers (also used by test_deletion_kills.py) -------------------------------------


def local_files(lake: Lake, rse: str, names: list[str]) -> list[Path]:
    """Where the files ``SCOPE:name`` of a deterministic local RSE live."""
    with lake.db.read() as s:
        info = rse_core.rse_info(s, rse_core.get_rse(s, rse))
    root = Path(info.protocols[0].prefix)
    return [root / replica_path(info, SCOPE, name, None) for name in names]


def local_file(lake: Lake, rse: str, name: str) -> Path:
    return local_files(lake, rse, [name])[0]


def put(lake: Lake, root: Caller, names: list[str], rse: str = DISK, size: int = 100) -> None:
    """Write real files of ``size`` bytes on a local RSE and register their replicas."""
    rows = []
    for name, path in zip(names, local_files(lake, rse, names), strict=True):
        data = (name.encode() * size)[:size]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append(
            {"scope": SCOPE, "name": name, "bytes": size, "adler32": f"{zlib.adler32(data):08x}"}
        )
    replica_svc.add_replicas(lake, root, {"rse": rse, "files": rows})


def set_replicas(lake: Lake, rse: str, names: list[str], **values: Any) -> None:
    with lake.db.write() as s:
        rse_id = rse_core.get_rse(s, rse).id
        s.execute(
            update(Replica)
            .where(Replica.rse_id == rse_id, Replica.scope == SCOPE, Replica.name.in_(names))
            .values(**values)
        )


def replicas(lake: Lake, rse: str) -> dict[str, tuple[str, int]]:
    """name -> (state, lock_cnt) of the SCOPE replicas on ``rse``."""
    with lake.db.read() as s:
        rse_id = rse_core.get_rse(s, rse).id
        rows = s.execute(
            select(Replica.name, Replica.state, Replica.lock_cnt).where(
                Replica.rse_id == rse_id, Replica.scope == SCOPE
            )
        ).all()
    return {n: (st, lc) for n, st, lc in rows}


def events(lake: Lake, kind: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        payloads = s.scalars(
            select(Event.payload).where(Event.event_type == kind).order_by(Event.id)
        )
        return [json.loads(p) for p in payloads]


def deleted_names(lake: Lake, rse: str | None = None) -> list[str]:
    return [e["name"] for e in events(lake, "deletion-done") if rse is None or e["rse"] == rse]


def set_attribute(lake: Lake, root: Caller, rse: str, key: str, value: Any) -> None:
    rse_svc.set_attribute(lake, root, rse, key, value)


@pytest.fixture
def scope(lake: Lake, root: Caller) -> str:
    account_svc.add_scope(lake, root, SCOPE, "root")
    return SCOPE


def daemon(lake: Lake, **kw: Any) -> DeletionDaemon:
    kw.setdefault("threads", 4)
    return DeletionDaemon(lake, **kw)


EPOCH = core.OBSOLETE


# --- what is deleted, and in which order --------------------------------------------------


def test_only_obsolete_replicas_go_when_space_is_fine(lake: Lake, root: Caller, scope: str) -> None:
    put(lake, root, ["o1", "o2", "l1", "l2", "keep"])
    set_replicas(lake, DISK, ["o1", "o2"], tombstone=EPOCH)
    set_replicas(lake, DISK, ["l1", "l2"], tombstone=utcnow() - timedelta(hours=1))

    assert daemon(lake).run_once() == 2

    assert set(replicas(lake, DISK)) == {"l1", "l2", "keep"}
    assert sorted(deleted_names(lake)) == ["o1", "o2"]
    assert not local_file(lake, DISK, "o1").exists()
    assert not local_file(lake, DISK, "o2").exists()
    assert local_file(lake, DISK, "l1").exists()
    assert daemon(lake).run_once() == 0  # nothing more to do


@pytest.mark.parametrize("batch", [1, 100])
def test_lru_replicas_go_oldest_first_until_the_deficit_is_covered(
    lake: Lake, root: Caller, scope: str, batch: int
) -> None:
    """10 files of 100 B; usage reported: total 2,000 B, used = the catalogue's sum.
    Free is 1,000 B; deleting the 3 obsolete ones makes it 1,300; MinFreeSpace 1,450
    needs 150 more: the two least recently used of the five LRU candidates go."""
    obsolete = ["o1", "o2", "o3"]
    lru = ["l1", "l2", "l3", "l4", "l5"]
    put(lake, root, [*obsolete, *lru, "k1", "k2"])
    now = utcnow()
    set_replicas(lake, DISK, obsolete, tombstone=EPOCH)
    set_replicas(lake, DISK, lru, tombstone=now - timedelta(minutes=5))
    for i, name in enumerate(lru):  # l1 accessed longest ago ... l5 most recently
        set_replicas(lake, DISK, [name], accessed_at=now - timedelta(days=10 - i))
    # never accessed: its creation time counts, and it is the oldest of all
    set_replicas(lake, DISK, ["l3"], accessed_at=None, created_at=now - timedelta(days=30))
    set_attribute(lake, root, DISK, "source_for_total_space", "storage")
    set_attribute(lake, root, DISK, "source_for_used_space", "rucio")
    rse_svc.set_usage(lake, root, DISK, {"source": "storage", "total": 2000})
    rse_svc.set_limit(lake, root, DISK, "MinFreeSpace", 1450)

    assert daemon(lake, batch=batch).run_once() == 5

    gone = deleted_names(lake)
    assert sorted(gone[:3]) == obsolete  # obsolete first
    assert set(gone[3:]) == {"l3", "l1"}
    if batch == 1:
        assert gone[3:] == ["l3", "l1"]  # least recently used first
    assert set(replicas(lake, DISK)) == {"l2", "l4", "l5", "k1", "k2"}
    assert daemon(lake, batch=batch).run_once() == 0  # the deficit is covered


def test_free_space_of_a_local_rse_is_statvfs_of_its_directory(
    lake: Lake, root: Caller, scope: str
) -> None:
    put(lake, root, ["l1", "l2"])
    set_replicas(lake, DISK, ["l1", "l2"], tombstone=utcnow() - timedelta(minutes=1))
    free = shutil.disk_usage(local_file(lake, DISK, "l1").parent).free
    rse_svc.set_limit(lake, root, DISK, "MinFreeSpace", free // 1000)  # far below: no deficit
    assert daemon(lake).run_once() == 0
    rse_svc.set_limit(lake, root, DISK, "MinFreeSpace", free * 1000)  # far above: deficit
    assert daemon(lake).run_once() == 2
    assert replicas(lake, DISK) == {}


def test_a_greedy_rse_deletes_every_unlocked_replica_whose_tombstone_passed(
    lake: Lake, root: Caller, scope: str
) -> None:
    put(lake, root, ["a", "b", "future", "none"])
    set_replicas(lake, DISK, ["a"], tombstone=EPOCH)
    set_replicas(lake, DISK, ["b"], tombstone=utcnow() - timedelta(seconds=1))
    set_replicas(lake, DISK, ["future"], tombstone=utcnow() + timedelta(hours=1))
    set_attribute(lake, root, DISK, "greedyDeletion", True)

    assert daemon(lake).run_once() == 2
    assert set(replicas(lake, DISK)) == {"future", "none"}
    assert sorted(deleted_names(lake)) == ["a", "b"]


def test_greedy_as_text_and_availability_delete_off(lake: Lake, root: Caller, scope: str) -> None:
    put(lake, root, ["a"])
    set_replicas(lake, DISK, ["a"], tombstone=utcnow() - timedelta(seconds=1))
    set_attribute(lake, root, DISK, "greedyDeletion", "True")
    rse_svc.update_rse(lake, root, DISK, {"availability_delete": False})
    assert daemon(lake).run_once() == 0
    assert set(replicas(lake, DISK)) == {"a"}
    rse_svc.update_rse(lake, root, DISK, {"availability_delete": True})
    assert daemon(lake).run_once() == 1
    assert replicas(lake, DISK) == {}


def test_replicas_with_locks_are_never_deleted(lake: Lake, root: Caller, scope: str) -> None:
    put(lake, root, ["purged", "twice", "forced"])
    set_attribute(lake, root, DISK, "greedyDeletion", True)

    def rule(name: str) -> str:
        body = {"dids": [{"scope": SCOPE, "name": name}], "copies": 1, "rse_expression": DISK}
        return rule_svc.add_rules(lake, root, body)[0]

    purged = rule("purged")
    twice = [rule("twice")]
    body = {"dids": [{"scope": SCOPE, "name": "twice"}], "copies": 1, "rse_expression": SAFE}
    twice.append(rule_svc.add_rules(lake, root, {**body, "rse_expression": f"{DISK}|{SAFE}"})[0])
    rule("forced")
    # a tombstone on a locked replica (never set by the rules, but the lock must win)
    set_replicas(lake, DISK, ["forced"], tombstone=EPOCH)
    assert daemon(lake).run_once() == 0

    rule_svc.delete_rule(lake, root, purged, {"purge_replicas": True})
    rule_svc.delete_rule(lake, root, twice[0], {"purge_replicas": True})
    assert daemon(lake).run_once() == 1
    left = replicas(lake, DISK)
    assert "purged" not in left
    assert left["twice"] == ("AVAILABLE", 1)
    assert left["forced"] == ("AVAILABLE", 1)
    assert local_file(lake, DISK, "twice").exists()
    assert local_file(lake, DISK, "forced").exists()
    assert deleted_names(lake) == ["purged"]


def test_a_replica_needed_as_a_transfer_source_is_kept(
    lake: Lake, root: Caller, scope: str
) -> None:
    put(lake, root, ["src", "free"])
    set_replicas(lake, DISK, ["src", "free"], tombstone=EPOCH)
    (request,) = transfer_svc.submit(
        lake, root, {"dids": [{"scope": SCOPE, "name": "src"}], "rse": SAFE}
    )
    assert daemon(lake).run_once() == 1
    assert set(replicas(lake, DISK)) == {"src"}
    assert local_file(lake, DISK, "src").exists()

    transfer_svc.cancel(lake, root, request)  # no longer active: the source is not needed
    assert daemon(lake).run_once() == 1
    assert replicas(lake, DISK) == {}


# --- what a deletion leaves behind -------------------------------------------------------


def test_rows_files_events_availability_and_usage(lake: Lake, root: Caller, scope: str) -> None:
    put(lake, root, ["two-copies", "one-copy"], size=300)
    put(lake, root, ["two-copies"], rse=SAFE, size=300)
    set_replicas(lake, DISK, ["two-copies", "one-copy"], tombstone=EPOCH)
    rse_svc.set_usage(
        lake, root, DISK, {"source": "storage", "used": 1000, "free": 5000, "files": 7}
    )
    rse_svc.set_usage(lake, root, DISK, {"source": "static", "total": 9000})

    assert daemon(lake).run_once() == 2

    assert replicas(lake, DISK) == {}
    assert not local_file(lake, DISK, "two-copies").exists()
    assert not local_file(lake, DISK, "one-copy").exists()
    assert local_file(lake, SAFE, "two-copies").exists()
    done = sorted(events(lake, "deletion-done"), key=lambda e: e["name"])
    assert done == [
        {"rse": DISK, "scope": SCOPE, "name": "one-copy", "bytes": 300},
        {"rse": DISK, "scope": SCOPE, "name": "two-copies", "bytes": 300},
    ]
    with lake.db.read() as s:
        availability = {
            n: a for n, a in s.execute(select(DID.name, DID.availability).where(DID.scope == SCOPE))
        }
        usage = {
            u.source: (u.used, u.free, u.total, u.files)
            for u in s.scalars(
                select(RSEUsage).where(RSEUsage.rse_id == rse_core.get_rse(s, DISK).id)
            )
        }
    assert availability == {"one-copy": core.LOST, "two-copies": "AVAILABLE"}
    assert usage == {"storage": (400, 5600, None, 5), "static": (None, None, 9000, None)}


def _refuse_deletes(directory: Path) -> Callable[[], None]:
    """Make entries of ``directory`` undeletable; returns the undo. Permission bits do
    not stop root, so as root the directory is made immutable (``chattr +i``)."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return lambda: directory.chmod(0o755)
    chattr = shutil.which("chattr")
    if chattr is None:
        _cannot("root, and no chattr to make a directory immutable")
    result = subprocess.run([chattr, "+i", str(directory)], capture_output=True, text=True)
    if result.returncode != 0:
        _cannot(f"root, and chattr +i {directory} failed: {result.stderr.strip()}")

    def undo() -> None:
        subprocess.run([chattr, "-i", str(directory)], check=True)

    return undo


def _cannot(why: str) -> NoReturn:
    if IN_CI:
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture
def read_only(lake: Lake) -> Iterator[Callable[[Path], None]]:
    undo: list[Callable[[], None]] = []
    yield lambda d: undo.append(_refuse_deletes(d))
    for fn in undo:
        fn()


def test_a_storage_failure_keeps_the_row_and_is_retried_after_the_lease(
    lake: Lake, root: Caller, scope: str, read_only: Callable[[Path], None]
) -> None:
    put(lake, root, ["stuck", "fine"])
    set_replicas(lake, DISK, ["stuck", "fine"], tombstone=EPOCH)
    stuck = local_file(lake, DISK, "stuck")
    read_only(stuck.parent)
    reaper = daemon(lake, lease=1.0)

    assert reaper.run_once() == 1
    assert replicas(lake, DISK) == {"stuck": ("BEING_DELETED", 0)}
    assert stuck.exists()
    (failed,) = events(lake, "deletion-failed")
    assert failed["rse"] == DISK and failed["name"] == "stuck" and failed["bytes"] == 100
    assert failed["error"].startswith("PermissionError: ") and str(stuck) in failed["error"]
    assert failed["permanent"] is True
    # within the lease nothing is tried again: no tight loop on a failing file
    assert reaper.run_once() == 0
    assert len(events(lake, "deletion-failed")) == 1

    time.sleep(1.1)  # the lease ran out: the next round tries again, and fails again
    assert reaper.run_once() == 0
    assert len(events(lake, "deletion-failed")) == 2
    assert replicas(lake, DISK) == {"stuck": ("BEING_DELETED", 0)}


def test_a_failed_file_is_deleted_once_the_storage_allows_it(
    lake: Lake, root: Caller, scope: str
) -> None:
    put(lake, root, ["blocked"])
    set_replicas(lake, DISK, ["blocked"], tombstone=EPOCH)
    path = local_file(lake, DISK, "blocked")
    path.unlink()
    path.mkdir()  # a directory where the file should be: the storage refuses to unlink it
    (path / "inside").write_bytes(b"x")
    reaper = daemon(lake, lease=0.5)
    assert reaper.run_once() == 0
    (failed,) = events(lake, "deletion-failed")
    assert failed["error"].startswith("IsADirectoryError")
    shutil.rmtree(path)
    time.sleep(0.6)
    assert reaper.run_once() == 1  # the file is gone now: the row goes
    assert replicas(lake, DISK) == {}
    assert deleted_names(lake) == ["blocked"]


def test_an_unreachable_storage_fails_transiently(lake: Lake, root: Caller, scope: str) -> None:
    with lake.db.write() as s:
        row = rse_core.add_rse(s, "DEAD-DAV", deterministic=True, lfn2pfn_algorithm="identity")
        rse_core.add_protocol(
            s,
            row,
            {
                "scheme": "http",
                "hostname": "127.0.0.1",
                "port": 9,  # discard: nothing listens there
                "prefix": "/data",
                "impl": "rucio.rse.protocols.webdav.Default",
                "domains": {"wan": {"read": 1, "write": 1, "delete": 1}},
            },
        )
    files = [{"scope": SCOPE, "name": "far", "bytes": 10, "adler32": "00000001"}]
    replica_svc.add_replicas(lake, root, {"rse": "DEAD-DAV", "files": files})
    set_replicas(lake, "DEAD-DAV", ["far"], tombstone=EPOCH)

    assert daemon(lake, rses=["DEAD-DAV"]).run_once() == 0

    (failed,) = events(lake, "deletion-failed")
    assert failed["permanent"] is False, failed
    assert replicas(lake, "DEAD-DAV") == {"far": ("BEING_DELETED", 0)}


def test_an_rse_without_a_delete_protocol_is_skipped(lake: Lake, root: Caller, scope: str) -> None:
    with lake.db.write() as s:
        row = rse_core.add_rse(s, "NO-DELETE", deterministic=True)
        rse_core.add_protocol(
            s,
            row,
            {
                "scheme": "file",
                "prefix": "/nonexistent",
                "impl": "x",
                "domains": {"wan": {"read": 1, "write": 1, "delete": None}},
            },
        )
    files = [{"scope": SCOPE, "name": "x", "bytes": 1, "adler32": "00000001"}]
    replica_svc.add_replicas(lake, root, {"rse": "NO-DELETE", "files": files})
    set_replicas(lake, "NO-DELETE", ["x"], tombstone=EPOCH)
    assert daemon(lake).run_once() == 0
    assert replicas(lake, "NO-DELETE") == {"x": ("AVAILABLE", 0)}  # not even claimed


def test_unknown_rse_names_are_refused(lake: Lake) -> None:
    with pytest.raises(RSENotFound, match="NOPE-1, NOPE-2 do not exist"):
        DeletionDaemon(lake, rses=["LOCAL-DISK", "NOPE-2", "NOPE-1"])
    with pytest.raises(ValueError, match="batch must be from 1"):
        DeletionDaemon(lake, batch=0)


# --- claims, leases and locks (the catalogue functions) ---------------------------------


def _claim(lake: Lake, rse: str, phase: core.Phase, lease: float = 600.0) -> list[str]:
    with lake.db.write() as s:
        rse_id = rse_core.get_rse(s, rse).id
        got = core.claim(s, rse_id, phase, limit=100, now=utcnow(), lease=lease)
    return sorted(c.name for c in got)


def _finish(lake: Lake, rse: str, names: list[str]) -> core.Finished:
    with lake.db.write() as s:
        rse_id = rse_core.get_rse(s, rse).id
        done = [core.Candidate(SCOPE, n, 100, None) for n in names]
        return core.finish(s, rse_id, rse, done, utcnow())


def test_a_replica_locked_while_being_deleted_goes_back_to_copying(
    lake: Lake, root: Caller, scope: str
) -> None:
    put(lake, root, ["a", "b"])
    set_replicas(lake, DISK, ["a", "b"], tombstone=EPOCH)
    assert _claim(lake, DISK, core.Phase.OBSOLETE) == ["a", "b"]
    assert _claim(lake, DISK, core.Phase.OBSOLETE) == []  # claimed: not again
    body = {"dids": [{"scope": SCOPE, "name": "a"}], "copies": 1, "rse_expression": DISK}
    rule_id = rule_svc.add_rules(lake, root, body)[0]
    local_file(lake, DISK, "a").unlink()
    local_file(lake, DISK, "b").unlink()

    assert _finish(lake, DISK, ["a", "b"]) == core.Finished(1, 100, 1, 1)
    assert replicas(lake, DISK) == {"a": ("COPYING", 1)}
    assert deleted_names(lake) == ["b"]
    # the rule's lock waits for a copy (a transfer restores the file)
    assert rule_svc.get_rule(lake, _ADMIN, rule_id)["state"] == "REPLICATING"
    assert _finish(lake, DISK, ["a", "b"]) == core.Finished(0, 0, 0, 0)  # idempotent


def test_claims_past_their_lease_are_taken_again(lake: Lake, root: Caller, scope: str) -> None:
    put(lake, root, ["a", "b", "c"])
    set_replicas(lake, DISK, ["a", "b", "c"], tombstone=EPOCH)
    assert _claim(lake, DISK, core.Phase.OBSOLETE) == ["a", "b", "c"]
    assert _claim(lake, DISK, core.Phase.RESUME, lease=600) == []  # held
    body = {"dids": [{"scope": SCOPE, "name": "b"}], "copies": 1, "rse_expression": DISK}
    rule_svc.add_rules(lake, root, body)  # b got a lock meanwhile
    old = utcnow() - timedelta(seconds=601)
    set_replicas(lake, DISK, ["a", "b"], updated_at=old)  # their reaper died long ago
    with lake.db.write() as s:
        rse_id = rse_core.get_rse(s, DISK).id
        assert core.release_locked(s, rse_id, now=utcnow(), lease=600) == 1
    assert _claim(lake, DISK, core.Phase.RESUME, lease=600) == ["a"]
    assert replicas(lake, DISK) == {
        "a": ("BEING_DELETED", 0),
        "b": ("COPYING", 1),
        "c": ("BEING_DELETED", 0),
    }


def test_two_reapers_never_claim_the_same_replicas(lake: Lake, root: Caller, scope: str) -> None:
    """PostgreSQL: claims of concurrent transactions skip each other's rows."""
    if lake.db.sqlite:
        pytest.skip("SQLite has one writer: claims cannot overlap")
    names = [f"f{i:03d}" for i in range(60)]
    put(lake, root, names)
    set_replicas(lake, DISK, names, tombstone=EPOCH)
    first_claimed = threading.Event()
    release = threading.Event()
    taken: dict[str, list[str]] = {}

    def reaper(tag: str, hold: bool) -> None:
        with lake.db.write() as s:
            rse_id = rse_core.get_rse(s, DISK).id
            got = core.claim(s, rse_id, core.Phase.OBSOLETE, limit=40, now=utcnow())
            taken[tag] = [c.name for c in got]
            if hold:
                first_claimed.set()
                release.wait(30)

    first = threading.Thread(target=reaper, args=("first", True))
    first.start()
    assert first_claimed.wait(30)
    reaper("second", False)  # runs while the first transaction still holds its rows
    release.set()
    first.join(30)
    assert len(taken["first"]) == 40
    assert len(taken["second"]) == 20
    assert set(taken["first"]) | set(taken["second"]) == set(names)
    with lake.db.read() as s:
        n = s.scalar(select(func.count()).where(Replica.state == "BEING_DELETED"))
    assert n == 60


def test_reported_free_space(lake: Lake, root: Caller, scope: str) -> None:
    put(lake, root, ["a", "b"], size=250)

    def free(**attrs: str) -> int | None:
        for key, value in attrs.items():
            set_attribute(lake, root, DISK, key, value)
        with lake.db.read() as s:
            (target,) = core.deletion_targets(s, [DISK])
            return core.reported_free(s, target)

    assert free() is None  # nothing reported
    rse_svc.set_usage(lake, root, DISK, {"source": "storage", "used": 700, "total": 1000})
    assert free() == 300  # total - used of the storage report
    rse_svc.set_usage(lake, root, DISK, {"source": "storage", "used": 700, "free": 250})
    assert free() == 250  # the storage's own figure
    rse_svc.set_usage(lake, root, DISK, {"source": "static", "total": 4000})
    assert free(source_for_total_space="static", source_for_used_space="rucio") == 3500
    assert free(source_for_used_space="storage") == 3300
