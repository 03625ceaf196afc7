"""Goal 2: attach 100,000 files to datasets through POST /dids/{scope}/{dataset}/dids
(>= 50,000 files/s).

Set-up (not timed): register the files and create ``--datasets`` empty datasets. Timed:
one attach request per dataset, each with its share of the files.
"""

from __future__ import annotations

import time

from _lake import SCOPE, parse_args, register, report, running_lake

GOAL = 50_000.0


def main() -> int:
    args = parse_args(
        __doc__ or "",
        files=(int, 100_000, "how many files"),
        datasets=(int, 10, "how many datasets share the files"),
    )
    with running_lake(args) as lake:
        rows = register(lake, "bench.att", args.files)
        per = -(-args.files // args.datasets)
        with lake.http() as h:
            names = [f"bench.ds.{i:03d}" for i in range(args.datasets)]
            h.post(
                "/dids", json=[{"scope": SCOPE, "name": n, "type": "DATASET"} for n in names]
            ).raise_for_status()
            t0 = time.perf_counter()
            for i, ds in enumerate(names):
                part = rows[i * per : (i + 1) * per]
                body = {"dids": [{"scope": r["scope"], "name": r["name"]} for r in part]}
                h.post(f"/dids/{SCOPE}/{ds}/dids", json=body).raise_for_status()
            elapsed = time.perf_counter() - t0
            got = h.get(f"/dids/{SCOPE}/{names[0]}").json()
            assert got["length"] == min(per, args.files), got
        ok = report(
            f"attach {args.files} files to {args.datasets} datasets",
            args.files / elapsed,
            "files/s",
            GOAL,
            lake.db,
            extra=f"in {elapsed:.2f} s",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
