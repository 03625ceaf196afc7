"""Engine set-up for SQLite (embedded default) and PostgreSQL (scale-out).

SQLite runs in WAL mode with foreign keys on. Write transactions start with
``BEGIN IMMEDIATE`` so two writers never deadlock on a lock upgrade; readers use a
plain ``BEGIN`` and never block writers.

SQLite has one writer at a time. Threads of one process that want to write queue on a
process-wide lock per database file (``write()``) instead of colliding in ``BEGIN
IMMEDIATE``: SQLite's busy handler polls by sleeping (up to 100 ms a time), so a thread
that loses the race would sleep long after the writer ahead of it has committed. Other
processes writing the same file still meet the busy handler (``busy_timeout``).

``submit_write()`` is group commit for many small, concurrent writes (one per request):
writer threads take every job waiting in a queue and run them in one transaction, so
the cost of a transaction (BEGIN, COMMIT, and on PostgreSQL the round trips and the WAL
flush) is paid once per batch instead of once per request. Each job stays
all-or-nothing: if any job of a batch fails, or the commit does, the batch is rolled back
and every job of it runs again alone, in its own transaction, and gets its own outcome.

A write transaction that fails because of another writer (PostgreSQL: a deadlock, a
serialization failure, a lock it could not get; SQLite: the file locked by another
process beyond ``busy_timeout``, or this process's writers queued beyond
``BUSY_TIMEOUT``) is rolled back and raised as ``DatabaseBusy``: nothing was written,
and the caller may send the same request again (the API answers 503, which Rucio's
clients retry by themselves).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from fedlake.domain.errors import DatabaseBusy

__all__ = ["Database", "GroupCommit", "is_sqlite"]

T = TypeVar("T")

#: seconds a writer waits for the database: SQLite's busy_timeout and the write lock
BUSY_TIMEOUT = 60
_write_locks: dict[str, threading.RLock] = {}
_write_locks_guard = threading.Lock()


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_path(url: str) -> str:
    """The file of a SQLite URL; empty for an in-memory database (``sqlite://``)."""
    if "///" not in url:
        return ""
    return url.split("///", 1)[1].split("?", 1)[0]


#: PostgreSQL's SQLSTATEs for a transaction refused because of a concurrent one
_CONFLICTS = {
    "40P01": "it deadlocked with another change",
    "40001": "it conflicted with a concurrent change (serialization failure)",
    "55P03": "a row or table it needed stayed locked by another change (lock timeout)",
}


def _busy_reason(exc: BaseException) -> str | None:
    """Why a transaction failed because of another writer, or None for any other error.

    Only for failures that end the transaction before it commits, so that nothing of it
    was written.
    """
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str) and state in _CONFLICTS:
        return _CONFLICTS[state]
    text = str(orig)
    if type(orig).__name__ == "OperationalError" and (
        "database is locked" in text or "database table is locked" in text
    ):
        return "the SQLite catalogue stayed locked by another writer beyond busy_timeout"
    return None


def _write_lock(url: str) -> threading.RLock:
    """The one lock of this process for writers of the SQLite file of ``url``.

    Keyed by the real path, so every ``Database`` of the process on that file shares it.
    Re-entrant: a nested ``write()`` in the same thread is not a new deadlock here (SQLite
    refuses it after ``busy_timeout``, as without the lock).
    """
    path = _sqlite_path(url)
    if not path or path == ":memory:":  # no file to share (and no pool for it anyway)
        return threading.RLock()
    key = os.path.realpath(path)
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.RLock())


def _sqlite_engine(url: str, begin: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT},
        pool_size=8,
        max_overflow=16,
        pool_pre_ping=False,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT * 1000}")
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # straight to the driver: SQLAlchemy's statement machinery cost more than BEGIN
        conn.connection.driver_connection.execute(begin)

    return engine


class _Job(Generic[T]):
    __slots__ = ("future", "order", "run")

    def __init__(self, run: Callable[[Session], T], order: tuple[str, ...]) -> None:
        self.run = run
        self.order = order
        self.future: Future[T] = Future()


