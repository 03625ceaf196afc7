"""Real servers the tests start on loopback (S3, WebDAV, XRootD, ...), one module each.

Every module exposes a session-scoped pytest fixture that starts its server in a private
directory, waits until it answers, and stops it afterwards. A server whose program is not
installed skips its tests on a developer's machine, and fails them in CI (``CI=true``):
``scripts/components.d/`` installs them there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

__all__ = ["ServerProcess", "free_port", "require_program", "wait_until"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def require_program(name: str, install_hint: str) -> str:
    """The path of ``name``; skip (developer) or fail (CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed: {install_hint}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {msg}")
        pytest.skip(msg)
    return path


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class ServerProcess:
    """A server started in its own process group; its log is kept for failures."""

    def __init__(
        self,
        argv: Sequence[str],
        log: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> None:
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115 - kept open for the process' lifetime
        self.proc = subprocess.Popen(
            list(argv),
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            user=user,
        )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}; log:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wait_for_port(self, port: int, timeout: float = 30.0) -> None:
        def up() -> bool:
            self.check_alive()
            return port_open(port)

        wait_until(up, f"server on port {port} ({self.log})", timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self._fh.close()
