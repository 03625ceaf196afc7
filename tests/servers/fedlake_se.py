"""Our own storage element, ``fedlake se serve``, started as a real subprocess on loopback.

:func:`running_se` starts one with any options (anonymous or with a TOML configuration,
plain HTTP or TLS with the self-signed pair of ``tests.servers.xrdhttp.make_certificate``,
a directory or an S3 bucket of ``tests.servers.seaweedfs``) and stops it afterwards; tests
build module-scoped fixtures on it.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.servers import ServerProcess, free_port
from tests.servers.seaweedfs import S3Server

__all__ = ["SEServer", "running_se"]


@dataclass
class SEServer:
    port: int
    root: Path  # the served directory
    tls: bool
    ca: Path | None  # the certificate to trust, with TLS
    process: ServerProcess
    s3: tuple[S3Server, str] | None = None  # the S3 server and ``--s3`` URL, if one is served

    def url(self, path: str = "/", scheme: str | None = None) -> str:
        scheme = scheme or ("https" if self.tls else "http")
        return f"{scheme}://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def local(self, url: str) -> Path:
        """The file behind one of this server's (literal) URLs."""
        path = url.partition("://")[2].partition("/")[2]
        return self.root / path.strip("/")


@contextmanager
def running_se(
    *,
    anonymous: bool = False,
    config: str | None = None,
    tls: tuple[Path, Path] | None = None,
    workers: int = 1,
    root: Path | None = None,
    port: int | None = None,
    server: str | None = None,
    metrics_port: int | None = None,
    s3: tuple[S3Server, str] | None = None,
) -> Iterator[SEServer]:
    """One ``fedlake se serve`` process; ``config`` is the TOML text of ``--config``
    (``port``: where to listen, when the configuration must name it; default a free one;
    ``server``: ``--server``, else the default or ``FEDLAKE_SE_SERVER``; ``metrics_port``:
    ``--metrics-port``; ``s3``: an S3 server and the ``s3://host:port/bucket[/prefix]`` URL
    to serve with ``--s3`` instead of ``--root``, its credentials in the environment)."""
    with tempfile.TemporaryDirectory(prefix="fedlake-se-") as tmp:
        base = Path(tmp)
        served = root or base / "root"
        served.mkdir(exist_ok=True)
        port = port or free_port()
        argv = [sys.executable, "-m", "fedlake.cli", "se", "serve"]
        env: dict[str, str] = {}
        if s3 is None:
            argv += ["--root", str(served)]
        else:
            argv += ["--s3", s3[1]]
            env["FEDLAKE_S3_ACCESS_KEY"] = s3[0].access_key
            env["FEDLAKE_S3_SECRET_KEY"] = s3[0].secret_key
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        if anonymous:
            argv.append("--allow-anonymous")
        if config is not None:
            (base / "se.toml").write_text(config)
            argv += ["--config", str(base / "se.toml")]
        if tls is not None:
            argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        if server is not None:
            argv += ["--server", server]
        if metrics_port is not None:
            argv += ["--metrics-port", str(metrics_port)]
        process = ServerProcess(argv, base / "se.log", env=env)
        try:
            process.wait_for_port(port, timeout=30)
            yield SEServer(port, served, tls is not None, tls[0] if tls else None, process, s3)
        finally:
            process.stop()
