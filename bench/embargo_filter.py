"""What the embargo filter costs (docs/embargo.md, "Cost"), in-process on a real catalogue.

100,000 files in one scope. Measures the visibility check (``hidden_for``), ``get_did``
and a wildcard search of the whole scope, for root and for a plain user, without an
embargo (interleaved runs, best of 3), with a scope embargo elsewhere, and with an
embargo on a 10,000-file dataset of that scope.

    .venv/bin/python bench/embargo_filter.py [--pg]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake, build_lake
from fedlake.catalog.embargo import hidden_for
from fedlake.domain.errors import NotFound
from fedlake.domain.timefmt import utcnow
from fedlake.expressions.did_filters import parse_query
from fedlake.services import accounts, dids, iam, replicas
from fedlake.services import embargo as emb
from fedlake.services.embedded import ensure_local_rses
from fedlake.settings import Settings

PG_BASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
N = 100_000
ROOT = Caller("root", admin=True)
USER = Caller("someone", admin=False)


def _lake(url: str | None) -> Lake:
    tmp = Path(tempfile.mkdtemp())
    settings = Settings(
        data_dir=tmp / "data",
        database_url=url or f"sqlite:///{tmp}/catalogue.db",
        root_password="bench-root-password",
        port=18997,
    )
    lake = build_lake(settings, migrate=True)
    accounts.bootstrap_root(lake, "bench-root-password")
    ensure_local_rses(lake)
    for scope in ("big", "other"):
        accounts.add_scope(lake, ROOT, scope, "root")
    for start in range(0, N, 10_000):
        files = [
            {"scope": "big", "name": f"f{i:06d}", "bytes": 1, "adler32": "00000001"}
            for i in range(start, start + 10_000)
        ]
        replicas.add_replicas(lake, ROOT, {"rse": "LOCAL-DISK", "files": files})
    return lake


def _best(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _report(lake: Lake, title: str) -> None:
    flt = parse_query(None, {"name": "*"})

    def search(c: Caller) -> Callable[[], object]:
        return lambda: sum(1 for _ in dids.search(lake, c, "big", flt, "file", False, None))

    def check(c: Caller) -> Callable[[], object]:
        def run() -> None:
            with lake.db.read() as s:
                hidden_for(s, admin=c.admin, groups=c.groups)

        return run

    def get(c: Caller, name: str) -> Callable[[], object]:
        def run() -> None:
            with contextlib.suppress(NotFound):
                dids.get_did(lake, c, "big", name)

        return run

    shown = sum(1 for _ in dids.search(lake, USER, "big", flt, "file", False, None))
    print(f"-- {title} ({shown} of {N} files shown to the user)")
    for c in (USER, ROOT, USER, ROOT):
        print(f"   search as {c.account:8} {_best(search(c), 3):.3f} s")
    for c in (USER, ROOT):
        one = get(c, "f050000")
        ms = _best(lambda: [one() for _ in range(200)], 3) / 200 * 1000  # noqa: B023
        print(f"   get_did as {c.account:8} {ms:.3f} ms")
    ms = _best(lambda: [check(USER)() for _ in range(200)], 3) / 200 * 1000
    print(f"   the visibility check in a read transaction {ms:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", action="store_true", help="a new PostgreSQL database")
    args = parser.parse_args()
    url = None
    if args.pg:
        from _lake import create_pg_database

        url = create_pg_database(PG_BASE_URL)
    lake = _lake(url)
    try:
        _report(lake, "no embargo")
        iam.add_group(lake, ROOT, "/g")
        until = (utcnow() + timedelta(days=1)).isoformat()
        emb.add_embargo(lake, ROOT, {"scope": "other", "group": "/g", "until": until})
        _report(lake, "a scope embargo elsewhere")
        dids.add_dids(lake, ROOT, [{"scope": "big", "name": "ds", "type": "DATASET"}])
        content = [{"scope": "big", "name": f"f{i:06d}"} for i in range(10_000)]
        dids.attach(lake, ROOT, "big", "ds", content)
        body = {"scope": "big", "name": "ds", "group": "/g", "until": until}
        emb.add_embargo(lake, ROOT, body)
        _report(lake, "an embargo on a 10,000-file dataset of the scope")
    finally:
        lake.close()
        if url:
            from _lake import drop_pg_database

            drop_pg_database(url)


if __name__ == "__main__":
    main()
