"""Issue-4 goals for rules on big datasets, through a real ``fedlake up`` and its REST API:

1. POST /rules/ (1 copy, grouping DATASET) on a 10,000-file dataset: all locks and transfer
   requests exist when the call returns, in < 1 s  [Rucio 41.5.1: 7.1 s].
2. The same on a ``--big``-file dataset (100,000): all locks exist < 10 s after the call.
3. Attach 10,000 files to a dataset that has a rule: all new locks and requests within the
   call, < 2 s [9.5 s]; with 5 rules on it: < 5 s.
4. An expired rule on a 10,000-file dataset is removed and its locks released in < 2 s
   [19.5 s]: the rule is made with a lifetime; the clock runs from its expiry to the moment
   it is gone (the rule-expiry daemon of ``fedlake up`` does the work).

Files are registered on LOCAL-DISK (catalogue only); the lake runs one copy at a time
(``FEDLAKE_TRANSFER_MAX_ACTIVE=1``) so copies do not compete with the measured calls.
Counts are read straight from the catalogue (SQLAlchemy) right after each call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from _lake import SCOPE, Lake, parse_args, register, report, running_lake
from sqlalchemy import create_engine, text


@contextmanager
def catalogue(lake: Lake) -> Iterator[object]:
    url = lake.database_url or f"sqlite:///{lake.data_dir / 'catalog.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def counts(lake: Lake, rule_ids: list[str]) -> tuple[int, int]:
    """(locks, transfer requests) of these rules."""
    ids = ",".join(f"'{r}'" for r in rule_ids)
    with catalogue(lake) as conn:
        locks = conn.execute(text(f"SELECT count(*) FROM locks WHERE rule_id IN ({ids})"))  # type: ignore[attr-defined]
        reqs = conn.execute(  # type: ignore[attr-defined]
            text(f"SELECT count(*) FROM transfer_requests WHERE rule_id IN ({ids})")
        )
        return int(locks.scalar()), int(reqs.scalar())


def dataset(lake: Lake, name: str, files: int) -> list[dict[str, object]]:
    rows = register(lake, name, files)
    with lake.http() as h:
        h.post("/dids", json=[{"scope": SCOPE, "name": name, "type": "DATASET"}]).raise_for_status()
        for i in range(0, files, 10_000):
            part = [{"scope": SCOPE, "name": r["name"]} for r in rows[i : i + 10_000]]
            h.post(f"/dids/{SCOPE}/{name}/dids", json={"dids": part}).raise_for_status()
    return rows


def add_rule(lake: Lake, name: str, rse: str, **extra: object) -> tuple[str, float]:
    body = {"dids": [{"scope": SCOPE, "name": name}], "copies": 1, "rse_expression": rse}
    with lake.http() as h:
        t0 = time.perf_counter()
        r = h.post("/rules/", json=body | extra)
        took = time.perf_counter() - t0
        r.raise_for_status()
    return r.json()[0], took


def main() -> int:
    args = parse_args(
        __doc__ or "",
        files=(int, 10_000, "files of the dataset in goals 1, 3 and 4"),
        big=(int, 100_000, "files of the dataset in goal 2 (0 skips it)"),
    )
    ok = True
    n = args.files
    # one copy at a time: the measured calls do not compete with copies for the 2 cores
    with running_lake(args, {"FEDLAKE_TRANSFER_MAX_ACTIVE": "1"}) as lake:
        # 1. rule on a 10k dataset
        dataset(lake, "bench.rule.ds1", n)
        rule, took = add_rule(lake, "bench.rule.ds1", "LOCAL-SAFE")
        locks, reqs = counts(lake, [rule])
        ok &= (
            report(
                f"1. rule on a {n:,}-file dataset, call time",
                took,
                "s",
                1.0,
                lake.db,
                higher_is_better=False,
                extra=f"(at return: {locks:,} locks, {reqs:,} requests)",
            )
            and locks == n
            and reqs >= n - 1
        )
        # 2. a big dataset
        if args.big:
            dataset(lake, "bench.rule.big", args.big)
            t0 = time.perf_counter()
            rule, took = add_rule(lake, "bench.rule.big", "LOCAL-SAFE")
            while counts(lake, [rule])[0] < args.big:
                time.sleep(0.05)
            ok &= report(
                f"2. rule on a {args.big:,}-file dataset, until the last lock",
                time.perf_counter() - t0,
                "s",
                10.0,
                lake.db,
                higher_is_better=False,
                extra=f"(call {took:.2f} s)",
            )
        # 3. attach to datasets with 1 and with 5 rules
        for nrules, goal, rses in (
            (1, 2.0, ["LOCAL-SAFE"]),
            (
                5,
                5.0,
                [
                    "LOCAL-SAFE",
                    "LOCAL-BUFFER",
                    "LOCAL-TAPE",
                    "LOCAL-SAFE|LOCAL-BUFFER",
                    "site=LOCAL-2",
                ],
            ),
        ):
            ds = f"bench.rule.grow{nrules}"
            with lake.http() as h:
                h.post(
                    "/dids", json=[{"scope": SCOPE, "name": ds, "type": "DATASET"}]
                ).raise_for_status()
            ids = [add_rule(lake, ds, rse, copies=1)[0] for rse in rses]
            rows = register(lake, f"{ds}.f", n)
            part = [{"scope": SCOPE, "name": r["name"]} for r in rows]
            with lake.http() as h:
                t0 = time.perf_counter()
                h.post(f"/dids/{SCOPE}/{ds}/dids", json={"dids": part}).raise_for_status()
                took = time.perf_counter() - t0
            locks, reqs = counts(lake, ids)
            ok &= (
                report(
                    f"3. attach {n:,} files to a dataset with {nrules} rule(s)",
                    took,
                    "s",
                    goal,
                    lake.db,
                    higher_is_better=False,
                    extra=f"(at return: {locks:,} locks, {reqs:,} requests)",
                )
                and locks == n * nrules
            )
        # 4. expiry
        rule, _ = add_rule(lake, "bench.rule.ds1", "LOCAL-BUFFER", lifetime=5)
        expires = time.time() + 5
        with lake.http() as h:
            while h.get(f"/rules/{rule}").status_code == 200:
                time.sleep(0.02)
        gone = time.time() - expires
        ok &= report(
            f"4. expired rule on a {n:,}-file dataset, expiry to gone",
            gone,
            "s",
            2.0,
            lake.db,
            higher_is_better=False,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
