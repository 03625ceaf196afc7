"""Transfers goal 1: 10,000 x 1 KiB files between two local POSIX RSEs, queued -> AVAILABLE,
end to end through a running `fedlake up` (its in-process worker): >= 1,000 files/s.

The files are written into LOCAL-DISK's directory and registered in bulk (not timed). The
clock starts with ``POST /transfers/`` (one request for all files) and stops when every
request is DONE (polled every 200 ms), so it covers queueing, claiming, copying with
adler32 verification, and committing the replicas.
"""

from __future__ import annotations

import time

from _lake import SCOPE, parse_args, put_small_files, report, running_lake

GOAL = 1_000.0


def main() -> int:
    args = parse_args(
        __doc__ or "",
        files=(int, 10_000, "how many files"),
        size=(int, 1024, "bytes per file"),
        copy_processes=(
            int,
            1,
            "FEDLAKE_TRANSFER_COPY_PROCESSES of the lake's worker (default as the lake)",
        ),
    )
    env = {"FEDLAKE_TRANSFER_COPY_PROCESSES": str(args.copy_processes)}
    with running_lake(args, env) as lake:
        rows = put_small_files(lake, "small", args.files, args.size)
        with lake.http() as h:
            dids = [{"scope": SCOPE, "name": r["name"]} for r in rows]
            t0 = time.perf_counter()
            r = h.post("/transfers/", json={"dids": dids, "rse": "LOCAL-SAFE"})
            r.raise_for_status()
            queued = time.perf_counter() - t0
            peak = 0
            while True:
                summary = h.get("/transfers/summary").json()
                states = summary["states"]
                running = sum(link.get("active", 0) for link in summary["links"])
                peak = max(peak, running)
                if (
                    states.get("DONE", 0) + states.get("FAILED", 0) + states.get("NO_SOURCES", 0)
                    >= args.files
                ):
                    break
                time.sleep(0.2)
            elapsed = time.perf_counter() - t0
        if states.get("DONE", 0) != args.files:
            print(f"not all transfers succeeded: {states}")
            return 1
        safe = lake.data_dir / "rses" / "safe"
        copied = sum(1 for p in safe.rglob("small.*") if p.is_file())
        assert copied == args.files, copied
        ok = report(
            f"transfer {args.files} x {args.size} B POSIX->POSIX, queued->AVAILABLE",
            args.files / elapsed,
            "files/s",
            GOAL,
            lake.db,
            extra=f"in {elapsed:.2f} s (queueing {queued:.2f} s, peak running {peak})",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
