"""Rules goal: 10,000 small files on one local RSE, one rule to another: the rule is OK in
<= 10 s end to end, transfers included [Rucio 41.5.1 with its daemons and a local-copy
transfer tool: 54-98 s].

The files (1 KiB by default) are written into LOCAL-DISK's directory, registered and
attached to one dataset (setup, not timed). The clock starts with ``POST /rules/`` (1 copy
of the dataset on LOCAL-SAFE) and stops when ``GET /rules/{id}`` says OK (polled every
100 ms): placement, locks, transfer requests, the in-process worker's copies with adler32
verification, replicas committed and the rule's counters.
"""

from __future__ import annotations

import time

from _lake import SCOPE, parse_args, put_small_files, report, running_lake

GOAL = 10.0


def main() -> int:
    args = parse_args(
        __doc__ or "",
        files=(int, 10_000, "how many files"),
        size=(int, 1024, "bytes per file"),
    )
    with running_lake(args) as lake:
        rows = put_small_files(lake, "rulesmall", args.files, args.size)
        ds = "bench.rulesmall"
        with lake.http() as h:
            h.post(
                "/dids", json=[{"scope": SCOPE, "name": ds, "type": "DATASET"}]
            ).raise_for_status()
            dids = [{"scope": SCOPE, "name": r["name"]} for r in rows]
            h.post(f"/dids/{SCOPE}/{ds}/dids", json={"dids": dids}).raise_for_status()
            body = {
                "dids": [{"scope": SCOPE, "name": ds}],
                "copies": 1,
                "rse_expression": "LOCAL-SAFE",
            }
            t0 = time.perf_counter()
            r = h.post("/rules/", json=body)
            r.raise_for_status()
            call = time.perf_counter() - t0
            rule_id = r.json()[0]
            while True:
                rule = h.get(f"/rules/{rule_id}").json()
                if rule["state"] != "REPLICATING":
                    break
                time.sleep(0.1)
            elapsed = time.perf_counter() - t0
        if rule["state"] != "OK" or rule["locks_ok_cnt"] != args.files:
            print(f"the rule did not reach OK: {rule['state']}, {rule['locks_ok_cnt']} locks OK")
            return 1
        safe = lake.data_dir / "rses" / "safe"
        copied = sum(1 for p in safe.rglob("rulesmall.*") if p.is_file())
        assert copied == args.files, copied
        ok = report(
            f"rule on {args.files:,} x {args.size} B files, POST /rules/ -> OK",
            elapsed,
            "s",
            GOAL,
            lake.db,
            higher_is_better=False,
            extra=f"(call {call:.2f} s, {args.files / elapsed:,.0f} files/s)",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
