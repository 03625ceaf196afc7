"""Transfers goal: one big file (4 GiB, ``--size`` MiB) POSIX->POSIX through the engine with
adler32 verification, at >= 80% of the throughput of ``cp SRC DST && sync`` of the same file.

The engine runs in this process: a lake built with ``build_lake`` (as the tests do) and a
``TransferWorker`` configured as ``fedlake daemon transfers`` configures it. The file is
written into LOCAL-DISK and registered with its adler32 only (no md5, so the engine
computes adler32 alone, as Rucio-style catalogues usually ask). The clock starts when the
request is queued and stops when the request is DONE (polled every 20 ms).

Fairness: the POSIX plugin does not fsync by default, so "DONE" may mean "in the page cache"
while ``cp && sync`` waits for the disk. Three engine figures are printed:

1. the default destination (LOCAL-SAFE, no fsync), queued -> DONE;
2. the same plus a ``sync`` afterwards (the same durability as cp + sync);
3. a destination with the plugin's ``fsync`` option on, queued -> DONE (durable at DONE).

The exit status follows (3), the like-for-like comparison. The page cache is dropped
(``sync; echo 3 > /proc/sys/vm/drop_caches``) before each copy when permitted (root), so
every copy reads its source from the disk; the output says whether it was.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from _lake import (
    ROOT_PASSWORD,
    SCOPE,
    create_pg_database,
    drop_caches,
    drop_pg_database,
    parse_args,
)

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake, build_lake, ensure_root
from fedlake.catalog import rses as rse_core
from fedlake.daemons.transfers import worker_config
from fedlake.domain.paths import path_hash
from fedlake.services import replicas as replica_svc
from fedlake.services import transfers as svc
from fedlake.services.embedded import ensure_local_rses
from fedlake.settings import Settings
from fedlake.storage.registry import OPTIONS_KEY
from fedlake.transfers.worker import TransferWorker

GOAL = 0.80
BLOCK = 64 * 1024 * 1024
ROOT = Caller("root", admin=True)
FSYNC_RSE = "BENCH-FSYNC"


def make_file(path: Path, size: int) -> str:
    """``size`` bytes of incompressible data (a random 64 MiB block repeated); its adler32."""
    block = os.urandom(min(BLOCK, size))
    adler = 1
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = block[: min(left, len(block))]
            fh.write(chunk)
            adler = zlib.adler32(chunk, adler)
            left -= len(chunk)
    return f"{adler:08x}"


def register(lake: Lake, name: str, size: int, adler: str) -> None:
    """Catalogue a file written into LOCAL-DISK (adler32 only, no md5)."""
    files = [{"scope": SCOPE, "name": name, "bytes": size, "adler32": adler}]
    replica_svc.add_replicas(lake, ROOT, {"rse": "LOCAL-DISK", "files": files})


def add_fsync_rse(lake: Lake, directory: Path) -> None:
    """A POSIX RSE like LOCAL-SAFE whose plugin fsyncs every file and its directory."""
    directory.mkdir(parents=True, exist_ok=True)
    with lake.db.write() as s:
        row = rse_core.add_rse(s, FSYNC_RSE, deterministic=True, lfn2pfn_algorithm="hash")
        rse_core.add_protocol(
            s,
            row,
            {
                "scheme": "file",
                "hostname": "localhost",
                "port": 0,
                "prefix": str(directory),
                "impl": "rucio.rse.protocols.posix.Default",
                "extended_attributes": {OPTIONS_KEY: {"fsync": True}},
                "domains": {"wan": {"read": 1, "write": 1, "delete": 1}},
            },
        )


def engine_copy(lake: Lake, name: str, rse: str) -> float:
    """Queue one copy and wait for DONE; seconds from queueing to DONE."""
    t0 = time.perf_counter()
    body = {
        "dids": [{"scope": SCOPE, "name": name}],
        "rse": rse,
        "source_rse_expression": "LOCAL-DISK",  # not an earlier copy (deleted meanwhile)
    }
    [rid] = svc.submit(lake, ROOT, body)
    while True:
        req = svc.get_request(lake, ROOT, rid)
        if req["state"] not in ("QUEUED", "SUBMITTED", "WAITING"):
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    if req["state"] != "DONE":
        raise RuntimeError(f"the transfer ended {req['state']}: {req['attempts']}")
    return elapsed


def line(what: str, mbps: float, cp_mbps: float, db: str, extra: str = "") -> bool:
    ratio = mbps / cp_mbps
    ok = ratio >= GOAL
    print(
        f"{what}: {mbps:,.0f} MB/s = {ratio:.0%} of cp+sync (goal >= {GOAL:.0%}) [{db}]"
        f"{' ' + extra if extra else ''} {'OK' if ok else 'MISSED'}",
        flush=True,
    )
    return ok


def main() -> int:
    args = parse_args(
        __doc__ or "",
        size=(int, 4096, "file size in MiB"),
        runs=(int, 3, "rounds of the three copies (medians are reported)"),
    )
    size = args.size * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="fedlake-bench-"))
    database_url = create_pg_database(args.pg_url) if args.db == "postgresql" else ""
    lake = None
    worker = None
    try:
        settings = Settings(
            data_dir=work / "lake", database_url=database_url, root_password=ROOT_PASSWORD
        )
        lake = build_lake(settings, migrate=True)
        ensure_root(lake)
        ensure_local_rses(lake)
        rses = Path(settings.data_dir).resolve() / "rses"
        add_fsync_rse(lake, rses / "fsync")
        name = "big.file"
        src = rses / "disk" / path_hash(SCOPE, name)
        t0 = time.perf_counter()
        adler = make_file(src, size)
        print(f"wrote a {args.size} MiB source in {time.perf_counter() - t0:.1f} s", flush=True)
        register(lake, name, size, adler)
        mb = size / 1e6

        dropped = drop_caches()
        print(
            "page cache dropped before each copy"
            if dropped
            else "page cache NOT dropped (not permitted): sources may be read from memory",
            flush=True,
        )
        worker = TransferWorker(lake.db, worker_config(lake))
        worker.start()
        # warm-up (not timed): first claims, plugin instances, statement caches
        warm = rses / "disk" / path_hash(SCOPE, "warm.file")
        register(lake, "warm.file", 1024, make_file(warm, 1024))
        for rse in ("LOCAL-SAFE", FSYNC_RSE):
            engine_copy(lake, "warm.file", rse)

        secs: dict[str, list[float]] = {"cp": [], "done": [], "done+sync": [], "fsync": []}
        for i in range(args.runs):
            # cp + sync
            cp_dst = rses / "safe" / "cp.copy"
            drop_caches()
            t0 = time.perf_counter()
            subprocess.run(["cp", str(src), str(cp_dst)], check=True)
            subprocess.run(["sync"], check=True)
            secs["cp"].append(time.perf_counter() - t0)
            assert cp_dst.stat().st_size == size
            cp_dst.unlink()
            # the engine, default destination (no fsync); then a sync
            drop_caches()
            done_s = engine_copy(lake, name, "LOCAL-SAFE")
            t0 = time.perf_counter()
            subprocess.run(["sync"], check=True)
            secs["done"].append(done_s)
            secs["done+sync"].append(done_s + time.perf_counter() - t0)
            dst = rses / "safe" / path_hash(SCOPE, name)
            assert dst.stat().st_size == size
            dst.unlink()
            # the engine, destination with the fsync option
            drop_caches()
            secs["fsync"].append(engine_copy(lake, name, FSYNC_RSE))
            dst = rses / "fsync" / path_hash(SCOPE, name)
            assert dst.stat().st_size == size
            dst.unlink()
            print(
                f"run {i + 1}: "
                + ", ".join(f"{k} {mb / v[-1]:,.0f} MB/s ({v[-1]:.2f} s)" for k, v in secs.items()),
                flush=True,
            )

        med = {k: mb / statistics.median(v) for k, v in secs.items()}
        print(f"cp SRC DST && sync: {med['cp']:,.0f} MB/s (median of {args.runs})", flush=True)
        ok_raw = line(
            "engine queued->DONE, destination without fsync (default)",
            med["done"],
            med["cp"],
            args.db,
            "(NOT durable at DONE)",
        )
        ok_sync = line("engine queued->DONE then sync", med["done+sync"], med["cp"], args.db)
        ok_fsync = line(
            "engine queued->DONE, destination with fsync=true",
            med["fsync"],
            med["cp"],
            args.db,
            "(durable at DONE)",
        )
        print(
            f"summary: default {'OK' if ok_raw else 'MISSED'}, +sync "
            f"{'OK' if ok_sync else 'MISSED'}, fsync {'OK' if ok_fsync else 'MISSED'}; "
            "exit status follows fsync=true",
            flush=True,
        )
        return 0 if ok_fsync else 1
    finally:
        if worker is not None:
            worker.stop(timeout=10)
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
