"""A real XRootD server (Debian ``xrootd-server``) serving a private directory on loopback.

xrootd refuses to run as root, so it runs as the ``xrootd`` user (``-R xrootd``); its
directory and every parent must be enterable by that user, hence a ``mkdtemp`` under
/tmp made 0755 rather than pytest's tmp_path (/tmp/pytest-of-root is 0700). It computes
adler32 (and whatever else it is given) for the checksum query, and runs root://
third-party copies with ``xrdcp --server``.
"""

from __future__ import annotations

import pwd
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import ServerProcess, free_port, require_program

__all__ = ["XRootDServer", "running_xrootd", "xrootd_server", "xrootd_server2"]

INSTALL_HINT = "bash scripts/components.d/xrootd.sh"


@dataclass
class XRootDServer:
    port: int
    root: Path  # the served directory (oss.localroot)
    process: ServerProcess

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        """``root://127.0.0.1:PORT//abs/path``."""
        return f"root://{self.address}/{'/' + path.lstrip('/')}"

    def stop(self) -> None:
        self.process.stop()

    def start(self) -> None:
        """Start again after :meth:`stop`, same port and directory."""
        self.process = _spawn(self.root.parent, self.port)


def _config(base: Path, port: int, checksums: str, extra: str) -> str:
    return "\n".join(
        [
            "all.export /",
            f"oss.localroot {base / 'data'}",
            f"all.adminpath {base / 'admin'}",
            f"all.pidpath {base / 'run'}",
            "xrd.network nodnr",
            f"xrd.port {port}",
            "sec.protocol unix",
            "xrootd.seclib default",
            f"xrootd.chksum max 2 {checksums}",
            f"ofs.tpc autorm pgm {shutil.which('xrdcp') or '/usr/bin/xrdcp'} --server",
            extra,
            "",
        ]
    )


def _spawn(base: Path, port: int) -> ServerProcess:
    program = require_program("xrootd", INSTALL_HINT)
    argv = [program, "-R", "xrootd", "-c", str(base / "xrootd.cfg"), "-n", "test"]
    process = ServerProcess(argv, base / "xrootd.log")
    try:
        process.wait_for_port(port, timeout=20)
    except BaseException:
        process.stop()
        raise
    return process


@contextmanager
def running_xrootd(checksums: str = "adler32", extra_config: str = "") -> Iterator[XRootDServer]:
    """Start a server with the given checksum algorithms (and config lines); stop and
    remove it afterwards."""
    require_program("xrootd", INSTALL_HINT)
    require_program("xrdcp", INSTALL_HINT)
    user = pwd.getpwnam("xrootd")
    base = Path(tempfile.mkdtemp(prefix="fedlake-xrootd-", dir="/tmp"))
    server: XRootDServer | None = None
    try:
        base.chmod(0o755)
        for sub in ("data", "admin", "run"):
            (base / sub).mkdir()
        port = free_port()
        (base / "xrootd.cfg").write_text(_config(base, port, checksums, extra_config))
        for path in [base, *base.iterdir()]:
            shutil.chown(path, user.pw_uid, user.pw_gid)
        server = XRootDServer(port, base / "data", _spawn(base, port))
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def xrootd_server() -> Iterator[XRootDServer]:
    """Computes adler32 and md5 on request."""
    with running_xrootd("adler32 md5") as server:
        yield server


@pytest.fixture(scope="session")
def xrootd_server2() -> Iterator[XRootDServer]:
    """A second site, adler32 only (so md5 must be streamed)."""
    with running_xrootd("adler32") as server:
        yield server
