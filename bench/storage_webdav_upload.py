"""The davs/https/http plugin's upload speed next to the server's own client tool (curl).

Starts private WebDAV servers on loopback: WsgiDAV (PyPI ``wsgidav`` on cheroot, plain
HTTP) and, when Debian's ``xrootd`` is installed, XrdHttp over TLS (self-signed
certificate made with ``openssl``). Writes a random file (1 GiB by default) and uploads it
to each server with ``curl -T`` and with the plugin's ``put_file``: a temporary name,
``Content-Length``, adler32 and md5 of every byte sent, a size check (and, on XrdHttp, the
server's own adler32 via ``Want-Digest``), then MOVE onto the name. Both read a warm page
cache and start after ``sync``; each upload is timed alone, from the call to the file
being complete under its name. The plugin's file is then checked (size and adler32).

Goal: report MB/s next to the server's own client tool (no pass mark; exit 0 unless an
upload fails or the stored file is wrong).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from _lake import free_port, wait_port

from fedlake.storage.backends.webdav import WebDAVStorage

MiB = 1 << 20
GOAL = (
    "S3 and WebDAV uploads of a 1 GiB file: report MB/s next to the server's own client tool (curl)"
)


def start_wsgidav(work: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """WsgiDAV serving ``work/dav``; returns (process, base URL, served directory)."""
    root = work / "dav"
    root.mkdir()
    port = free_port()
    (work / "wsgidav.yaml").write_text(
        "\n".join(
            [
                "host: 127.0.0.1",
                f"port: {port}",
                "server: cheroot",
                f'provider_mapping: {{"/": "{root}"}}',
                "http_authenticator: {domain_controller: null, accept_basic: false, "
                "accept_digest: false, default_to_digest: false}",
                'simple_dc: {user_mapping: {"*": true}}',
                "dir_browser: {enable: false}",
                "verbose: 1",
                "",
            ]
        )
    )
    argv = [sys.executable, "-m", "wsgidav.server.server_cli", "--config"]
    with open(work / "wsgidav.log", "wb") as log:
        proc = subprocess.Popen(
            [*argv, str(work / "wsgidav.yaml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_port(port, proc, "wsgidav")
    return proc, f"http://127.0.0.1:{port}", root


def start_xrdhttp(work: Path) -> tuple[subprocess.Popen[bytes], str, Path, Path] | None:
    """XrdHttp over TLS serving a 0755 directory under /tmp (xrootd runs as ``xrootd``).

    Returns (process, base URL, served directory, CA file), or None without xrootd.
    """
    xrootd, openssl = shutil.which("xrootd"), shutil.which("openssl")
    if not xrootd or not openssl:
        print("xrootd/openssl not installed (bash scripts/components.d/webdav.sh): XrdHttp skipped")
        return None
    base = Path(tempfile.mkdtemp(prefix="fedlake-bench-xrdhttp-", dir="/tmp"))
    base.chmod(0o755)
    for sub in ("data", "admin", "run", "tls"):
        (base / sub).mkdir()
    cert, key = base / "tls" / "hostcert.pem", base / "tls" / "hostkey.pem"
    san = "subjectAltName=DNS:localhost,IP:127.0.0.1"
    req = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"]
    argv = [openssl, *req, "-addext", san, "-keyout", str(key), "-out", str(cert)]
    subprocess.run(argv, check=True, capture_output=True)
    key.chmod(0o600)
    root_port, http_port = free_port(), free_port()
    (base / "xrootd.cfg").write_text(
        "\n".join(
            [
                "all.export /",
                f"oss.localroot {base / 'data'}",
                f"all.adminpath {base / 'admin'}",
                f"all.pidpath {base / 'run'}",
                "xrd.network nodnr",
                f"xrd.port {root_port}",
                f"xrd.protocol XrdHttp:{http_port} libXrdHttp.so",
                "sec.protocol unix",
                "xrootd.seclib default",
                "xrootd.chksum max 4 adler32 md5",
                "http.listingdeny false",
                f"xrd.tls {cert} {key}",
                f"xrd.tlsca certfile {cert}",
                "",
            ]
        )
    )
    user = pwd.getpwnam("xrootd")
    for path in [base, *base.iterdir(), *(base / "tls").iterdir()]:
        os.chown(path, user.pw_uid, user.pw_gid)
    with open(work / "xrootd.log", "wb") as log:
        proc = subprocess.Popen(
            [xrootd, "-R", "xrootd", "-c", str(base / "xrootd.cfg"), "-n", "bench"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_port(http_port, proc, "xrootd")
    return proc, f"https://127.0.0.1:{http_port}", base, cert


def make_file(path: Path, size: int) -> str:
    """Random bytes; returns their adler32."""
    adler = 1
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(64 * MiB, left))
            adler = zlib.adler32(block, adler)
            fh.write(block)
            left -= len(block)
    return f"{adler & 0xFFFFFFFF:08x}"


def timed(step: Callable[[], object]) -> float:
    os.sync()  # each timed upload starts with no dirty pages of the one before it
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def curl_put(src: Path, url: str, ca: Path | None) -> None:
    argv = ["curl", "-sS", "-f", "-o", "/dev/null", "-T", str(src), url]
    if ca is not None:
        argv[1:1] = ["--cacert", str(ca)]
    subprocess.run(argv, check=True)


def bench_server(
    name: str, base: str, served: Path, ca: Path | None, src: Path, size: int, want: str
) -> bool:
    storage = WebDAVStorage(verify=str(ca) if ca else True, timeout=600)
    plain = WebDAVStorage(verify=str(ca) if ca else True, timeout=600, verify_digest=False)
    storage.write(f"{base}/warm/up.bin", [os.urandom(MiB)])  # connections and dirs exist
    plain.write(f"{base}/warm/up2.bin", [os.urandom(MiB)])
    curl_s = timed(lambda: curl_put(src, f"{base}/curl.bin", ca))
    (served / "curl.bin").unlink()
    plugin_s = timed(lambda: storage.put_file(str(src), f"{base}/up/plugin.bin"))
    st = storage.stat(f"{base}/up/plugin.bin")
    adler = storage.checksum(f"{base}/up/plugin.bin", "adler32")
    ok = (st.size, adler) == (size, want)
    if not ok:
        print(f"{name}: stored file is wrong: {st.size} bytes, adler32 {adler}; want {want}")
    storage.delete(f"{base}/up/plugin.bin")
    mb = size / 1e6
    line = (
        f"webdav upload of {size / (1 << 30):.2f} GiB to {name} on loopback: "
        f"plugin put_file {mb / plugin_s:,.0f} MB/s ({plugin_s:.2f} s), "
        f"curl -T {mb / curl_s:,.0f} MB/s ({curl_s:.2f} s), "
        f"ratio {curl_s / plugin_s:.2f} x curl"
    )
    if name.startswith("XrdHttp"):  # the server's own adler32 check reads the file again
        bare_s = timed(lambda: plain.put_file(str(src), f"{base}/up/bare.bin"))
        plain.delete(f"{base}/up/bare.bin")
        line += f"; without the server-side adler32 check {mb / bare_s:,.0f} MB/s ({bare_s:.2f} s)"
    print(line, flush=True)
    storage.close()
    plain.close()
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=1 << 30, help="bytes to upload (1 GiB)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directories")
    args = p.parse_args()
    if not shutil.which("curl"):
        raise SystemExit("curl is not installed: bash scripts/components.d/webdav.sh")

    work = Path(tempfile.mkdtemp(prefix="fedlake-bench-webdav-"))
    procs: list[subprocess.Popen[bytes]] = []
    xrd_base: Path | None = None
    ok = True
    try:
        src = work / "upload.bin"
        want = make_file(src, args.size)
        with open(src, "rb") as fh:  # warm the page cache for every upload
            while fh.read(64 * MiB):
                pass
        dav_proc, dav_url, dav_root = start_wsgidav(work)
        procs.append(dav_proc)
        ok &= bench_server("WsgiDAV 4.4 (http)", dav_url, dav_root, None, src, args.size, want)
        xrd = start_xrdhttp(work)
        if xrd is not None:
            xrd_proc, xrd_url, xrd_base, ca = xrd
            procs.append(xrd_proc)
            served = xrd_base / "data"
            ok &= bench_server("XrdHttp 5.5 (https)", xrd_url, served, ca, src, args.size, want)
        print(f"goal: {GOAL} {'OK' if ok else 'FAILED'}")
        return 0 if ok else 1
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            if xrd_base is not None:
                shutil.rmtree(xrd_base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
