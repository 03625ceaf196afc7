"""Fixtures for the rucio-client conformance tests.

One live ``fedlake up`` per test module and backend (SQLite, and PostgreSQL when
``FEDLAKE_TEST_DATABASE_URL`` is set), a minimal ``rucio.cfg`` pointing at it, a helper
to run the stock ``rucio`` CLI against it, and a logged-in httpx client to inspect the
catalogue through the REST API afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import (
    ROOT_PASSWORD,
    LiveLake,
    lake_on,
    log_in,
    pg_base_url,
)

RUCIO_BACKENDS = ["sqlite"] + (["postgresql"] if pg_base_url() else [])
RUCIO_BIN = Path(sys.executable).parent / "rucio"
STREAM = "application/x-json-stream"


def write_rucio_cfg(path: Path, url: str) -> Path:
    """A minimal client config: userpass as root, no [database] section."""
    path.write_text(
        "[common]\n\n[policy]\n\n[client]\n"
        f"rucio_host = {url}\n"
        f"auth_host = {url}\n"
        "auth_type = userpass\n"
        "username = root\n"
        f"password = {ROOT_PASSWORD}\n"
        "account = root\n"
    )
    return path


def adler32_hex(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class RucioLake:
    """A live lake plus everything needed to drive the stock rucio clients at it."""

    live: LiveLake
    backend: str
    workdir: Path
    config: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.live.url

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``rucio <args>``; never raises on a non-zero exit."""
        return subprocess.run(
            [str(RUCIO_BIN), *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli_ok(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``rucio <args>`` and assert it exits 0."""
        proc = self.cli(*args, timeout=timeout)
        assert proc.returncode == 0, (
            f"rucio {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
        return proc

    def cli_many(
        self, *commands: tuple[str, ...], timeout: float = 120.0
    ) -> list[subprocess.CompletedProcess[str]]:
        """Run independent ``rucio`` commands concurrently; results in the given order."""
        procs = [
            subprocess.Popen(
                [str(RUCIO_BIN), *cmd],
                env=self.env,
                cwd=self.workdir,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for cmd in commands
        ]
        results = []
        try:
            for cmd, p in zip(commands, procs, strict=True):
                out, err = p.communicate(timeout=timeout)
                results.append(subprocess.CompletedProcess(["rucio", *cmd], p.returncode, out, err))
        finally:
            for p in procs:  # only on a timeout or error: never leave a client running
                if p.poll() is None:
                    p.kill()
                    p.communicate()
        return results


def _client_env(workdir: Path, config: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FEDLAKE_", "RUCIO_", "X509_", "BEARER_TOKEN"))
    }
    token_tmp = workdir / "tmp"
    token_tmp.mkdir(exist_ok=True)
    env.update(
        RUCIO_CONFIG=str(config),
        TMPDIR=str(token_tmp),  # the client's token cache lives under tempfile.gettempdir()
        COLUMNS="250",
        NO_COLOR="1",
    )
    return env


@pytest.fixture(scope="module", params=RUCIO_BACKENDS)
def rucio_lake(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RucioLake]:
    """A live lake (module scope, one per backend) with a rucio.cfg pointing at it."""
    workdir = tmp_path_factory.mktemp(f"rucio-{request.param}")
    with lake_on(request.param, workdir / "data") as live:
        config = write_rucio_cfg(workdir / "rucio.cfg", live.url)
        yield RucioLake(live, request.param, workdir, config, _client_env(workdir, config))


@pytest.fixture(scope="module")
def lake_api(rucio_lake: RucioLake) -> Iterator[httpx.Client]:
    """httpx client on the lake's REST API, logged in as root."""
    with httpx.Client(base_url=rucio_lake.url, timeout=60) as http:
        log_in(http)
        yield http


def api_json(http: httpx.Client, method: str, path: str, **kw: Any) -> Any:
    """One JSON document from the lake; asserts a 2xx status."""
    r = http.request(method, path, **kw)
    assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def api_stream(http: httpx.Client, method: str, path: str, **kw: Any) -> list[Any]:
    """A newline-delimited JSON stream from the lake; asserts 200 and the exact type."""
    r = http.request(method, path, **kw)
    assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
    assert r.headers["content-type"] == STREAM
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]
