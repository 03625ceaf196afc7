"""Transfers goal: a worker facing 1,000,000 queued requests (``--requests``) whose
destination is blocked keeps its peak RSS < 300 MB, and one claim stays cheap (the
scheduler must read the queue off its index, never scan it).

Set-up (not timed as the goal): a lake built in this process with ``build_lake``; the files
are registered on LOCAL-DISK in bulk (``services.replicas.add_replicas``, batches of
20,000; the bytes do not exist, nothing is ever copied) and queued to LOCAL-SAFE with the
catalogue layer (``insert_rows`` of the rows ``queue_requests`` writes, batches of 50,000).
``--queue service`` queues through ``services.transfers.submit`` instead: what the API
does, but its id lookup after the insert makes it very slow at this scale (minutes on
SQLite, far longer on PostgreSQL). The link LOCAL-DISK -> LOCAL-SAFE gets a
fixed limit of 1 (``set_link``) and its one slot is held by another "worker" (the oldest
request, SUBMITTED with a lease valid for an hour), so every claim finds the link full.

Then a worker runs in its own process for ``--seconds`` (20): the code of
``fedlake daemon transfers`` (``python -m fedlake.cli daemon transfers``, 128 threads by
default), started through a small wrapper that only times each ``Scheduler.claim`` call.
Its peak RSS is the kernel's VmHWM (/proc/PID/status) read just before it is stopped: the
whole process (interpreter, every imported module, SQLAlchemy and its connection pools,
database driver caches -- on SQLite up to 64 MiB of page cache per connection, as
``catalog.db`` sets ``PRAGMA cache_size=-65536`` --, the thread pool's touched stacks,
what claims allocate).

Claim cost is reported three ways: the claims the worker made (count, median, p95, max),
and claims made here in-process (same code, ``claim(128)`` as the worker asks) with the
first 1,000 requests queued and again with all of them queued, so growth is visible;
finally once more after ``ANALYZE`` (planner statistics; fedlake never runs it on SQLite,
PostgreSQL's autovacuum does eventually), which shows how much the plan matters.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _lake import (
    ROOT_PASSWORD,
    SCOPE,
    create_pg_database,
    drop_pg_database,
    file_rows,
    parse_args,
    report,
)
from sqlalchemy import func, select, text, update

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake, build_lake, ensure_root
from fedlake.catalog import rses as rse_core
from fedlake.catalog import transfer_admin as admin
from fedlake.catalog._util import insert_rows
from fedlake.catalog.models import TransferRequest
from fedlake.domain.timefmt import utcnow
from fedlake.services import replicas as replica_svc
from fedlake.services import transfers as svc
from fedlake.services.embedded import ensure_local_rses
from fedlake.settings import Settings
from fedlake.transfers.endpoints import Endpoints
from fedlake.transfers.scheduler import Scheduler

GOAL_MB = 300.0
ROOT = Caller("root", admin=True)
CLAIM_N = 128  # what a default worker (128 threads, batch 200) asks for when idle
HOLDER = "bench-holder:0:000000"

# Runs the same code as `fedlake daemon transfers`, timing every Scheduler.claim call;
# the timings are written to the file named by argv[1] when the process exits.
WRAPPER = """
import atexit, json, runpy, sys, time
import fedlake.transfers.scheduler as sch
out, calls, orig = sys.argv[1], [], sch.Scheduler.claim
def claim(self, n, *args):
    t0 = time.perf_counter()
    got = orig(self, n, *args)
    calls.append((time.perf_counter() - t0, n, len(got)))
    return got
