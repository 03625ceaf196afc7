"""Fixtures: every catalogue test runs on SQLite and, when configured, on PostgreSQL.

``FEDLAKE_TEST_DATABASE_URL`` (set by .ci/run) points at a PostgreSQL server; each test
session creates its own database there and drops it afterwards. With CI=true a missing
PostgreSQL is an error, never a silent skip.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.runner import runtestprotocol
from sqlalchemy import text
from starlette.testclient import TestClient

from fedlake.auth import passwords
from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake, build_lake, ensure_root
from fedlake.catalog.db import Database
from fedlake.catalog.migrate import upgrade
from fedlake.catalog.models import Base
from fedlake.server.app import create_app
from fedlake.services.embedded import ensure_local_rses
from fedlake.settings import Settings
from tests.helpers import (
    ROOT_PASSWORD,
    create_pg_database,
    drop_pg_database,
    log_in,
    pg_base_url,
)
from tests.servers import xrdhttp

BACKENDS = ["sqlite"] + (["postgresql"] if pg_base_url() else [])
#: scrypt's cost (N) for the passwords tests hash: every catalogue a test makes hashes
#: root's password and most tests log in, and at the default 2**14 that was ~10 % of the
#: suite's time. A hash names its own parameters, so verification is the same code;
#: tests/unit/auth/test_passwords.py checks the default itself.
TEST_SCRYPT_N = 2**10


@pytest.fixture(scope="session", autouse=True)
def _cheaper_password_hashing() -> Iterator[None]:
    default = passwords.SCRYPT_N
    passwords.SCRYPT_N = TEST_SCRYPT_N
    yield
    passwords.SCRYPT_N = default


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "catalog.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    base = pg_base_url()
    if base is None:
        yield None
        return
    url = create_pg_database(base)
    db = Database(url)
    upgrade(db)
    db.dispose()
    yield url
    drop_pg_database(url)


def _truncate(url: str) -> None:
    """Empty every table and restart every sequence. Only the tables that hold rows are
    emptied, children first, with DELETE: TRUNCATE makes new files for a table and its
    indexes, and doing that for all 40-odd tables was most of a PostgreSQL test's set-up."""
    db = Database(url)
    names = [t.name for t in Base.metadata.sorted_tables]
    probe = " UNION ALL ".join(
        f"SELECT '{n}' FROM (SELECT 1 FROM \"{n}\" LIMIT 1) AS x{i}" for i, n in enumerate(names)
    )
    with db.engine.begin() as conn:
        # scopes, accounts and RSEs refuse a DELETE (migration 0008): a reset may
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        used = {row[0] for row in conn.execute(text(probe))}
        for name in reversed(names):  # sorted_tables puts parents first
            if name in used:
                conn.execute(text(f'DELETE FROM "{name}"'))
        conn.execute(text("SELECT setval(c.oid, 1, false) FROM pg_class c WHERE c.relkind = 'S'"))
    db.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, pg_url: str | None
) -> str:
    """A migrated, empty catalogue on each backend."""
    if request.param == "sqlite":
        target = tmp_path / "catalog.db"
        shutil.copy(sqlite_template, target)
        return f"sqlite:///{target}"
    assert pg_url is not None
    _truncate(pg_url)
    return pg_url


@pytest.fixture
def lake(database_url: str, tmp_path: Path) -> Iterator[Lake]:
    """A lake with root (password ROOT_PASSWORD) and the four local RSEs."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        root_password=ROOT_PASSWORD,
        port=18999,
    )
    lk = build_lake(settings, migrate=True)
    ensure_root(lk)
    ensure_local_rses(lk)
    yield lk
    lk.close()


@pytest.fixture
def root() -> Caller:
    return Caller("root", admin=True)


@pytest.fixture
def api(lake: Lake) -> Iterator[TestClient]:
    """An in-process HTTP client, logged in as root (X-Rucio-Auth-Token set)."""
    with TestClient(create_app(lake), raise_server_exceptions=False) as client:
        log_in(client)
        yield client


# --- a third-party server that stops answering (see tests/servers/xrdhttp.py) ----------

#: fixtures whose server, should it stop answering, is restarted and the test run again
_REVIVABLE = {"xrdhttp_server", "xrdhttp_server2"}
#: what ``revive_stopped_servers`` found when a test failed (set while its fixtures live)
_DIAGNOSIS = pytest.StashKey[str]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.failed and _REVIVABLE & set(getattr(item, "fixturenames", ())):
        diagnosis = xrdhttp.revive_stopped_servers()
        if diagnosis:
            item.stash[_DIAGNOSIS] = diagnosis
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Run a test that uses an XrdHttp server; if it failed while a server had stopped
    answering, report that try as "rerun" with the server's diagnosis (the server was
    restarted when the failure was reported) and run the test once more. Every other
    test runs as pytest would run it."""
    if not _REVIVABLE & set(getattr(item, "fixturenames", ())):
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    reports = runtestprotocol(item, nextitem=nextitem, log=False)
    diagnosis = item.stash.get(_DIAGNOSIS, "")
    if diagnosis:
        del item.stash[_DIAGNOSIS]
        for report in reports:
            if report.failed:
                report.outcome = "rerun"  # type: ignore[assignment]
                report.sections.append(("XrdHttp server stopped answering", diagnosis))
            item.ihook.pytest_runtest_logreport(report=report)
        item._initrequest()  # type: ignore[attr-defined]
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
    for report in reports:
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    if str(report.outcome) == "rerun":
        return "rerun", "R", "RERUN"
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print why each rerun test was run again (the stopped server's diagnosis)."""
    for report in terminalreporter.stats.get("rerun", []):
        terminalreporter.write_sep("=", f"RERUN {report.nodeid}")
        for title, body in report.sections:
            if title == "XrdHttp server stopped answering":
                terminalreporter.write_line(f"{title}:\n{body}")
