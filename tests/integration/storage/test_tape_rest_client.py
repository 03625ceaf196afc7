"""The davs/https/http plugin's WLCG Tape REST API client against real ``fedlake se serve``
processes in tape mode: opt-in through the registry, discovery, stage / is_online /
release, the errors for files the tape system does not know, and the credentials.

Files are uploaded through the plugin itself: in tape mode an upload lands on tape and is
not kept online. The emulation's own state (``state.sqlite`` below the SE's root) shows
the pins the API calls leave behind.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator

import pytest

from fedlake.domain.errors import ProtocolNotSupported
from fedlake.storage import get_storage
from fedlake.storage.backends.tape_rest_client import (
    DISCOVERY,
    HttpsTapeStorage,
    HttpTapeStorage,
    WebDAVTapeStorage,
)
from fedlake.storage.backends.webdav import HttpStorage
from fedlake.storage.base import NotOnline, Stageable
from fedlake.storage.credentials import bearer
from fedlake.storage.registry import protocol_options
from tests.integration.se.test_tape_rest import issuer, secured  # noqa: F401 - fixtures
from tests.issuer_app import TestIssuer
from tests.servers.fedlake_se import SEServer, running_se

TAPE = """
[tape]
recall_latency = 0.5
recall_throughput = 1e9
"""


@pytest.fixture(scope="module")
def tape_se() -> Iterator[SEServer]:
    with running_se(anonymous=True, config=TAPE) as server:
        yield server


@pytest.fixture(scope="module")
def disk_se() -> Iterator[SEServer]:
    """A plain SE (no tape mode): no Tape REST API, but it serves any file, such as a
    discovery document pointing elsewhere."""
    with running_se(anonymous=True) as server:
        yield server


@pytest.fixture
def tape() -> Iterator[HttpTapeStorage]:
    """A fresh plugin per test: nothing discovered or staged yet."""
    with HttpTapeStorage(timeout=30) as plugin:
        yield plugin


def pin_of(se: SEServer, path: str) -> float | None:
    """The emulation's pin (a time) on the online copy of ``path``; None: not online."""
    with sqlite3.connect(se.root / "state.sqlite") as con:
        row = con.execute(
            "SELECT pinned_until FROM online WHERE path = ? AND ready = 1", (path.lstrip("/"),)
        ).fetchone()
    return None if row is None else float(row[0])


