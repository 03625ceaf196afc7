"""Goal 1: register 100,000 file replicas in bulk through POST /replicas (>= 25,000 files/s).

Files are new (the registration also creates their file DIDs), sent in batches of
``--batch`` files; the time covers every request, client-side JSON encoding included.
"""

from __future__ import annotations

import time

from _lake import RSE, file_rows, parse_args, report, running_lake

GOAL = 25_000.0


def main() -> int:
    args = parse_args(
        __doc__ or "",
        files=(int, 100_000, "how many files"),
        batch=(int, 10_000, "files per request"),
    )
    with running_lake(args) as lake:
        rows = file_rows("bench.reg", args.files)
        with lake.http() as h:
            # warm up (first request pays imports, connection set-up and statement caches)
            h.post("/replicas", json={"rse": RSE, "files": file_rows("bench.warm", 100)})
            t0 = time.perf_counter()
            for i in range(0, args.files, args.batch):
                r = h.post("/replicas", json={"rse": RSE, "files": rows[i : i + args.batch]})
                r.raise_for_status()
            elapsed = time.perf_counter() - t0
            check = h.get(f"/dids/{rows[-1]['scope']}/{rows[-1]['name']}")
            check.raise_for_status()
        ok = report(
            f"register {args.files} replicas (batches of {args.batch})",
            args.files / elapsed,
            "files/s",
            GOAL,
            lake.db,
            extra=f"in {elapsed:.2f} s",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
