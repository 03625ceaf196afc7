"""Not collected by itself (no ``test_`` prefix): ``test_xrdhttp_revival.py`` runs it in
a pytest of its own. Its first try stops the XrdHttp server (SIGSTOP) and then fails on
the timeout, as the CI run in which a server stopped answering did; the second try
must find the server answering again."""

from __future__ import annotations

import os
import signal
import ssl
from pathlib import Path

import httpx

from tests.servers import xrdhttp as xrdhttp_servers
from tests.servers.xrdhttp import XrdHttpServer

xrdhttp_ca = xrdhttp_servers.xrdhttp_ca
xrdhttp_server = xrdhttp_servers.xrdhttp_server


def test_a_request(xrdhttp_server: XrdHttpServer) -> None:
    first_try = Path(os.environ["FEDLAKE_TEST_FIRST_TRY"])
    if not first_try.exists():
        first_try.touch()
        os.kill(xrdhttp_server.process.proc.pid, signal.SIGSTOP)
    context = ssl.create_default_context(cafile=str(xrdhttp_server.ca))
    r = httpx.get(xrdhttp_server.url("/", scheme="https"), verify=context, timeout=3)
    assert r.status_code < 500


def test_a_plain_failure(xrdhttp_server: XrdHttpServer) -> None:
    assert xrdhttp_server.answers()
    raise AssertionError("fails on purpose, with the server answering")
