"""The catalogue's write paths: SQLite's process-wide write lock and group commit."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from fedlake.catalog import db as db_module
from fedlake.catalog.db import Database, GroupCommit
from fedlake.catalog.models import Account
from fedlake.domain.errors import DatabaseBusy

# --- SQLite: writers of one process queue on a lock -----------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    target = tmp_path / "catalog.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


def _no_busy_wait(db: Database) -> None:
    """Make SQLite fail at once ("database is locked") instead of waiting for a writer."""

    @event.listens_for(db.engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=0")


def _accounts(db: Database, prefix: str = "") -> set[str]:
    with db.read() as s:
        rows = s.scalars(select(Account.account).where(Account.account.like(f"{prefix}%")))
        return set(rows)


def _add_account(s: Session, name: str) -> None:
    s.add(Account(account=name, account_type="USER", status="ACTIVE"))
    s.flush()


def test_concurrent_sqlite_writers_never_meet_the_busy_handler(sqlite_url: str) -> None:
    """16 threads on two Database objects of one file; SQLite may not wait at all
    (busy_timeout=0), so any collision in BEGIN IMMEDIATE would be an error."""
    dbs = [Database(sqlite_url), Database(sqlite_url)]
    for db in dbs:
        _no_busy_wait(db)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        db = dbs[n % 2]
        try:
            for i in range(25):
                with db.write() as s:
                    s.execute(select(func.count()).select_from(Account)).scalar_one()
                    _add_account(s, f"w{n:02d}-{i:02d}")
                    time.sleep(0.0005)  # hold the write transaction a little
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert len(_accounts(dbs[0], "w")) == 16 * 25
    finally:
        for db in dbs:
            db.dispose()


def test_one_lock_per_file(tmp_path: Path, sqlite_url: str) -> None:
    a, b = Database(sqlite_url), Database(sqlite_url.replace("catalog.db", "./catalog.db"))
    other = Database(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        assert a._write_lock is not None
        assert a._write_lock is b._write_lock
        assert other._write_lock is not a._write_lock
    finally:
        for db in (a, b, other):
            db.dispose()


def test_waiting_for_the_lock_times_out_with_a_clear_error(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT", 0.2)
    db = Database(sqlite_url)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.write() as s:
            _add_account(s, "holder")
            holding.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(10)
        t0 = time.monotonic()
        with (
            pytest.raises(DatabaseBusy, match=r"busy with other writes for 0\.2 s"),
            db.write() as s,
        ):
            _add_account(s, "waiter")
        assert 0.15 < time.monotonic() - t0 < 5
    finally:
        release.set()
        t.join()
    assert _accounts(db) >= {"holder"}
    assert "waiter" not in _accounts(db)
    db.dispose()


def test_nested_write_in_one_thread_does_not_hang_on_the_lock(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock is re-entrant: a nested write meets SQLite's own refusal, as without it."""
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT", 0.2)
    db = Database(sqlite_url)
    try:
        with db.write() as outer:
            _add_account(outer, "outer")
            with (
                pytest.raises(DatabaseBusy, match="stayed locked by another writer") as err,
                db.write() as inner,
            ):
                _add_account(inner, "inner")
            assert "database is locked" in str(err.value.__cause__)  # SQLite's own refusal
    finally:
        db.dispose()


def test_another_process_holding_the_file_is_busy_and_keeps_nothing(sqlite_url: str) -> None:
    """Another process's writer (a plain sqlite3 connection) holds the file beyond
    busy_timeout: the write is refused as DatabaseBusy (503), with nothing of it kept;
    sent again once the file is free, it goes through."""
    db = Database(sqlite_url)
    _no_busy_wait(db)
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseBusy, match="nothing was changed") as err, db.write() as s:
            _add_account(s, "refused")
        assert err.value.status == 503
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert "refused" not in _accounts(db)
    with db.write() as s:
        _add_account(s, "refused")
    assert "refused" in _accounts(db)
    db.dispose()