def wait_online(plugin: WebDAVTapeStorage, url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not plugin.is_online(url):
        assert time.monotonic() < deadline, f"{url} did not come online"
        time.sleep(0.05)


def test_the_registry_builds_the_stageable_plugin_when_asked() -> None:
    attrs = json.dumps({"fedlake_storage_options": {"tape_rest": True, "timeout": 7}})
    plugin = get_storage("http", **protocol_options(attrs))
    assert isinstance(plugin, HttpTapeStorage) and isinstance(plugin, Stageable)
    assert isinstance(plugin, HttpStorage) and plugin.timeout == 7
    assert get_storage("http", tape_rest=True, timeout=7) is plugin
    plain = get_storage("http", timeout=7)
    assert not isinstance(plain, Stageable)
    assert get_storage("http", tape_rest=False, timeout=7) is plain
    assert type(get_storage("davs", tape_rest=True)) is WebDAVTapeStorage
    assert type(get_storage("https", tape_rest=True)) is HttpsTapeStorage
    with pytest.raises(ProtocolNotSupported, match="davs, http, https"):
        get_storage("file", tape_rest=True)
    with pytest.raises(ValueError, match="true or false"):
        get_storage("http", tape_rest="yes")


def test_stage_then_read_then_release(tape_se: SEServer, tape: HttpTapeStorage) -> None:
    data = os.urandom(5000)
    url = tape_se.url("/run1/f.raw")
    tape.write(url, [data])
    assert not tape.is_online(url)  # an upload lands on tape only
    with pytest.raises(NotOnline, match="not online"):
        b"".join(tape.read(url))
    assert tape.stat(url).size == 5000  # metadata needs no recall
    request_id = tape.stage(url, pin_seconds=600)
    assert tape.stage(url, pin_seconds=600) == request_id  # pending: the same request
    assert (tape_se.root / "stage-requests" / f"{request_id}.json").is_file()
    wait_online(tape, url)
    # completed and online (the engine may ask again just after the recall ended): the same
    # request, no second recall
    assert tape.stage(url, pin_seconds=600) == request_id
    requests = (tape_se.root / "stage-requests").glob("*.json")
    assert sum('"/run1/f.raw"' in r.read_text() for r in requests) == 1
    assert b"".join(tape.read(url)) == data
    pinned = pin_of(tape_se, "/run1/f.raw")
    assert pinned is not None and abs(pinned - (time.time() + 600)) < 60  # diskLifetime
    tape.release(url)
    assert pin_of(tape_se, "/run1/f.raw") == 0  # unpinned (still online: room enough)
    tape.release(url)  # nothing staged any more: a no-op
    assert tape.stage(url, pin_seconds=60) != request_id  # completed: a new request
    assert tape.is_online(url)


def test_a_file_staged_by_someone_else_is_online_and_not_released(
    tape_se: SEServer, tape: HttpTapeStorage
) -> None:
    url = tape_se.url("/run2/g.raw")
    tape.write(url, [b"g" * 100])
    with HttpTapeStorage(timeout=30) as other:
        other.stage(url, pin_seconds=600)
        wait_online(tape, url)  # archiveinfo: no request id needed
    tape.release(url)  # not staged through this plugin: left alone
    pinned = pin_of(tape_se, "/run2/g.raw")
    assert pinned is not None and pinned > time.time()


def test_files_the_tape_does_not_know(tape_se: SEServer, tape: HttpTapeStorage) -> None:
    missing = tape_se.url("/nowhere/none.raw")
    with pytest.raises(FileNotFoundError, match="unknown to the tape system"):
        tape.is_online(missing)
    tape.stage(missing)  # accepted: the recall fails on the server
    with pytest.raises(FileNotFoundError, match="the recall failed: file not found"):
        tape.stage(missing)
    tape.write(tape_se.url("/run3/h.raw"), [b"h"])
    with pytest.raises(IsADirectoryError):
        tape.is_online(tape_se.url("/run3"))
    with pytest.raises(FileNotFoundError):
        b"".join(tape.read(missing))


def test_an_endpoint_without_the_api(disk_se: SEServer, tape: HttpTapeStorage) -> None:
    url = disk_se.url("/plain/f.raw")
    tape.write(url, [b"disk"])
    with pytest.raises(ProtocolNotSupported, match="offers no WLCG Tape REST API"):
        tape.is_online(url)
    assert b"".join(tape.read(url)) == b"disk"  # the WebDAV methods work as ever


def test_discovery_honours_the_advertised_v1_endpoint(
    tape_se: SEServer, disk_se: SEServer, tape: HttpTapeStorage
) -> None:
    """``disk_se`` serves a discovery document whose v1 endpoint is ``tape_se``'s API: the
    paths of ``disk_se``'s URLs are staged there. The document is read once per host."""
    document = disk_se.root / DISCOVERY.lstrip("/")
    document.parent.mkdir(parents=True, exist_ok=True)
    endpoints = [
        {"uri": "/api/v0", "version": "v0", "metadata": {}},
        {"uri": tape_se.url("/api/v1"), "version": "v1", "metadata": {}},
    ]
    document.write_text(json.dumps({"sitename": "elsewhere", "endpoints": endpoints}))
    tape.write(tape_se.url("/moved/k.raw"), [b"k" * 10])
    url = disk_se.url("/moved/k.raw")  # no such file on disk_se
    assert tape.tape_endpoint(url) == tape_se.url("/api/v1")
    document.unlink()
    assert not tape.is_online(url)  # cached: disk_se is not asked again
    tape.stage(url)
    wait_online(tape, tape_se.url("/moved/k.raw"))
    document.write_text(json.dumps({"endpoints": [{"uri": "/api/v2", "version": "v2"}]}))
    try:
        fresh = HttpTapeStorage(timeout=30)
        with fresh, pytest.raises(ProtocolNotSupported, match=r"no v1 endpoint.*offered: v2"):
            fresh.is_online(url)
    finally:
        document.unlink()


# --- credentials -----------------------------------------------------------------------


def test_the_api_calls_carry_the_plugins_credentials(
    secured: SEServer,  # noqa: F811 - the fixture: tokens only, recalls never due
    issuer: TestIssuer,  # noqa: F811
) -> None:
    url = secured.url("/cms/a.root")
    stager = issuer.mint("stager", scope="storage.stage:/cms")
    reader = issuer.mint("reader", scope="storage.read:/cms")
    with HttpTapeStorage(timeout=30) as anonymous:
        with pytest.raises(PermissionError, match="401"):
            anonymous.is_online(url)
        with bearer(reader):  # the transfer engine's per-copy token
            assert not anonymous.is_online(url)
            with pytest.raises(PermissionError, match=r"403.*storage\.stage on /cms/a\.root"):
                anonymous.stage(url)
    with HttpTapeStorage(timeout=30, token=stager) as plugin:  # the token option
        request_id = plugin.stage(url)
        assert plugin.stage(url) == request_id
        assert not plugin.is_online(url)
        plugin.release(url)  # cancels the pending recall
    stored = json.loads((secured.root / "stage-requests" / f"{request_id}.json").read_text())
    assert [f["state"] for f in stored["files"]] == ["CANCELLED"]
