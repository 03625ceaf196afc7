"""Goal 4a: set metadata one call per DID (POST /dids/{scope}/{name}/meta/{key}) with
several concurrent client threads: >= 2,000 calls/s.

Set-up (not timed): register ``--dids`` files. Timed: every DID gets one call; the calls
are spread over ``--threads`` threads, each with its own keep-alive connection.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from _lake import Lake, parse_args, register, report, running_lake

GOAL = 2_000.0


def _worker(lake: Lake, names: list[tuple[str, str]], offset: int) -> int:
    with lake.http(timeout=60) as h:
        for i, (scope, name) in enumerate(names):
            r = h.post(f"/dids/{scope}/{name}/meta/run_number", json={"value": offset + i})
            r.raise_for_status()
    return len(names)


def main() -> int:
    args = parse_args(
        __doc__ or "",
        dids=(int, 10_000, "how many calls (one per DID)"),
        threads=(int, 8, "concurrent client threads"),
    )
    with running_lake(args) as lake:
        rows = register(lake, "bench.meta", args.dids)
        keys = [(str(r["scope"]), str(r["name"])) for r in rows]
        parts = [keys[i :: args.threads] for i in range(args.threads)]
        _worker(lake, keys[:1], 0)  # warm up
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            done = sum(
                pool.map(
                    _worker,
                    [lake] * args.threads,
                    parts,
                    [i * len(keys) for i in range(args.threads)],
                )
            )
        elapsed = time.perf_counter() - t0
        with lake.http() as h:
            meta = h.get(f"/dids/{keys[-1][0]}/{keys[-1][1]}/meta", params={"plugin": "JSON"})
            assert "run_number" in meta.json(), meta.text
        ok = report(
            f"set metadata, {done} calls from {args.threads} threads",
            done / elapsed,
            "calls/s",
            GOAL,
            lake.db,
            extra=f"in {elapsed:.2f} s",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