class GroupCommit:
    """Writer threads that run queued write jobs in shared transactions (see module doc).

    A job is ``fn(session) -> result``. It may run twice (first in a batch that is rolled
    back), so it must act only through the session, must not open a transaction of its
    own and must not wait for other jobs. A batch runs its jobs sorted by their ``order``
    key (the rows they lock, e.g. the DID), so that batches of concurrent writers lock rows
    in one order and cannot deadlock each other on PostgreSQL. The threads start with the
    first job; ``close()`` lets them finish the queued jobs and stop (a later job starts
    new ones).
    """

    def __init__(self, db: Database, writers: int, max_batch: int = 64) -> None:
        self.db = db
        self.writers = writers
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job[Any] | None] | None = None
        self._threads: list[threading.Thread] = []
        self._pid = 0  # the process the threads run in (a forked child has none)
        self._guard = threading.Lock()

    def submit(self, fn: Callable[[Session], T], order: tuple[str, ...] = ()) -> Future[T]:
        job = _Job(fn, order)
        with self._guard:
            if self._queue is None or self._pid != os.getpid():
                self._queue, self._threads, self._pid = queue.SimpleQueue(), [], os.getpid()
                for i in range(self.writers):
                    t = threading.Thread(
                        target=self._work, args=(self._queue,), name=f"fedlake-writer-{i}"
                    )
                    t.daemon = True
                    t.start()
                    self._threads.append(t)
            self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Finish the jobs already queued, then stop the writer threads."""
        with self._guard:
            jobs, threads = self._queue, self._threads
            self._queue, self._threads = None, []
            for _ in threads:
                assert jobs is not None
                jobs.put(None)
        for t in threads:
            t.join(timeout=BUSY_TIMEOUT)

    def _work(self, jobs: queue.SimpleQueue[_Job[Any] | None]) -> None:
        while True:
            first = jobs.get()
            if first is None:
                return
            batch: list[_Job[Any]] = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            live = [j for j in batch if j.future.set_running_or_notify_cancel()]
            live.sort(key=lambda j: j.order)  # stable: equal keys keep their arrival order
            if len(live) < 2 or not self._run_together(live):
                for job in live:
                    self._run_alone(job)
            if stop:
                return

    def _run_together(self, batch: list[_Job[Any]]) -> bool:
        """Run a batch in one transaction; False if a job or the commit failed (then all
        is rolled back and the caller runs each job alone).

        If the transaction cannot even begin (the database is locked or down), every job
        gets that error at once: running them one by one would only wait again per job.
        """
        began = False
        try:
            with self.db.write() as session:
                session.connection()  # BEGIN now
                began = True
                results = [job.run(session) for job in batch]
        except BaseException as exc:  # noqa: BLE001 - handed on or retried job by job
            if began:
                return False
            for job in batch:
                job.future.set_exception(exc)
            return True
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(result)
        return True

    def _run_alone(self, job: _Job[Any]) -> None:
        try:
            with self.db.write() as session:
                result = job.run(session)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever submitted the job
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)


class Database:
    """Owns the engines. ``write()`` and ``read()`` yield a Session in one transaction."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        self._write_lock: threading.RLock | None = None
        if self.sqlite:
            path = _sqlite_path(url)
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(url, "BEGIN IMMEDIATE")
            self.read_engine = _sqlite_engine(url, "BEGIN")
            self._write_lock = _write_lock(url)
        else:
            self.engine = create_engine(
                url, pool_size=10, max_overflow=20, pool_pre_ping=True, echo=echo
            )
            self.read_engine = self.engine
        # SQLite has one writer anyway; on PostgreSQL a second writer keeps metadata writes
        # going while one waits for a row lock (ordered batches cannot deadlock)
        self.group_commit = GroupCommit(self, writers=1 if self.sqlite else 2)

    def submit_write(self, fn: Callable[[Session], T], order: tuple[str, ...] = ()) -> Future[T]:
        """Run ``fn(session)`` in a write transaction shared with other small writes.

        Returns at once; the future gets ``fn``'s result once committed, or its error.
        ``order`` names what the job locks (see ``GroupCommit``).
        """
        return self.group_commit.submit(fn, order)

    @contextlib.contextmanager
    def _writer(self) -> Iterator[None]:
        """On SQLite, wait in line for this process's turn to write (see module docstring)."""
        lock = self._write_lock
        if lock is None:
            yield
            return
        if not lock.acquire(timeout=BUSY_TIMEOUT):
            raise DatabaseBusy(
                f"the catalogue was busy with other writes for {BUSY_TIMEOUT} s; nothing "
                "was changed: retry, or move the lake to PostgreSQL for more concurrent "
                "writers"
            )
        try:
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A read-write transaction: committed on success, rolled back on any error.

        On SQLite the process-wide write lock is held from before ``BEGIN IMMEDIATE``
        until after ``COMMIT``/``ROLLBACK``. A failure caused by another writer is raised
        as ``DatabaseBusy`` (see the module docstring).
        """
        with (
            self._writer(),
            Session(self.engine, expire_on_commit=False, autoflush=False) as session,
        ):
            try:
                yield session
                session.commit()
            except BaseException as exc:
                session.rollback()
                reason = _busy_reason(exc)
                if reason is None:
                    raise
                raise DatabaseBusy(
                    f"the change was refused because {reason}; nothing was changed: send it again"
                ) from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction; closing ends it and keeps loaded objects usable."""
        with Session(self.read_engine, expire_on_commit=False, autoflush=False) as session:
            yield session

    def dispose(self) -> None:
        self.group_commit.close()
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()