sch.Scheduler.claim = claim
atexit.register(lambda: open(out, "w").write(json.dumps(calls)))
sys.argv = ["fedlake", "daemon", "transfers"]
runpy.run_module("fedlake.cli", run_name="__main__")
"""


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _queue_direct(lake: Lake, start: int, stop: int) -> None:
    """Insert QUEUED requests with the catalogue layer (COPY on PostgreSQL): the rows
    ``catalog.transfer_queue.queue_requests`` writes, without its per-batch id lookup."""
    now = utcnow()
    with lake.db.read() as s:
        safe = rse_core.get_rse(s, "LOCAL-SAFE").id
    for i in range(start, stop, 50_000):
        rows = [
            {
                "scope": SCOPE,
                "name": r["name"],
                "dest_rse_id": safe,
                "account": "root",
                "activity": "default",
                "priority": 3,
                "state": "QUEUED",
                "bytes": r["bytes"],
                "adler32": r["adler32"],
                "verify_source": False,
                "attempt": 0,
                "max_attempts": 5,
                "leases_lost": 0,
                "not_before": now,
                "bytes_done": 0,
                "created_at": now,
                "updated_at": now,
            }
            for r in file_rows("q", min(50_000, stop - i), start=i)
        ]
        with lake.db.write() as s:
            insert_rows(s, TransferRequest, rows)


def register_and_queue(lake: Lake, start: int, stop: int, how: str) -> tuple[float, float]:
    """Register files ``start..stop`` on LOCAL-DISK and queue them; (register s, queue s).

    ``how``: ``direct`` (catalogue inserts) or ``service`` (``services.transfers.submit``,
    batches of 50,000: what the API does, but slow at this scale; see the report)."""
    t0 = time.perf_counter()
    for i in range(start, stop, 20_000):
        rows = file_rows("q", min(20_000, stop - i), start=i)
        replica_svc.add_replicas(lake, ROOT, {"rse": "LOCAL-DISK", "files": rows})
    t1 = time.perf_counter()
    if how == "direct":
        _queue_direct(lake, start, stop)
    else:
        for i in range(start, stop, 50_000):
            dids = [{"scope": SCOPE, "name": f"q.{j:08d}"} for j in range(i, min(i + 50_000, stop))]
            svc.submit(lake, ROOT, {"dids": dids, "rse": "LOCAL-SAFE"})
    return t1 - t0, time.perf_counter() - t1


def hold_the_link(lake: Lake) -> None:
    """Limit LOCAL-DISK -> LOCAL-SAFE to 1 and fill that slot with a live lease."""
    svc.set_link(lake, ROOT, "LOCAL-DISK", "LOCAL-SAFE", {"max_active": 1, "optimizer": False})
    with lake.db.write() as s:
        disk = rse_core.get_rse(s, "LOCAL-DISK").id
        first = s.scalar(select(func.min(TransferRequest.id)))
        s.execute(
            update(TransferRequest)
            .where(TransferRequest.id == first)
            .values(
                state="SUBMITTED",
                source_rse_id=disk,
                attempt=1,
                lease_owner=HOLDER,
                lease_expires=utcnow() + timedelta(hours=1),
            )
        )


def time_claims(lake: Lake, rounds: int) -> list[float]:
    """Seconds per ``claim(CLAIM_N)`` here, on the blocked link (each must take nothing)."""
    sched = Scheduler(lake.db, Endpoints(lake.db, ttl=5.0), "bench-timer:0:000000")
    sched.claim(CLAIM_N)  # warm-up: caches, statements
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        got = sched.claim(CLAIM_N)
        out.append(time.perf_counter() - t0)
        if got:
            raise RuntimeError(f"the link is not blocked: {len(got)} requests were claimed")
    return out


def states(lake: Lake) -> dict[str, int]:
    with lake.db.read() as s:
        counts: dict[str, int] = admin.state_counts(s)
        return counts


def ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
    med = statistics.median(xs)
    return f"median {med * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms, max {xs[-1] * 1e3:.1f} ms"


def run_worker(
    lake: Lake, work: Path, seconds: float
) -> tuple[dict[str, int], list[Any], float, list[tuple[float, int]]]:
    """The worker process for ``seconds``: (peak and last RSS, its claims, its CPU seconds,
    RSS samples over time)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLAKE_")}
    env.update(
        FEDLAKE_DATA_DIR=str(lake.settings.data_dir),
        FEDLAKE_DATABASE_URL=lake.settings.database_url,
    )
    claims_file = work / "claims.json"
    log = work / "worker.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, str(claims_file)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        start = time.monotonic()
        deadline = start + seconds
        peak = {"VmRSS": 0, "VmHWM": 0}
        timeline: list[tuple[float, int]] = []
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited early:\n{log.read_text()}")
            st = proc_status(proc.pid)
            peak = {"VmRSS": st["VmRSS"], "VmHWM": max(peak["VmHWM"], st["VmHWM"])}
            now = time.monotonic() - start
            if not timeline or now - timeline[-1][0] >= seconds / 10:
                timeline.append((now, st["VmRSS"]))
            time.sleep(0.25)
        cpu = cpu_seconds(proc.pid)
        peak["VmHWM"] = max(peak["VmHWM"], proc_status(proc.pid)["VmHWM"])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if not claims_file.exists():
        raise RuntimeError(f"the worker wrote no claim timings:\n{log.read_text()}")
    return peak, json.loads(claims_file.read_text()), cpu, timeline


