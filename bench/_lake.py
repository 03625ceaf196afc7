"""Shared benchmark plumbing: a real ``fedlake up`` process, a token, RSS, reporting.

Copied (not imported) from tests/helpers.py so the benchmarks do not depend on the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from fedlake.domain.paths import path_hash

ROOT_PASSWORD = "bench-root-password"
PG_BASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SCOPE = "user.root"
RSE = "LOCAL-DISK"


def parse_args(description: str, **extra: tuple[type, object, str]) -> argparse.Namespace:
    """``--db sqlite|postgresql`` plus script-specific ``--name`` options (type, default, help)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument(
        "--pg-url",
        default=os.environ.get("FEDLAKE_BENCH_PG_URL", PG_BASE_URL),
        help="PostgreSQL server; a throw-away database is created on it",
    )
    p.add_argument("--keep", action="store_true", help="keep the data directory afterwards")
    for name, (kind, default, text) in extra.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=text)
    return p.parse_args()


def drop_caches() -> bool:
    """Flush dirty pages and drop the page cache; False when not permitted."""
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    """Wait until ``proc`` (``what``) listens on ``port``; exit when it dies or takes 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not come up on port {port}")


def create_pg_database(base_url: str) -> str:
    """Create a fresh database on the server of ``base_url``; return its URL."""
    import psycopg

    name = f"fedlake_bench_{uuid.uuid4().hex[:12]}"
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


def psycopg_url(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://")


@dataclass
class Lake:
    url: str
    work: Path  # scratch directory (data dir and any bench files live below it)
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path
    db: str  # "sqlite" or "postgresql"
    database_url: str
    token: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Rucio-Auth-Token": self.token}

    def http(self, timeout: float = 600) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def login(self) -> str:
        r = httpx.get(
            f"{self.url}/auth/userpass",
            timeout=30,
            headers={
                "X-Rucio-Username": "root",
                "X-Rucio-Password": ROOT_PASSWORD,
                "X-Rucio-Account": "root",
            },
        )
        r.raise_for_status()
        self.token = r.headers["X-Rucio-Auth-Token"]
        return self.token

    def client_env(self) -> dict[str, str]:
        """Environment for ``python -m fedlake.cli`` talking to this lake as root."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLAKE_")}
        env.update(
            FEDLAKE_URL=self.url,
            FEDLAKE_USERNAME="root",
            FEDLAKE_PASSWORD=ROOT_PASSWORD,
            FEDLAKE_ACCOUNT="root",
            FEDLAKE_DATA_DIR=str(self.work / "client-home"),
        )
        return env

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def _start(
    work: Path, db: str, database_url: str | None, extra_env: dict[str, str] | None = None
) -> Lake:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLAKE_")}
    env.update(extra_env or {})
    env["FEDLAKE_ROOT_PASSWORD"] = ROOT_PASSWORD
    data_dir = work / "lake"
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "fedlake.cli", "up", "--port", str(port)]
    if database_url:
        # `fedlake up --data-dir` drops FEDLAKE_DATABASE_URL (Settings.replace resets it),
        # so with PostgreSQL the data directory is given through the environment instead.
        env["FEDLAKE_DATABASE_URL"] = database_url
        env["FEDLAKE_DATA_DIR"] = str(data_dir)
    else:
        cmd += ["--data-dir", str(data_dir)]
    log = work / "fedlake-up.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fedlake up exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                lake = Lake(url, work, data_dir, proc, log, db, database_url or "")
                _check_catalogue(lake)
                lake.login()
                return lake
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"fedlake up did not answer within 90 s:\n{log.read_text()}")


def _check_catalogue(lake: Lake) -> None:
    """Refuse to measure a lake that does not run on the database asked for."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = "".join(lake.log.read_text(errors="replace").split())  # rich wraps long lines
        if "catalogue" in text:
            want = lake.database_url if lake.db == "postgresql" else "sqlite:///"
            if want not in text:
                lake.stop()
                raise RuntimeError(f"the lake does not run on {want}:\n{lake.log.read_text()}")
            return
        time.sleep(0.1)
    raise RuntimeError(f"cannot tell which catalogue the lake uses:\n{lake.log.read_text()}")


@contextlib.contextmanager
def running_lake(args: argparse.Namespace, env: dict[str, str] | None = None) -> Iterator[Lake]:
    """Start a lake on a fresh scratch directory (and a fresh PostgreSQL database);
    ``env``: extra environment variables of the lake (settings)."""
    work = Path(tempfile.mkdtemp(prefix="fedlake-bench-"))
    database_url = create_pg_database(args.pg_url) if args.db == "postgresql" else None
    lake = None
    try:
        lake = _start(work, args.db, database_url, env)
        yield lake
    finally:
        if lake is not None:
            lake.stop()
        if database_url:
            drop_pg_database(database_url)
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS from /proc), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def report(
    what: str,
    value: float,
    unit: str,
    goal: float,
    db: str,
    *,
    higher_is_better: bool = True,
    extra: str = "",
) -> bool:
    """Print ``what: value unit (goal >= goal unit) [db] OK|MISSED``; return whether met."""
    ok = value >= goal if higher_is_better else value < goal
    op = ">=" if higher_is_better else "<"
    places = 0 if max(abs(value), abs(goal)) >= 100 else 2

    def fmt(v: float) -> str:
        return f"{v:,.{places}f}"

    line = f"{what}: {fmt(value)} {unit} (goal {op} {fmt(goal)} {unit}) [{db}]"
    if extra:
        line += f" {extra}"
    print(f"{line} {'OK' if ok else 'MISSED'}", flush=True)
    return ok


def file_rows(prefix: str, n: int, start: int = 0) -> list[dict[str, object]]:
    """``n`` distinct file records for POST /replicas (fake but well-formed checksums)."""
    return [
        {
            "scope": SCOPE,
            "name": f"{prefix}.{i:08d}",
            "bytes": 1000 + i,
            "adler32": f"{(i * 2654435761) & 0xFFFFFFFF:08x}",
        }
        for i in range(start, start + n)
    ]


def register(lake: Lake, prefix: str, n: int, batch: int = 10_000) -> list[dict[str, object]]:
    """Register ``n`` files on LOCAL-DISK (setup for other benchmarks); returns the records."""
    rows = file_rows(prefix, n)
    with lake.http() as h:
        for i in range(0, n, batch):
            r = h.post("/replicas", json={"rse": RSE, "files": rows[i : i + batch]})
            r.raise_for_status()
    return rows


def put_small_files(lake: Lake, prefix: str, n: int, size: int) -> list[dict[str, object]]:
    """Write ``n`` random files of ``size`` bytes into LOCAL-DISK's directory and register
    them there (setup, not timed); returns the records."""
    disk = lake.data_dir / "rses" / "disk"
    rows: list[dict[str, object]] = []
    for i in range(n):
        name = f"{prefix}.{i:08d}"
        data = os.urandom(size)
        path = disk / path_hash(SCOPE, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append(
            {"scope": SCOPE, "name": name, "bytes": size, "adler32": f"{zlib.adler32(data):08x}"}
        )
    with lake.http() as h:
        for i in range(0, n, 10_000):
            h.post("/replicas", json={"rse": RSE, "files": rows[i : i + 10_000]}).raise_for_status()
    return rows
