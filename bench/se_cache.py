"""``fedlake se cache``: the second read of a big file through the cache against a direct
local read of the same file.

Starts ``fedlake se serve`` (the origin) over a temporary directory holding one file of
``--size-mib`` MiB (1 GiB by default) and ``fedlake se cache`` in front of it, both on
loopback over plain HTTP. Then:

1. first read through the cache (a miss: the cache fetches from the origin), with curl;
2. second read through the cache (a hit), with ``curl -o /dev/null``: best of ``--runs``;
3. direct local read of the origin's file, ``cat FILE > /dev/null`` (warm page cache, as
   the cache's own blocks are): best of ``--runs``;
4. for context, a GET straight from the origin SE.

Goal (issue 6): the second read through the cache >= 90 % of the direct local read.
Prints each figure and OK or MISSED; exits 0 only when the goal is met.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
GOAL = 0.90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not come up on port {port}")


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def curl(url: str) -> list[str]:
    return ["curl", "-s", "-S", "--fail", "-o", "/dev/null", url]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--block-size", default="64M", help="the cache's --block-size (0: whole)")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed: apt-get install curl")
    size = args.size_mib * MiB
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-se-cache-") as tmp:
        base = Path(tmp)
        (base / "root").mkdir()
        big = base / "root" / "big.bin"
        with open(big, "wb") as fh:
            block = os.urandom(16 * MiB)
            for _ in range(size // len(block)):
                fh.write(block)
            fh.write(block[: size % len(block)])
        cli = [sys.executable, "-m", "fedlake.cli", "se"]
        o_port, c_port = free_port(), free_port()
        cache_args = ["--dir", str(base / "cache"), "--size", f"{2 * size + 64 * MiB}"]
        cache_args += ["--block-size", args.block_size, "--workers", str(args.workers)]
        cache_args += ["--port", str(c_port), "--allow-anonymous"]
        try:
            procs.append(
                subprocess.Popen(
                    [
                        *cli,
                        "serve",
                        "--root",
                        str(base / "root"),
                        "--port",
                        str(o_port),
                        "--allow-anonymous",
                    ]
                )
            )
            wait_port(o_port, procs[-1], "fedlake se serve")
            procs.append(
                subprocess.Popen(
                    [*cli, "cache", "--origin", f"http://127.0.0.1:{o_port}", *cache_args]
                )
            )
            wait_port(c_port, procs[-1], "fedlake se cache")
            via_cache = f"http://127.0.0.1:{c_port}/big.bin"
            first = timed(curl(via_cache))
            second = min(timed(curl(via_cache)) for _ in range(args.runs))
            local = min(timed(["cat", str(big)]) for _ in range(args.runs))
            origin = min(
                timed(curl(f"http://127.0.0.1:{o_port}/big.bin")) for _ in range(args.runs)
            )
        finally:
            for p in procs:
                p.terminate()
                p.wait(20)

    def rate(seconds: float) -> float:
        return size / MiB / seconds

    ratio = rate(second) / rate(local)
    verdict = "OK" if ratio >= GOAL else "MISSED"
    print(f"file: {args.size_mib} MiB, cache block size {args.block_size}, workers {args.workers}")
    print(f"first read through the cache (miss):  {rate(first):8.0f} MiB/s")
    print(f"second read through the cache (hit):  {rate(second):8.0f} MiB/s  (best of {args.runs})")
    print(f"direct local read (cat):              {rate(local):8.0f} MiB/s")
    print(f"GET straight from the origin SE:      {rate(origin):8.0f} MiB/s")
    print(f"cache hit / local read: {ratio:.0%} (goal >= {GOAL:.0%}): {verdict}")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