def test_a_postgresql_deadlock_is_busy_for_one_writer_and_keeps_none_of_its_changes(
    pg_url: str | None,
) -> None:
    """Two writers take two rows in opposite orders: PostgreSQL aborts one (40P01). That one
    gets DatabaseBusy and none of its changes stay; the other commits all of its own."""
    if pg_url is None:
        pytest.skip("no PostgreSQL (FEDLAKE_TEST_DATABASE_URL); CI always has one")
    db = Database(pg_url)
    left, right = f"left{uuid.uuid4().hex[:8]}", f"right{uuid.uuid4().hex[:8]}"
    with db.write() as s:
        _add_account(s, left)
        _add_account(s, right)
    first = {"a": threading.Event(), "b": threading.Event()}
    outcome: dict[str, BaseException | None] = {}

    def writer(me: str, rows: tuple[str, str], other: str) -> None:
        try:
            with db.write() as s:
                s.execute(update(Account).where(Account.account == rows[0]).values(email=me))
                first[me].set()
                assert first[other].wait(10)
                s.execute(update(Account).where(Account.account == rows[1]).values(email=me))
            outcome[me] = None
        except BaseException as exc:
            outcome[me] = exc

    threads = [
        threading.Thread(target=writer, args=("a", (left, right), "b")),
        threading.Thread(target=writer, args=("b", (right, left), "a")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [me for me, exc in outcome.items() if exc is None]
    losers = [exc for exc in outcome.values() if exc is not None]
    assert len(winners) == 1 and len(losers) == 1, outcome
    assert isinstance(losers[0], DatabaseBusy), repr(losers[0])
    assert "deadlocked with another change" in str(losers[0])
    assert "nothing was changed" in str(losers[0])
    with db.read() as s:
        rows = s.execute(
            select(Account.account, Account.email).where(Account.account.in_([left, right]))
        )
        emails = {account: email for account, email in rows}
    assert emails == {left: winners[0], right: winners[0]}
    db.dispose()


# --- group commit ------------------------------------------------------------------------


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


class Gate:
    """A first job that keeps the (single) writer busy until released, so that the jobs
    submitted meanwhile are queued and then run as one batch."""

    def __init__(self, group: GroupCommit) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.future = group.submit(self._job)
        assert self.entered.wait(10)

    def _job(self, s: Session) -> None:
        self.entered.set()
        assert self.release.wait(10)

    def open(self) -> None:
        self.release.set()
        self.future.result(10)


def _results(futures: list[Future[Any]]) -> list[Any]:
    return [f.result(30) for f in futures]


def test_queued_jobs_share_one_transaction(database: Database) -> None:
    group = GroupCommit(database, writers=1)
    sessions: list[int] = []

    def job(name: str) -> Callable[[Session], str]:
        def run(s: Session) -> str:
            sessions.append(id(s))
            _add_account(s, name)
            return name

        return run

    gate = Gate(group)
    futures = [group.submit(job(f"g{i:02d}")) for i in range(10)]
    gate.open()
    assert _results(futures) == [f"g{i:02d}" for i in range(10)]
    group.close()
    assert len(set(sessions)) == 1  # one batch, one transaction
    assert _accounts(database, "g") == {f"g{i:02d}" for i in range(10)}


def test_a_failing_job_fails_alone_and_leaves_nothing(database: Database) -> None:
    group = GroupCommit(database, writers=1)
    runs: dict[str, int] = {}

    def job(name: str, fail: bool = False) -> Callable[[Session], str]:
        def run(s: Session) -> str:
            runs[name] = runs.get(name, 0) + 1
            _add_account(s, name)  # written before the failure: must be rolled back
            if fail:
                raise ValueError(f"{name} is bad")
            return name

        return run

    gate = Gate(group)
    names = ["f1", "f2", "f3", "f4", "f5"]
    futures = [group.submit(job(n, fail=n == "f3")) for n in names]
    gate.open()
    for name, fut in zip(names, futures, strict=True):
        if name == "f3":
            with pytest.raises(ValueError, match="f3 is bad"):
                fut.result(30)
        else:
            assert fut.result(30) == name
    group.close()
    assert _accounts(database, "f") == {"f1", "f2", "f4", "f5"}
    # the batch was rolled back and each job ran again alone (f1, f2 before f3 ran twice)
    assert runs["f1"] == runs["f2"] == runs["f3"] == 2
    assert runs["f4"] == runs["f5"] == 1


def test_jobs_of_a_batch_run_in_lock_order(database: Database) -> None:
    group = GroupCommit(database, writers=1)
    seen: list[str] = []
    gate = Gate(group)
    keys = [("user.z", "b"), ("user.a", "z"), ("user.z", "a"), ("user.a", "z"), ("user.m", "q")]
    futures = [
        group.submit(lambda s, k=k, i=i: seen.append(f"{k[0]}:{k[1]}#{i}"), order=k)
        for i, k in enumerate(keys)
    ]
    gate.open()
    _results(futures)
    group.close()
    # sorted by key; the two jobs on the same key keep their arrival order
    assert seen == ["user.a:z#1", "user.a:z#3", "user.m:q#4", "user.z:a#2", "user.z:b#0"]


def test_a_cancelled_job_does_not_run(database: Database) -> None:
    group = GroupCommit(database, writers=1)
    gate = Gate(group)
    cancelled = group.submit(lambda s: _add_account(s, "c-cancelled"))
    kept = group.submit(lambda s: _add_account(s, "c-kept"))
    assert cancelled.cancel()
    gate.open()
    kept.result(30)
    with pytest.raises(CancelledError):
        cancelled.result(0)
    group.close()
    assert _accounts(database, "c-") == {"c-kept"}


def test_close_finishes_queued_jobs_and_a_later_job_starts_again(database: Database) -> None:
    group = GroupCommit(database, writers=2)
    gate = Gate(group)
    futures = [group.submit(lambda s, i=i: _add_account(s, f"q{i}")) for i in range(5)]
    threads = list(group._threads)
    gate.release.set()
    group.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert not any(t.is_alive() for t in threads)
    group.submit(lambda s: _add_account(s, "q-after")).result(30)
    group.close()
    assert _accounts(database, "q") == {"q0", "q1", "q2", "q3", "q4", "q-after"}


def test_dispose_stops_the_writers(database_url: str) -> None:
    db = Database(database_url)
    db.submit_write(lambda s: _add_account(s, "d1")).result(30)
    threads = list(db.group_commit._threads)
    assert threads and all(t.is_alive() for t in threads)
    db.dispose()
    assert not any(t.is_alive() for t in threads)


def test_many_threads_submitting(database: Database) -> None:
    def submitter(n: int) -> list[Future[None]]:
        return [
            database.submit_write(lambda s, i=i: _add_account(s, f"m{n}-{i:03d}"), order=(str(i),))
            for i in range(60)
        ]

    out: list[list[Future[None]]] = []
    threads = [threading.Thread(target=lambda n=n: out.append(submitter(n))) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for futures in out:
        _results(futures)
    assert len(_accounts(database, "m")) == 8 * 60


def test_a_batch_that_cannot_begin_fails_as_a_whole(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another writer holds SQLite, queued jobs get the error batch by batch, not
    after one wait per job."""
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT", 0.3)
    db = Database(sqlite_url)
    group = GroupCommit(db, writers=1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.write():
            holding.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    ran: list[int] = []
    try:
        assert holding.wait(10)
        t0 = time.monotonic()
        futures = [group.submit(lambda s, i=i: ran.append(i)) for i in range(8)]
        for f in futures:
            with pytest.raises(DatabaseBusy, match="busy with other writes"):
                f.result(10)
        # the first job may be taken alone; the others wait once, together
        assert time.monotonic() - t0 < 4 * 0.3
    finally:
        release.set()
        t.join()
        group.close()
        db.dispose()
    assert ran == []
