"""moto_server (PyPI ``moto[server]``): a second, in-memory S3 implementation.

It accepts any credentials (signatures are not checked), so permission tests run
against SeaweedFS only. ``start_moto`` also serves tests that stop or pause their own
server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess, free_port, wait_until
from tests.servers.seaweedfs import S3Server, venv_program

__all__ = ["moto", "start_moto"]


def start_moto(work: Path) -> S3Server:
    """Start ``moto_server`` on a free loopback port and wait until it answers S3 calls."""
    program = venv_program("moto_server", "pip install 'moto[server]' (in the test extra)")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = ServerProcess([program, "-H", "127.0.0.1", "-p", str(port)], work / "moto.log", cwd=work)
    server = S3Server("moto", port, "mock-key", "mock-secret", proc, checks_signatures=False)
    try:
        proc.wait_for_port(port, timeout=60)
        probe = server.client(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5)

        def answers() -> bool:
            proc.check_alive()
            try:
                probe.list_buckets()
            except Exception:  # still starting
                return False
            return True

        wait_until(answers, f"moto_server on port {port} ({work / 'moto.log'})", 60)
    except BaseException:
        proc.stop(timeout=2)
        raise
    return server


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()
