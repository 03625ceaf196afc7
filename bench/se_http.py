"""``fedlake se serve`` next to nginx, the physical reference for HTTP serving speed.

Starts both on loopback over plain HTTP with the same number of worker processes
(``--workers``, default 2 = the cores here) and the same client (curl) for both:

1. GET of one big file (2 GiB by default, warm page cache) with ``curl -o /dev/null``;
   the best of ``--runs`` runs each.
2. GET of 10,000 x 4 KiB files with 32 requests in flight over kept-alive connections
   (``curl --parallel --parallel-max 32`` reading a list of URLs); requests per second.
3. PUT of the big file: to the SE with ``Digest: adler32=<hex>`` (the SE computes adler32
   of every byte it receives and checks it before the rename), to nginx with its WebDAV
   module (``dav_methods PUT``); the best of ``--runs`` runs each. The stored files are
   checked afterwards (size, and adler32 through ``Want-Digest`` on the SE).

``--server granian,uvicorn`` (the default) measures the SE on each HTTP server in turn,
against the same nginx figures (nginx is measured once, first).

Goals (issue 6): GET >= 80 % of nginx, small files >= 50 % of nginx's request rate,
PUT >= 70 % of nginx. Prints each figure with OK or MISSED; exits 0 only when all are met
on every server measured. Debian's ``nginx`` is installed with apt-get when missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx
from _lake import free_port, wait_port

MiB = 1 << 20
GOALS = {"get": 0.80, "small": 0.50, "put": 0.70}


def ensure_nginx() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def start_nginx(
    work: Path, root: Path, upload: Path, workers: int
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        f"""
user root;
worker_processes {workers};
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {upload}/.tmp;
    server {{
        listen 127.0.0.1:{port};
        location /up/ {{
            root {upload.parent};
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
        }}
        location / {{ root {root}; }}
    }}
}}
"""
    )
    proc = subprocess.Popen(
        [ensure_nginx(), "-c", str(conf), "-p", str(work)], start_new_session=True
    )
    wait_port(port, proc, "nginx")
    return proc, port


def start_se(
    work: Path, root: Path, workers: int, server: str = "granian"
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [sys.executable, "-m", "fedlake.cli", "se", "serve", "--root", str(root)]
    argv += ["--port", str(port), "--workers", str(workers), "--allow-anonymous"]
    argv += ["--server", server]
    log = open(work / f"se-{server}.log", "wb")  # noqa: SIM115 - the server's lifetime
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_port(port, proc, "fedlake se serve")
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def make_big(path: Path, size: int) -> str:
    """A file of ``size`` random-ish bytes (a random 64 MiB block repeated, last one cut);
    returns its adler32."""
    block = os.urandom(64 * MiB)
    adler = 1
    with open(path, "wb") as fh:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            fh.write(piece)
            adler = zlib.adler32(piece, adler)
            left -= len(piece)
    return f"{adler:08x}"


def curl_speed(args: list[str]) -> float:
    """Bytes per second of one curl transfer."""
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-S",
            "--fail",
            "-o",
            "/dev/null",
            "-w",
            "%{speed_download} %{speed_upload}",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return max(float(out[0]), float(out[1]))


def best(runs: int, fn: Callable[[], float]) -> float:
    return max(fn() for _ in range(runs))


def small_rate(port: int, names: list[str], concurrency: int, work: Path) -> float:
    config = work / f"urls-{port}.txt"
    config.write_text(
        "".join(f'url = "http://127.0.0.1:{port}/small/{n}"\noutput = "/dev/null"\n' for n in names)
    )
    argv = [
        "curl",
        "-s",
        "-S",
        "--no-progress-meter",
        "--fail",
        "--parallel",
        "--parallel-max",
        str(concurrency),
    ]
    argv += ["--parallel-immediate", "--config", str(config)]
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    return len(names) / (time.perf_counter() - started)


def report(name: str, what: str, ours: float, theirs: float, unit: str, server: str) -> bool:
    ratio = ours / theirs
    ok = ratio >= GOALS[name]
    print(
        f"{what}: fedlake se ({server}) {ours:,.0f} {unit}, nginx {theirs:,.0f} {unit} -> "
        f"{ratio:.0%} "
        f"(goal >= {GOALS[name]:.0%}) {'OK' if ok else 'MISSED'}",
        flush=True,
    )
    return ok


def measure_se(
    port: int, args: argparse.Namespace, big: Path, adler: str, names: list[str], work: Path
) -> tuple[float, float, float]:
    """Big GET (MiB/s), small files (req/s) and big PUT (MiB/s) of one running SE."""
    size = big.stat().st_size
    get = best(args.runs, lambda: curl_speed([f"http://127.0.0.1:{port}/big.bin"])) / MiB
    small_rate(port, names[:500], args.concurrency, work)  # warm-up
    small = max(small_rate(port, names, args.concurrency, work) for _ in range(2))

    def put_se() -> float:
        url = f"http://127.0.0.1:{port}/se-up/big.bin"
        speed = curl_speed(["-T", str(big), "-H", f"Digest: adler32={adler}", url])
        r = httpx.head(url, headers={"Want-Digest": "adler32"})
        stored = int(r.headers["content-length"])
        if r.headers.get("digest") != f"adler32={adler}" or stored != size:
            raise SystemExit(f"the SE stored a wrong file: {r.headers}")
        (big.parent / "se-up" / "big.bin").unlink()
        return speed

    subprocess.run(["sync"], check=True)
    put = best(args.runs, put_se) / MiB
    return get, small, put


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048, help="the big file (MiB)")
    parser.add_argument("--small", type=int, default=10_000, help="number of 4 KiB files")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="processes of each server")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--server", default="granian,uvicorn", help="the SE's HTTP servers, comma-separated"
    )
    args = parser.parse_args()
    servers = [name.strip() for name in args.server.split(",") if name.strip()]
    ensure_nginx()
    work = Path(tempfile.mkdtemp(prefix="fedlake-bench-se-", dir="/tmp"))
    work.chmod(0o755)
    root, upload = work / "root", work / "nginx-up" / "up"
    (root / "small").mkdir(parents=True)
    (upload / ".tmp").mkdir(parents=True)
    (root / "se-up").mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    results: list[bool] = []
    try:
        size = args.size_mib * MiB
        big = root / "big.bin"
        adler = make_big(big, size)
        names = [f"f{i:05d}.bin" for i in range(args.small)]
        for name in names:
            (root / "small" / name).write_bytes(os.urandom(4096))
        subprocess.run(["cat", str(big)], stdout=subprocess.DEVNULL, check=True)  # warm cache
        nginx, nport = start_nginx(work, root, upload, args.workers)
        procs.append(nginx)
        print(
            f"{args.workers} workers each; big file {args.size_mib} MiB; best of {args.runs}",
            flush=True,
        )

        def put_nginx() -> float:
            speed = curl_speed(["-T", str(big), f"http://127.0.0.1:{nport}/up/big.bin"])
            if (upload / "big.bin").stat().st_size != size:
                raise SystemExit("nginx stored a wrong size")
            (upload / "big.bin").unlink()
            return speed

        n_get = best(args.runs, lambda: curl_speed([f"http://127.0.0.1:{nport}/big.bin"])) / MiB
        small_rate(nport, names[:500], args.concurrency, work)  # warm-up
        n_small = max(small_rate(nport, names, args.concurrency, work) for _ in range(2))
        subprocess.run(["sync"], check=True)
        n_put = best(args.runs, put_nginx) / MiB
        print(
            f"nginx: GET {n_get:,.0f} MiB/s, {n_small:,.0f} req/s, PUT {n_put:,.0f} MiB/s",
            flush=True,
        )
        for server in servers:
            se, sport = start_se(work, root, args.workers, server)
            procs.append(se)
            s_get, s_small, s_put = measure_se(sport, args, big, adler, names, work)
            stop(se)
            results += [
                report("get", f"GET {args.size_mib} MiB", s_get, n_get, "MiB/s", server),
                report(
                    "small",
                    f"GET {args.small} x 4 KiB, {args.concurrency} in flight",
                    s_small,
                    n_small,
                    "req/s",
                    server,
                ),
                report(
                    "put",
                    f"PUT {args.size_mib} MiB (SE: with Digest adler32)",
                    s_put,
                    n_put,
                    "MiB/s",
                    server,
                ),
            ]
    finally:
        for proc in procs:
            stop(proc)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
