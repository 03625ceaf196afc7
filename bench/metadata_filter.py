"""Goal 4b: a metadata filter on one key over 1,000,000 DIDs answers in < 100 ms
(the goal is stated for PostgreSQL; SQLite is measured the same way).

Set-up (not timed): the lake is started (migrated), then ``--dids`` file DIDs with one
typed metadata value each (``run_number`` = i % 10000, so each value matches ~100 DIDs)
are written straight into the catalogue tables ``dids`` and ``did_meta`` (COPY on
PostgreSQL, executemany on SQLite), rows shaped like fedlake.catalog.meta.typed().
Timed: GET /dids/{scope}/dids/search?filters=run_number=V&type=all&long=True, the whole
NDJSON answer read; median of ``--runs`` runs, each with a different value.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from _lake import SCOPE, Lake, parse_args, psycopg_url, report, running_lake

GOAL_MS = 100.0
KEY = "run_number"
VALUES = 10_000


def _rows(n: int) -> Iterator[tuple[tuple[object, ...], tuple[object, ...]]]:
    for i in range(n):
        name = f"bench.flt.{i:08d}"
        v = i % VALUES
        yield (
            (
                SCOPE,
                name,
                "FILE",
                "root",
                1000 + i,
                1,
                f"{i & 0xFFFFFFFF:08x}",
                False,
                False,
                "AVAILABLE",
            ),
            (SCOPE, name, KEY, "i", json.dumps(v), None, float(v), None),
        )


DID_COLS = (
    "scope",
    "name",
    "did_type",
    "account",
    "bytes",
    "length",
    "adler32",
    "monotonic",
    "hidden",
    "availability",
    "created_at",
    "updated_at",
)
META_COLS = ("scope", "name", "key", "vtype", "value", "str_val", "num_val", "date_val")


def populate_pg(lake: Lake, n: int) -> None:
    import psycopg

    now = datetime.now(UTC).replace(tzinfo=None)
    with psycopg.connect(psycopg_url(lake.database_url)) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY dids ({', '.join(DID_COLS)}) FROM STDIN") as did_copy:
            for d, _ in _rows(n):
                did_copy.write_row((*d, now, now))
        with cur.copy(f"COPY did_meta ({', '.join(META_COLS)}) FROM STDIN") as meta_copy:
            for _, m in _rows(n):
                meta_copy.write_row(m)
        cur.execute("ANALYZE dids")
        cur.execute("ANALYZE did_meta")


def populate_sqlite(lake: Lake, n: int) -> None:
    now = datetime.now(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    conn = sqlite3.connect(lake.data_dir / "catalog.db", timeout=60, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO dids ({', '.join(DID_COLS)}) VALUES ({', '.join('?' * len(DID_COLS))})",
            ((*d, now, now) for d, _ in _rows(n)),
        )
        conn.executemany(
            f"INSERT INTO did_meta ({', '.join(META_COLS)}) "
            f"VALUES ({', '.join('?' * len(META_COLS))})",
            (m for _, m in _rows(n)),
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()


def main() -> int:
    args = parse_args(
        __doc__ or "",
        dids=(int, 1_000_000, "DIDs in the scope"),
        runs=(int, 7, "timed searches (median reported)"),
    )
    with running_lake(args) as lake:
        t0 = time.perf_counter()
        (populate_pg if lake.db == "postgresql" else populate_sqlite)(lake, args.dids)
        print(f"populated {args.dids} DIDs in {time.perf_counter() - t0:.1f} s (not timed)")
        times = []
        with lake.http() as h:
            for run in range(args.runs + 1):  # the first run warms caches and is not counted
                value = 4242 + run * 7
                params = {"filters": f"{KEY}={value}", "type": "all", "long": "True"}
                t = time.perf_counter()
                r = h.get(f"/dids/{SCOPE}/dids/search", params=params)
                r.raise_for_status()
                found = [json.loads(x) for x in r.text.splitlines() if x.strip()]
                if run:
                    times.append((time.perf_counter() - t) * 1000)
                expect = len(range(value, args.dids, VALUES))
                assert len(found) == expect, (len(found), expect)
        ok = report(
            f"metadata filter on one key over {args.dids} DIDs (~{expect} match)",
            statistics.median(times),
            "ms",
            GOAL_MS,
            lake.db,
            higher_is_better=False,
            extra=f"median of {len(times)}, min {min(times):.0f} max {max(times):.0f} ms",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
