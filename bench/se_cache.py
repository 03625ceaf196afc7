"""``fedlake se cache``: the second read of a big file through the cache against a direct
local read of the same file.

Starts ``fedlake se serve`` (the origin) over a temporary directory holding one file of
``--size-mib`` MiB (1 GiB by default) and ``fedlake se cache`` in front of it, both on
loopback over plain HTTP. Then:

1. first read through the cache (a miss: the cache fetches from the origin), with curl;
2. second read through the cache (a hit), with ``curl -o /dev/null``: best of ``--runs``;
3. direct local read of the origin's file, ``cat FILE > /dev/null``: best of ``--runs``;
4. for context, a GET straight from the origin SE, and a GET of the same file from nginx
   (``sendfile on``, when installed): what a server sending from the kernel reaches.

Reads 2-4 are made twice (``--page-cache both``, the default): ``warm``, with the bytes in
the page cache (the local read is then a copy in memory, which no server sending over a
TCP socket can match), and ``cold``, with the page cache dropped before each read (``sync;
echo 3 > /proc/sys/vm/drop_caches``, root only), so the local read and the cache's own
blocks both come from the disk, as a cache bigger than memory serves most hits.

``--server granian,uvicorn`` (the default) runs origin and cache on each HTTP server in
turn. Goal (issue 6): the second read through the cache >= 90 % of the direct local read.
Prints each figure and OK or MISSED; exits 0 only when the goal is met on every server in
every page-cache state measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _lake import drop_caches, free_port, wait_port

MiB = 1 << 20
GOAL = 0.90


def timed(argv: list[str], cold: bool = False) -> float:
    """Seconds ``argv`` runs; ``cold``: the page cache is dropped first."""
    if cold and not drop_caches():
        raise SystemExit("--page-cache cold drops the page cache: run as root")
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def curl(url: str) -> list[str]:
    return ["curl", "-s", "-S", "--fail", "-o", "/dev/null", url]


def measure(
    server: str, base: Path, args: argparse.Namespace, states: list[str]
) -> tuple[float, dict[str, tuple[float, float]]]:
    """Seconds of the first read through the cache and, per page-cache state, of the best
    second read and of the best GET straight from the origin (origin and cache on
    ``server``)."""
    cli = [sys.executable, "-m", "fedlake.cli", "se"]
    o_port, c_port = free_port(), free_port()
    cache_dir = base / f"cache-{server}"
    cache_args = ["--dir", str(cache_dir), "--size", f"{2 * args.size_mib * MiB + 64 * MiB}"]
    cache_args += ["--block-size", args.block_size, "--workers", str(args.workers)]
    cache_args += ["--port", str(c_port), "--allow-anonymous", "--server", server]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        serve = [*cli, "serve", "--root", str(base / "root"), "--port", str(o_port)]
        procs.append(subprocess.Popen([*serve, "--allow-anonymous", "--server", server]))
        wait_port(o_port, procs[-1], "fedlake se serve")
        origin = f"http://127.0.0.1:{o_port}"
        procs.append(subprocess.Popen([*cli, "cache", "--origin", origin, *cache_args]))
        wait_port(c_port, procs[-1], "fedlake se cache")
        via_cache = f"http://127.0.0.1:{c_port}/big.bin"
        first = timed(curl(via_cache))
        reads = {}
        for state in states:
            cold = state == "cold"
            second = min(timed(curl(via_cache), cold) for _ in range(args.runs))
            direct = min(timed(curl(f"{origin}/big.bin"), cold) for _ in range(args.runs))
            reads[state] = (second, direct)
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
        shutil.rmtree(cache_dir, ignore_errors=True)
    return first, reads


def nginx_read(base: Path, runs: int, cold: bool) -> float | None:
    """Seconds of the best GET of the file from nginx (``sendfile on``), or None without
    nginx: what an HTTP server that sends files from the kernel reaches here."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        return None
    port = free_port()
    conf = base / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""  # the scratch directory is 0700
    conf.write_text(
        f"{user}worker_processes 1; daemon off; pid {base}/nginx.pid; error_log {base}/nginx.log;\n"
        "events { worker_connections 64; }\n"
        "http { access_log off; sendfile on; tcp_nopush on;\n"
        f"  server {{ listen 127.0.0.1:{port}; location / {{ root {base}/root; }} }} }}\n"
    )
    proc = subprocess.Popen([found, "-c", str(conf), "-p", str(base)], start_new_session=True)
    try:
        wait_port(port, proc, "nginx")
        return min(timed(curl(f"http://127.0.0.1:{port}/big.bin"), cold) for _ in range(runs))
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--block-size", default="64M", help="the cache's --block-size (0: whole)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--server", default="granian,uvicorn", help="HTTP servers, comma-separated")
    ap.add_argument("--page-cache", choices=["warm", "cold", "both"], default="both")
    args = ap.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed: apt-get install curl")
    servers = [name.strip() for name in args.server.split(",") if name.strip()]
    states = ["warm", "cold"] if args.page_cache == "both" else [args.page_cache]
    size: int = args.size_mib * MiB

    def rate(seconds: float) -> float:
        return size / MiB / seconds

    verdicts: list[bool] = []
    with tempfile.TemporaryDirectory(prefix="bench-se-cache-") as tmp:
        base = Path(tmp)
        (base / "root").mkdir()
        big = base / "root" / "big.bin"
        with open(big, "wb") as fh:
            block = os.urandom(16 * MiB)
            for _ in range(size // len(block)):
                fh.write(block)
            fh.write(block[: size % len(block)])
        local = {
            state: min(timed(["cat", str(big)], state == "cold") for _ in range(args.runs))
            for state in states
        }
        nginx = {state: nginx_read(base, args.runs, state == "cold") for state in states}
        print(
            f"file: {args.size_mib} MiB, cache block size {args.block_size}, workers {args.workers}"
        )
        for state in states:
            print(f"direct local read (cat), {state}:             {rate(local[state]):8.0f} MiB/s")
            seconds = nginx[state]
            if seconds is not None:
                print(f"GET from nginx (sendfile), {state}, for scale: {rate(seconds):8.0f} MiB/s")
        for server in servers:
            first, reads = measure(server, base, args, states)
            print(f"[{server}] first read through the cache (miss): {rate(first):8.0f} MiB/s")
            for state in states:
                second, origin = reads[state]
                ratio = rate(second) / rate(local[state])
                verdicts.append(ratio >= GOAL)
                print(
                    f"[{server}] {state}: second read through the cache (hit): "
                    f"{rate(second):8.0f} MiB/s (best of {args.runs})"
                )
                print(
                    f"[{server}] {state}: GET straight from the origin SE:     "
                    f"{rate(origin):8.0f} MiB/s"
                )
                print(
                    f"[{server}] {state}: cache hit / local read: {ratio:.0%} "
                    f"(goal >= {GOAL:.0%}): {'OK' if ratio >= GOAL else 'MISSED'}",
                    flush=True,
                )
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
