"""Goal 4a: set metadata one call per DID (POST /dids/{scope}/{name}/meta/{key}) with
several concurrent clients: >= 2,000 calls/s.

Set-up (not timed): register ``--dids`` files; start ``--procs`` client processes with
``--threads`` threads each, every thread with its own keep-alive connection. Timed: every
DID gets exactly one call, ``{"value": <the DID's index>}``; each call is one HTTP request
whose status must be 201. Afterwards the catalogue itself (SQLite file or PostgreSQL
database, not the API) must hold that value for every DID, else the benchmark fails.

``--client`` picks the HTTP library of the load generator: ``http.client`` (standard
library, default) or ``httpx``. The client shares this machine's cores with the lake, and
httpx spends about four times more CPU per request than the lake's own budget allows; the
server does the same work either way.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import sqlite3
import threading
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event
from typing import Any
from urllib.parse import quote, urlsplit

from _lake import SCOPE, Lake, parse_args, psycopg_url, register, report, running_lake

GOAL = 2_000.0
KEY = "run_number"
Call = tuple[str, int]  # (DID name, value)


def _http_client_worker(url: str, token: str, calls: list[Call]) -> int:
    """One keep-alive connection; returns how many calls were answered 201."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=60)
    headers = {"X-Rucio-Auth-Token": token, "Content-Type": "application/json"}
    ok = 0
    try:
        for name, value in calls:
            body = json.dumps({"value": value}).encode()
            conn.request("POST", f"/dids/{SCOPE}/{quote(name)}/meta/{KEY}", body, headers)
            resp = conn.getresponse()
            text = resp.read()
            if resp.status != 201:
                raise RuntimeError(f"{name}: HTTP {resp.status} {text[:200]!r}")
            ok += 1
    finally:
        conn.close()
    return ok


def _httpx_worker(url: str, token: str, calls: list[Call]) -> int:
    import httpx

    ok = 0
    with httpx.Client(base_url=url, headers={"X-Rucio-Auth-Token": token}, timeout=60) as h:
        for name, value in calls:
            r = h.post(f"/dids/{SCOPE}/{quote(name)}/meta/{KEY}", json={"value": value})
            if r.status_code != 201:
                raise RuntimeError(f"{name}: HTTP {r.status_code} {r.text[:200]!r}")
            ok += 1
    return ok


WORKERS: dict[str, Callable[[str, str, list[Call]], int]] = {
    "http.client": _http_client_worker,
    "httpx": _httpx_worker,
}


def _client_process(
    client: str,
    url: str,
    token: str,
    parts: list[list[Call]],
    ready: Any,
    go: Event,
    results: Any,
) -> None:
    """Run one thread per part once ``go`` is set; put (calls answered 201, errors)."""
    worker = WORKERS[client]
    done: list[int] = []
    errors: list[str] = []

    def run(part: list[Call]) -> None:
        go.wait()
        try:
            done.append(worker(url, token, part))
        except Exception as exc:  # reported by the parent, which then fails the run
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    ready.put(len(threads))
    for t in threads:
        t.join()
    results.put((sum(done), errors))


def _stored_values(lake: Lake, names: set[str]) -> dict[str, Any]:
    """``run_number`` of each DID, read from the catalogue itself."""
    sql = "SELECT name, value FROM did_meta WHERE scope = {p} AND key = {p}"
    if lake.db == "postgresql":
        import psycopg

        with psycopg.connect(psycopg_url(lake.database_url)) as conn:
            rows = conn.execute(sql.format(p="%s"), (SCOPE, KEY)).fetchall()
    else:
        path = lake.data_dir / "catalog.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            rows = conn.execute(sql.format(p="?"), (SCOPE, KEY)).fetchall()
    return {name: json.loads(value) for name, value in rows if name in names}


def _check_catalogue(lake: Lake, calls: list[Call]) -> None:
    stored = _stored_values(lake, {name for name, _ in calls})
    wrong = [
        (n, v, stored.get(n)) for n, v in calls if type(stored.get(n)) is not int or stored[n] != v
    ]
    if wrong:
        sample = ", ".join(f"{n}: want {v}, have {s}" for n, v, s in wrong[:5])
        raise SystemExit(f"{len(wrong)} of {len(calls)} DIDs lack their value ({sample})")


def main() -> int:
    args = parse_args(
        __doc__ or "",
        dids=(int, 10_000, "how many calls (one per DID)"),
        procs=(int, 2, "client processes"),
        threads=(int, 4, "threads (connections) per client process"),
        client=(str, "http.client", f"client HTTP library: {', '.join(WORKERS)}"),
    )
    if args.client not in WORKERS:
        raise SystemExit(f"--client must be one of {', '.join(WORKERS)}")
    with running_lake(args) as lake:
        rows = register(lake, "bench.meta", args.dids)
        calls: list[Call] = [(str(r["name"]), i) for i, r in enumerate(rows)]
        _warm_up(lake)
        n = args.procs * args.threads
        shares = [calls[i::n] for i in range(n)]
        ctx = mp.get_context("spawn")
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [
            ctx.Process(
                target=_client_process,
                args=(
                    args.client,
                    lake.url,
                    lake.token,
                    shares[p * args.threads : (p + 1) * args.threads],
                    ready,
                    go,
                    results,
                ),
            )
            for p in range(args.procs)
        ]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=120)
        t0 = time.perf_counter()
        go.set()
        outcomes = [results.get(timeout=3600) for _ in procs]
        elapsed = time.perf_counter() - t0
        for p in procs:
            p.join()
        errors = [e for _, errs in outcomes for e in errs]
        done = sum(d for d, _ in outcomes)
        if errors or done != len(calls):
            raise SystemExit(f"{done} of {len(calls)} calls succeeded; first errors: {errors[:3]}")
        _check_catalogue(lake, calls)
        ok = report(
            f"set metadata, {done} calls from {args.procs} x {args.threads} {args.client} clients",
            done / elapsed,
            "calls/s",
            GOAL,
            lake.db,
            extra=f"in {elapsed:.2f} s",
        )
    return 0 if ok else 1


def _warm_up(lake: Lake) -> None:
    """One untimed call (first requests pay imports and statement caches)."""
    rows = register(lake, "bench.warm", 1)
    _http_client_worker(lake.url, lake.token, [(str(rows[0]["name"]), 0)])


if __name__ == "__main__":
    raise SystemExit(main())
