"""XRootD's HTTP interface, XrdHttp, over TLS with HTTP third-party copy (``libXrdHttpTPC``).

Debian's ``xrootd-server`` 5.5 with a self-signed certificate made by ``openssl`` for
``127.0.0.1``/``localhost``; the same certificate is the CA both the tests (``verify``)
and the servers (for each other, in third-party copies) trust. XrdHttp loads its TPC
handler only when TLS is configured. The servers compute adler32 and md5 for
``Want-Digest``.

xrootd refuses to run as root: it runs as user ``xrootd`` (``-R xrootd``), so its
directory and every parent must be enterable by that user: a ``mkdtemp`` under /tmp
made 0755, not pytest's tmp_path (/tmp/pytest-of-root is 0700).

Once in a CI run (stop 14, 2026-11-29) a session's server stopped answering mid-test: a
request on an open connection got no answer and every new connection timed out in the
TLS handshake, for the rest of the run; it never happened in 100-odd local runs of the
same files. ``RUNNING`` lists this process's servers so that ``tests/conftest.py`` can
tell, when a test fails, whether a server has stopped answering: then it prints the
server's state and log (``diagnose``), starts it again on the same ports and directory
(``restart``), and runs that test once more. A test that fails against a server that
still answers fails as always.
"""

from __future__ import annotations

import pwd
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import ServerProcess, free_port, require_program

__all__ = [
    "RUNNING",
    "XrdHttpServer",
    "make_certificate",
    "running_xrdhttp",
    "xrdhttp_ca",
    "xrdhttp_server",
    "xrdhttp_server2",
]

INSTALL_HINT = "bash scripts/components.d/webdav.sh"


@dataclass
class XrdHttpServer:
    http_port: int
    root_port: int
    root: Path  # the served directory (oss.localroot)
    ca: Path  # the certificate to trust (``verify``)
    process: ServerProcess
    argv: list[str]

    def url(self, path: str = "/", scheme: str = "davs") -> str:
        return f"{scheme}://127.0.0.1:{self.http_port}/{path.lstrip('/')}"

    def local(self, url: str) -> Path:
        """The file behind one of this server's (literal) URLs."""
        path = url.partition("://")[2].partition("/")[2]
        return self.root / path.strip("/")

    def answers(self, timeout: float = 10.0) -> bool:
        """Whether a new connection gets any HTTP answer within ``timeout``."""
        try:
            context = ssl.create_default_context(cafile=str(self.ca))
            httpx.get(self.url(scheme="https"), verify=context, timeout=timeout)
        except httpx.HTTPError:
            return False
        return True

    def diagnose(self) -> str:
        """The process's and its threads' states, their stacks (gdb, when installed) and
        the end of the server's log."""
        pid = self.process.proc.pid
        lines = [f"xrootd pid {pid}, https port {self.http_port}"]
        gdb = shutil.which("gdb")
        if gdb:
            run = subprocess.run(
                [gdb, "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            lines.append(run.stdout[-6000:])
        for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
            try:
                state = (task / "stat").read_text().split(") ", 1)[1].split()[0]
                lines.append(f"thread {task.name}: {state} in {(task / 'wchan').read_text()}")
            except (OSError, IndexError):
                continue
        lines.append("--- end of the log ---")
        lines.append(self.process.tail(4000))
        return "\n".join(lines)

    def restart(self) -> None:
        """Stop the server (killed if need be) and start it again, same ports and files."""
        self.process.stop(timeout=5)
        self.process = ServerProcess(self.argv, self.process.log, cwd=self.root.parent)
        self.process.wait_for_port(self.http_port, timeout=20)


#: the servers this process runs now (see the module docstring)
RUNNING: list[XrdHttpServer] = []


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 and localhost (openssl)."""
    openssl = require_program("openssl", INSTALL_HINT)
    cert, key = directory / "hostcert.pem", directory / "hostkey.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _config(base: Path, root_port: int, http_port: int) -> str:
    tls = base / "tls"
    return "\n".join(
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
            f"ofs.tpc autorm pgm {shutil.which('xrdcp') or '/usr/bin/xrdcp'} --server",
            "http.listingdeny false",
            "http.desthttps false",
            "http.exthandler xrdtpc libXrdHttpTPC.so",
            f"xrd.tls {tls / 'hostcert.pem'} {tls / 'hostkey.pem'}",
            f"xrd.tlsca certfile {tls / 'hostcert.pem'}",
            "",
        ]
    )


@contextmanager
def running_xrdhttp(cert: Path, key: Path) -> Iterator[XrdHttpServer]:
    """One XrdHttp server with the given TLS pair; stopped and removed afterwards."""
    program = require_program("xrootd", INSTALL_HINT)
    user = pwd.getpwnam("xrootd")
    base = Path(tempfile.mkdtemp(prefix="fedlake-xrdhttp-", dir="/tmp"))
    process: ServerProcess | None = None
    try:
        base.chmod(0o755)
        for sub in ("data", "admin", "run", "tls"):
            (base / sub).mkdir()
        shutil.copy(cert, base / "tls" / "hostcert.pem")
        shutil.copy(key, base / "tls" / "hostkey.pem")
        (base / "tls" / "hostkey.pem").chmod(0o600)
        root_port, http_port = free_port(), free_port()
        (base / "xrootd.cfg").write_text(_config(base, root_port, http_port))
        for path in [base, *base.iterdir(), *(base / "tls").iterdir()]:
            shutil.chown(path, user.pw_uid, user.pw_gid)
        argv = [program, "-R", "xrootd", "-c", str(base / "xrootd.cfg"), "-n", "fedlake"]
        # its home directory (<cwd>/<-n name>) is made in the base, which user xrootd owns
        process = ServerProcess(argv, base / "xrootd.log", cwd=base)
        process.wait_for_port(http_port, timeout=20)
        server = XrdHttpServer(
            http_port, root_port, base / "data", base / "tls" / "hostcert.pem", process, argv
        )
        RUNNING.append(server)
        try:
            yield server
        finally:
            RUNNING.remove(server)
            process = server.process  # restart() may have replaced it
    finally:
        if process is not None:
            process.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def xrdhttp_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The session's self-signed certificate and key (both servers use them)."""
    return make_certificate(tmp_path_factory.mktemp("xrdhttp-tls"))


@pytest.fixture(scope="session")
def xrdhttp_server(xrdhttp_ca: tuple[Path, Path]) -> Iterator[XrdHttpServer]:
    with running_xrdhttp(*xrdhttp_ca) as server:
        yield server


@pytest.fixture(scope="session")
def xrdhttp_server2(xrdhttp_ca: tuple[Path, Path]) -> Iterator[XrdHttpServer]:
    """A second site, for third-party copies between two servers."""
    with running_xrdhttp(*xrdhttp_ca) as server:
        yield server


def revive_stopped_servers() -> str:
    """Restart each running server that no longer answers; their diagnoses ("" if every
    server answers)."""
    reports = []
    for server in list(RUNNING):
        if server.answers():
            continue
        reports.append(server.diagnose())
        server.restart()
    return "\n\n".join(reports)
