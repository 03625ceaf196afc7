"""Deletion goal: expire and delete 100,000 replicas on a local RSE: >= 5,000 files/s.

Set-up (not timed): ``--files`` small real files (``--size`` bytes) are written into
LOCAL-DISK's directory, registered in bulk (the replica service, 10,000 per call, as
POST /replicas does) and tombstoned OBSOLETE in one UPDATE. The clock then runs while the
deletion daemon (in this process, ``--batch`` replicas per claim, ``--threads`` deleting)
works until it finds nothing more to do: claim, unlink, remove rows, mark the files LOST,
write the ``deletion-done`` events. Afterwards the catalogue and the directory are checked.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

from _lake import create_pg_database, drop_pg_database, parse_args, report
from sqlalchemy import func, select, update

from fedlake.auth.policy import Caller
from fedlake.bootstrap import build_lake, ensure_root
from fedlake.catalog import deletion as core
from fedlake.catalog import rses as rse_core
from fedlake.catalog.models import Event, Replica
from fedlake.daemons.deletion import DeletionDaemon
from fedlake.domain.paths import path_hash
from fedlake.services import accounts as account_svc
from fedlake.services import replicas as replica_svc
from fedlake.services.embedded import ensure_local_rses
from fedlake.settings import Settings

GOAL = 5_000.0
SCOPE = "bench"
RSE = "LOCAL-DISK"


def _write_files(root: Path, n: int, size: int) -> list[dict[str, object]]:
    made: set[str] = set()
    rows: list[dict[str, object]] = []
    for i in range(n):
        name = f"del.{i:08d}"
        data = (name.encode() * (size // len(name) + 1))[:size]
        path = os.path.join(root, path_hash(SCOPE, name))
        directory = os.path.dirname(path)
        if directory not in made:
            os.makedirs(directory, exist_ok=True)
            made.add(directory)
        with open(path, "wb") as fh:
            fh.write(data)
        rows.append(
            {"scope": SCOPE, "name": name, "bytes": size, "adler32": f"{zlib.adler32(data):08x}"}
        )
    return rows


def _files_in(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def main() -> int:
    args = parse_args(
        __doc__ or "",
        files=(int, 100_000, "how many replicas"),
        size=(int, 100, "bytes per file"),
        batch=(int, 2000, "replicas per claim"),
        threads=(int, 16, "storage deletions at once"),
    )
    work = Path(tempfile.mkdtemp(prefix="fedlake-bench-"))
    database_url = create_pg_database(args.pg_url) if args.db == "postgresql" else ""
    lake = None
    try:
        lake = build_lake(Settings(data_dir=work, root_password="bench", database_url=database_url))
        ensure_root(lake)
        ensure_local_rses(lake)
        root = Caller("root", admin=True)
        account_svc.add_scope(lake, root, SCOPE, "root")
        disk = work / "rses" / "disk"
        t0 = time.perf_counter()
        rows = _write_files(disk, args.files, args.size)
        for i in range(0, len(rows), 10_000):
            replica_svc.add_replicas(lake, root, {"rse": RSE, "files": rows[i : i + 10_000]})
        with lake.db.write() as s:
            rse_id = rse_core.get_rse(s, RSE).id
            s.execute(
                update(Replica).where(Replica.rse_id == rse_id).values(tombstone=core.OBSOLETE)
            )
        print(
            f"set-up: {args.files} files written and registered in {time.perf_counter() - t0:.1f} s"
        )
        assert _files_in(disk) == args.files

        reaper = DeletionDaemon(lake, batch=args.batch, threads=args.threads)
        t0 = time.perf_counter()
        rounds = 0
        while reaper.run_once():
            rounds += 1
        elapsed = time.perf_counter() - t0

        with lake.db.read() as s:
            left = s.scalar(select(func.count()).where(Replica.rse_id == rse_id))
            done = s.scalar(select(func.count()).where(Event.event_type == "deletion-done"))
        on_disk = _files_in(disk)
        if left or done != args.files or on_disk:
            print(f"incomplete: {left} rows left, {done} deletion-done events, {on_disk} files")
            return 1
        ok = report(
            f"delete {args.files} obsolete replicas on {RSE} "
            f"(batches of {args.batch}, {args.threads} threads)",
            args.files / elapsed,
            "files/s",
            GOAL,
            args.db,
            extra=f"in {elapsed:.2f} s ({rounds} round(s))",
        )
        return 0 if ok else 1
    finally:
        if lake is not None:
            lake.close()
        if database_url:
            drop_pg_database(database_url)
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
