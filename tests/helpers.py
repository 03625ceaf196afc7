"""Shared test helpers: free ports, a live ``fedlake up`` process, PostgreSQL databases."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from starlette.testclient import TestClient

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from fedlake.bootstrap import Lake

ROOT_PASSWORD = "test-root-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_base_url() -> str | None:
    """URL of the test PostgreSQL server, or None. In CI its absence is a failure."""
    url = os.environ.get("FEDLAKE_TEST_DATABASE_URL")
    if not url and os.environ.get("CI") == "true":
        raise RuntimeError(
            "CI=true but FEDLAKE_TEST_DATABASE_URL is not set: PostgreSQL is required"
        )
    return url or None


def create_pg_database(base_url: str) -> str:
    """Create a fresh database on the server of ``base_url``; return its URL."""
    import psycopg

    name = f"fedlake_test_{uuid.uuid4().hex[:12]}"
    admin = base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    head, _, _ = base_url.rpartition("/")
    return f"{head}/{name}"


def drop_pg_database(url: str) -> None:
    import psycopg

    head, _, name = url.rpartition("/")
    admin = f"{head}/postgres".replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class LiveLake:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path
    database_url: str

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_lake(
    data_dir: Path,
    database_url: str | None = None,
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> LiveLake:
    """Start ``fedlake up`` as a real process and wait until /ping answers."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLAKE_")}
    env["FEDLAKE_ROOT_PASSWORD"] = ROOT_PASSWORD
    if database_url:
        env["FEDLAKE_DATABASE_URL"] = database_url
    env.update(extra_env or {})
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"fedlake-up-{port}.log"
    with open(log, "ab") as fh:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedlake.cli",
                "up",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fedlake up exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                live = LiveLake(url, data_dir, proc, log, database_url or "")
                _check_catalogue(live)
                return live
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"fedlake up did not answer within 60 s:\n{log.read_text()}")


def _check_catalogue(live: LiveLake) -> None:
    """The lake must run on the database the test asked for (PostgreSQL runs are real)."""
    want = live.database_url or "sqlite:///"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = "".join(live.log.read_text(errors="replace").split())  # rich wraps lines
        if "catalogue:" in text:
            if want not in text:
                live.stop()
                raise RuntimeError(f"the lake does not run on {want}:\n{live.log.read_text()}")
            return
        time.sleep(0.1)
    live.stop()
    raise RuntimeError(f"cannot tell which catalogue the lake uses:\n{live.log.read_text()}")


@contextlib.contextmanager
def running_lake(data_dir: Path, database_url: str | None = None) -> Iterator[LiveLake]:
    live = start_lake(data_dir, database_url)
    try:
        yield live
    finally:
        live.stop()


@contextlib.contextmanager
def lake_on(backend: str, data_dir: Path) -> Iterator[LiveLake]:
    """A live ``fedlake up`` on ``backend``: "sqlite", or "postgresql" (a throw-away
    database on the test server, dropped afterwards)."""
    db_url = None
    if backend == "postgresql":
        base = pg_base_url()
        assert base is not None
        db_url = create_pg_database(base)
    try:
        with running_lake(data_dir, db_url) as live:
            yield live
    finally:
        if db_url:
            drop_pg_database(db_url)


# --- API responses (in-process TestClient) --------------------------------------------

JSON = "application/json"
STREAM = "application/x-json-stream"


def log_in(client: httpx.Client, username: str = "root", password: str = ROOT_PASSWORD) -> None:
    """Log ``client`` (an httpx or Starlette test client) in with a password: every later
    request carries the token (``X-Rucio-Auth-Token``)."""
    r = client.get(
        "/auth/userpass", headers={"X-Rucio-Username": username, "X-Rucio-Password": password}
    )
    assert r.status_code == 200, r.text
    client.headers["X-Rucio-Auth-Token"] = r.headers["X-Rucio-Auth-Token"]


def ndjson(r: httpx.Response) -> list[Any]:
    """A 200 NDJSON listing, parsed."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == STREAM
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def one(r: httpx.Response) -> Any:
    """A 200 JSON answer, parsed."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == JSON
    return r.json()


def assert_error(r: httpx.Response, status: int, cls: str | None = None) -> str:
    """The Rucio error format: headers and a JSON body naming the same class; the message."""
    assert r.status_code == status, r.text
    assert r.headers["ExceptionClass"]
    assert r.headers["ExceptionMessage"]
    body = json.loads(r.content)
    assert body["ExceptionClass"] == r.headers["ExceptionClass"]
    if cls is not None:
        assert body["ExceptionClass"] == cls
    assert body["ExceptionMessage"]
    return str(body["ExceptionMessage"])


def post(api: TestClient, url: str, body: Any = None, **kw: Any) -> httpx.Response:
    """POST a JSON body the way the rucio client does: as text, without Content-Type."""
    return api.post(url, content=b"" if body is None else json.dumps(body), **kw)


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


def race(
    lake: Lake,
    first: Callable[[Session], None],
    second: Callable[[Session], None],
    what: str,
) -> list[BaseException]:
    """``first`` in a transaction held open while ``second`` starts in another: checks
    that ``second`` waits for it, lets ``first`` commit, and returns ``second``'s errors."""
    done_first = threading.Event()
    go_on = threading.Event()

    def first_and_hold() -> None:
        with lake.db.write() as s:
            first(s)
            done_first.set()
            assert go_on.wait(30)

    def run_second() -> None:
        with lake.db.write() as s:
            second(s)

    holder, holder_errors = _in_thread(first_and_hold)
    assert done_first.wait(30)
    waiter, errors = _in_thread(run_second)
    waiter.join(0.5)
    assert waiter.is_alive(), f"the {what} did not wait for the transaction holding its rows"
    go_on.set()
    holder.join(30)
    waiter.join(30)
    assert holder_errors == []
    assert not waiter.is_alive()
    return errors