def main() -> int:
    args = parse_args(
        __doc__ or "",
        requests=(int, 1_000_000, "queued transfer requests"),
        seconds=(float, 20.0, "how long the worker runs"),
        queue=(str, "direct", "direct (catalogue inserts) or service (transfers.submit)"),
    )
    work = Path(tempfile.mkdtemp(prefix="fedlake-bench-"))
    database_url = create_pg_database(args.pg_url) if args.db == "postgresql" else ""
    lake = None
    ok = False
    try:
        settings = Settings(
            data_dir=work / "lake", database_url=database_url, root_password=ROOT_PASSWORD
        )
        lake = build_lake(settings, migrate=True)
        ensure_root(lake)
        ensure_local_rses(lake)

        small = min(1_000, args.requests)
        register_and_queue(lake, 0, small, args.queue)
        hold_the_link(lake)
        at_small = time_claims(lake, 30)
        print(f"claim({CLAIM_N}) with {small:,} queued, link full: {ms(at_small)}", flush=True)

        reg_s, queue_s = register_and_queue(lake, small, args.requests, args.queue)
        print(
            f"set-up: registered {args.requests - small:,} more files in {reg_s:.1f} s, "
            f"queued them in {queue_s:.1f} s; states {states(lake)}",
            flush=True,
        )
        at_full = time_claims(lake, 30)
        print(
            f"claim({CLAIM_N}) with {args.requests:,} queued, link full: {ms(at_full)}",
            flush=True,
        )

        peak, calls, cpu, timeline = run_worker(lake, work, args.seconds)
        print(
            "worker RSS over time: "
            + ", ".join(f"{t:.0f} s {rss / 1e6:.0f} MB" for t, rss in timeline),
            flush=True,
        )
        after = states(lake)
        if after.get("SUBMITTED", 0) != 1 or after.get("QUEUED", 0) != args.requests - 1:
            print(f"the queue changed while the link was full: {after}")
            return 1
        worker_times = [c[0] for c in calls]
        taken = sum(c[2] for c in calls)
        print(
            f"worker: {len(calls)} claims in {args.seconds:.0f} s (asked for "
            f"{sorted({c[1] for c in calls})}, took {taken}); {ms(worker_times)}; "
            f"CPU {cpu:.1f} s; RSS at the end {peak['VmRSS'] / 1e6:.0f} MB",
            flush=True,
        )
        with lake.db.write() as s:
            s.execute(text("ANALYZE"))
        analyzed = time_claims(lake, 30)
        print(
            f"claim({CLAIM_N}) with {args.requests:,} queued, link full, after ANALYZE: "
            f"{ms(analyzed)}",
            flush=True,
        )
        ok = report(
            f"transfer worker peak RSS (VmHWM), {args.requests:,} queued, destination blocked",
            peak["VmHWM"] / 1e6,
            "MB",
            GOAL_MB,
            args.db,
            higher_is_better=False,
            extra=f"(one claim: median {statistics.median(worker_times) * 1e3:.1f} ms)",
        )
    finally:
        if lake is not None:
            lake.close()
        if database_url:
            drop_pg_database(database_url)
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
