"""Goal 6: POST /rules/ with 1,000 file DIDs and one rule spec (what ``fedlake upload`` and
``rucio upload`` send) answers in < 150 ms.

Set-up (not timed): before each run, ``--files`` new files are registered on LOCAL-DISK.
Timed: one POST /rules/ asking for one copy of each of them on ``--rse`` (LOCAL-DISK: the
upload case, every lock OK at once; another RSE, e.g. LOCAL-SAFE, creates a COPYING
replica and a REPLICATING lock per file); client-side JSON encoding included. Median of
``--runs`` runs, each on its own files; afterwards one rule is read back and checked.
"""

from __future__ import annotations

import statistics
import time

from _lake import SCOPE, parse_args, register, report, running_lake

GOAL_MS = 150.0


def main() -> int:
    args = parse_args(
        __doc__ or "",
        files=(int, 1000, "file DIDs per request"),
        runs=(int, 5, "timed requests (median reported)"),
        rse=(str, "LOCAL-DISK", "rse_expression of the rules"),
    )
    with running_lake(args) as lake:
        times: list[float] = []
        with lake.http() as h:
            # warm up (first request pays imports, connection set-up and statement caches)
            warm = register(lake, "bench.rule.warm", 10)
            body = {"dids": [{"scope": SCOPE, "name": r["name"]} for r in warm], "copies": 1}
            h.post("/rules/", json=body | {"rse_expression": args.rse}).raise_for_status()
            for run in range(args.runs):
                rows = register(lake, f"bench.rule.{run:03d}", args.files)
                body = {
                    "dids": [{"scope": SCOPE, "name": r["name"]} for r in rows],
                    "copies": 1,
                    "rse_expression": args.rse,
                    "lifetime": None,
                    "grouping": None,
                    "account": None,
                    "activity": None,
                    "ask_approval": False,
                    "asynchronous": False,
                }
                t0 = time.perf_counter()
                r = h.post("/rules/", json=body)
                times.append(time.perf_counter() - t0)
                r.raise_for_status()
                ids = r.json()
                if len(ids) != args.files:
                    raise SystemExit(f"expected {args.files} rule ids, got {len(ids)}")
            rule = h.get(f"/rules/{ids[-1]}").json()
            if (
                rule["name"] != rows[-1]["name"]
                or rule["locks_ok_cnt"] + rule["locks_replicating_cnt"] != 1
            ):
                raise SystemExit(f"unexpected rule: {rule}")
        median_ms = statistics.median(times) * 1000
        ok = report(
            f"POST /rules/ with {args.files} file DIDs on {args.rse}",
            median_ms,
            "ms",
            GOAL_MS,
            lake.db,
            higher_is_better=False,
            extra=f"(median of {args.runs}; min {min(times) * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms)",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
