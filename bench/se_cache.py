"""``fedlake se cache``: the second read of a big file through the cache against a direct
local read of the same file.

Starts ``fedlake se serve`` (the origin) over a temporary directory holding one file of
``--size-mib`` MiB (1 GiB by default) and ``fedlake se cache`` in front of it, both on
loopback over plain HTTP. Then:

1. first read through the cache (a miss: the cache fetches from the origin), with curl;
2. second read through the cache (a hit), with ``curl -o /dev/null``: best of ``--runs``;
3. direct local read of the origin's file, ``cat FILE > /dev/null`` (warm page cache, as
   the cache's own blocks are): best of ``--runs``;
4. for context, a GET straight from the origin SE, and a GET of the same file from nginx
   (``sendfile on``, when installed): what a server sending from the kernel reaches.

``--server granian,uvicorn`` (the default) runs origin and cache on each HTTP server in
turn. Goal (issue 6): the second read through the cache >= 90 % of the direct local read.
Prints each figure and OK or MISSED; exits 0 only when the goal is met on every server.
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

from _lake import free_port, wait_port

MiB = 1 << 20
GOAL = 0.90


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def curl(url: str) -> list[str]:
    return ["curl", "-s", "-S", "--fail", "-o", "/dev/null", url]


def measure(server: str, base: Path, args: argparse.Namespace) -> tuple[float, float, float]:
    """Seconds of the first read through the cache, of the best second read, and of the
    best GET straight from the origin, with origin and cache on ``server``."""
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
        second = min(timed(curl(via_cache)) for _ in range(args.runs))
        direct = min(timed(curl(f"{origin}/big.bin")) for _ in range(args.runs))
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
        shutil.rmtree(cache_dir, ignore_errors=True)
    return first, second, direct


def nginx_read(base: Path, runs: int) -> float | None:
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
        return min(timed(curl(f"http://127.0.0.1:{port}/big.bin")) for _ in range(runs))
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
    args = ap.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed: apt-get install curl")
    servers = [name.strip() for name in args.server.split(",") if name.strip()]
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
        local = min(timed(["cat", str(big)]) for _ in range(args.runs))
        nginx = nginx_read(base, args.runs)
        print(
            f"file: {args.size_mib} MiB, cache block size {args.block_size}, workers {args.workers}"
        )
        print(f"direct local read (cat):              {rate(local):8.0f} MiB/s")
        if nginx is not None:
            print(f"GET from nginx (sendfile), for scale:  {rate(nginx):8.0f} MiB/s")
        for server in servers:
            first, second, origin = measure(server, base, args)
            ratio = rate(second) / rate(local)
            verdicts.append(ratio >= GOAL)
            print(f"[{server}] first read through the cache (miss): {rate(first):8.0f} MiB/s")
            print(
                f"[{server}] second read through the cache (hit): {rate(second):8.0f} MiB/s "
                f"(best of {args.runs})"
            )
            print(f"[{server}] GET straight from the origin SE:     {rate(origin):8.0f} MiB/s")
            print(
                f"[{server}] cache hit / local read: {ratio:.0%} (goal >= {GOAL:.0%}): "
                f"{'OK' if ratio >= GOAL else 'MISSED'}",
                flush=True,
            )
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
