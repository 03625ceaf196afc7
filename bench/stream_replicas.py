"""Goal 3: stream the replicas of a 100,000-file dataset (POST /replicas/list, NDJSON):
>= 50,000 files/s, and the server's resident memory grows by < 100 MB while streaming.

Set-up (not timed): register the files, create the dataset and attach them. Timed: one
request, read line by line to the end. RSS: VmRSS of the server before the request and
its peak, sampled every 10 ms, during it.
"""

from __future__ import annotations

import threading
import time

import orjson
from _lake import SCOPE, parse_args, register, report, rss_bytes, running_lake

GOAL_RATE = 50_000.0
GOAL_RSS_MB = 100.0


def main() -> int:
    args = parse_args(__doc__ or "", files=(int, 100_000, "files in the dataset"))
    with running_lake(args) as lake:
        rows = register(lake, "bench.str", args.files)
        ds = "bench.stream.ds"
        with lake.http() as h:
            h.post(f"/dids/{SCOPE}/{ds}", json={"type": "DATASET"}).raise_for_status()
            for i in range(0, args.files, 20_000):
                body = {
                    "dids": [{"scope": r["scope"], "name": r["name"]} for r in rows[i : i + 20_000]]
                }
                h.post(f"/dids/{SCOPE}/{ds}/dids", json=body).raise_for_status()
            time.sleep(1)
            before = rss_bytes(lake.pid)
            peak = before
            stop = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not stop.is_set():
                    peak = max(peak, rss_bytes(lake.pid))
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            count = 0
            t0 = time.perf_counter()
            body = {"dids": [{"scope": SCOPE, "name": ds}]}
            with h.stream("POST", "/replicas/list", json=body) as r:
                r.raise_for_status()
                tail = b""
                for chunk in r.iter_bytes():  # every record is parsed, as a client would
                    lines = (tail + chunk).split(b"\n")
                    tail = lines.pop()
                    for line in lines:
                        if line:
                            rec = orjson.loads(line)
                            count += 1
                if tail.strip():
                    rec = orjson.loads(tail)
                    count += 1
            elapsed = time.perf_counter() - t0
            stop.set()
            sampler.join()
            assert count == args.files, count
            assert rec["pfns"], rec
        growth = (peak - before) / 1e6
        ok1 = report(
            f"stream replicas of a {args.files}-file dataset",
            count / elapsed,
            "files/s",
            GOAL_RATE,
            lake.db,
            extra=f"in {elapsed:.2f} s",
        )
        ok2 = report(
            "server RSS growth while streaming",
            growth,
            "MB",
            GOAL_RSS_MB,
            lake.db,
            higher_is_better=False,
            extra=f"(before {before / 1e6:.0f} MB, peak {peak / 1e6:.0f} MB)",
        )
    return 0 if ok1 and ok2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
