"""A real WsgiDAV server (PyPI ``wsgidav`` on ``cheroot``) serving a private directory.

Anonymous read/write over plain HTTP on loopback. WsgiDAV answers no ``Want-Digest`` and
has no HTTP third-party copy: it is the plain RFC 4918 WebDAV server of the tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import ServerProcess, free_port

__all__ = ["WsgiDAVServer", "wsgidav_server"]


@dataclass
class WsgiDAVServer:
    port: int
    root: Path  # the served directory
    process: ServerProcess

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def local(self, url: str) -> Path:
        """The file behind one of this server's (literal) URLs."""
        prefix = self.url("/")
        assert url.startswith(prefix), url
        return self.root / url[len(prefix) :].strip("/")


def _require_wsgidav() -> None:
    if importlib.util.find_spec("wsgidav") is None or importlib.util.find_spec("cheroot") is None:
        msg = "wsgidav/cheroot are not installed: pip install -e '.[test]'"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {msg}")
        pytest.skip(msg)


@pytest.fixture(scope="session")
def wsgidav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WsgiDAVServer]:
    _require_wsgidav()
    base = tmp_path_factory.mktemp("wsgidav")
    root = base / "root"
    root.mkdir()
    port = free_port()
    config = {  # JSON is YAML: WsgiDAV reads either
        "host": "127.0.0.1",
        "port": port,
        "server": "cheroot",
        "provider_mapping": {"/": str(root)},
        "http_authenticator": {
            "domain_controller": None,
            "accept_basic": False,
            "accept_digest": False,
            "default_to_digest": False,
        },
        "simple_dc": {"user_mapping": {"*": True}},
        "dir_browser": {"enable": False},
        "verbose": 1,
        "logging": {"enable_loggers": []},
    }
    (base / "wsgidav.json").write_text(json.dumps(config))
    argv = [
        sys.executable,
        "-m",
        "wsgidav.server.server_cli",
        "--config",
        str(base / "wsgidav.json"),
    ]
    process = ServerProcess(argv, base / "wsgidav.log")
    try:
        process.wait_for_port(port, timeout=30)
        yield WsgiDAVServer(port, root, process)
    finally:
        process.stop()
