"""The ``fedlake`` command against a live lake: up, upload, ls, meta, download, restarts,
and crash safety with real process kills (SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fedlake.client import Client, ClientConfig
from tests.e2e.cli import fedlake_command, fedlake_env, run_fedlake
from tests.helpers import (
    ROOT_PASSWORD,
    LiveLake,
    free_port,
    lake_on,
    pg_base_url,
    start_lake,
)

BACKENDS = ["sqlite"] + (["postgresql"] if pg_base_url() else [])


@pytest.fixture(params=BACKENDS)
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveLake]:
    with lake_on(request.param, tmp_path / "data") as lake:
        yield lake


def fedlake(live: LiveLake, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``fedlake`` command as root (300 s at most); assert it succeeds."""
    return run_fedlake(live.url, *args, data_dir=live.data_dir, timeout=300)


_open: list[Client] = []


def client(live: LiveLake) -> Client:
    c = Client(ClientConfig(url=live.url, username="root", password=ROOT_PASSWORD, account="root"))
    _open.append(c)
    return c


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def make_tree(root: Path, n: int, size: int) -> dict[str, bytes]:
    root.mkdir(parents=True)
    (root / "sub").mkdir()
    out = {}
    for i in range(n):
        data = os.urandom(size)
        where = root / ("sub" if i % 3 == 0 else "") / f"file{i:04d}.dat"
        where.write_bytes(data)
        out[where.name] = data
    return out


def test_upload_ls_meta_download(live: LiveLake, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "night1", 12, 50_000)
    out = fedlake(
        live,
        "upload",
        "--rse",
        "LOCAL-DISK",
        "--dataset",
        "user.root:night1",
        str(tmp_path / "night1"),
    )
    assert "uploaded 12 file(s)" in out.stdout
    listing = json.loads(fedlake(live, "ls", "user.root:night1", "--json").stdout)
    assert sorted(r["name"] for r in listing) == sorted(files)
    fedlake(live, "meta", "set", "user.root:file0001.dat", "run_number=150", "datatype=raw")
    fedlake(live, "meta", "set", "user.root:file0002.dat", "run_number=90", "datatype=raw")
    found = json.loads(
        fedlake(live, "ls", "user.root", "--filter", "run_number>100,datatype=raw", "--json").stdout
    )
    assert [r["name"] for r in found] == ["file0001.dat"]
    meta = json.loads(fedlake(live, "meta", "get", "user.root:file0001.dat", "--json").stdout)
    assert meta == {"run_number": 150, "datatype": "raw"}
    stat = json.loads(fedlake(live, "stat", "user.root:file0001.dat", "--json").stdout)
    assert stat["adler32"] == f"{zlib.adler32(files['file0001.dat']) & 0xFFFFFFFF:08x}"
    assert stat["replicas"] == "LOCAL-DISK(AVAILABLE)"
    rules = client(live).list_did_rules("user.root", "night1")
    assert [(r["state"], r["locks_ok_cnt"]) for r in rules] == [("OK", 12)]
    dest = tmp_path / "out"
    out = fedlake(live, "download", "user.root:night1", "--dir", str(dest))
    assert "downloaded 12 file(s)" in out.stdout
    for name, data in files.items():
        assert (dest / "night1" / name).read_bytes() == data
    again = fedlake(live, "download", "user.root:night1", "--dir", str(dest))
    assert "downloaded 0 file(s)" in again.stdout and "12 already present" in again.stdout
    reup = fedlake(
        live,
        "upload",
        "--rse",
        "LOCAL-DISK",
        "--dataset",
        "user.root:night1",
        str(tmp_path / "night1"),
    )
    assert "uploaded 0 file(s)" in reup.stdout and "12 already there" in reup.stdout


def test_bytes_through_server_when_storage_is_not_local(
    live: LiveLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that cannot see an RSE's directory sends and gets bytes via /files."""
    from fedlake.client import files as client_files

    monkeypatch.setattr(client_files, "_local_protocol", lambda settings, op: None)
    monkeypatch.setattr(client_files, "_local_source", lambda pfns: None)
    c = client(live)
    src = tmp_path / "in"
    files = make_tree(src, 4, 30_000)
    res = client_files.upload(c, [src], rse="LOCAL-SAFE", jobs=2)
    assert sorted(res.uploaded) == sorted(files)
    for name, data in files.items():
        rec = next(iter(c.list_replicas([("user.root", name)])))
        assert rec["states"] == {"LOCAL-SAFE": "AVAILABLE"}
        pfn = next(iter(rec["pfns"]))
        assert Path("/" + pfn[len("file://") :].split("/", 1)[1]).read_bytes() == data
    dl = client_files.download(c, [("user.root", n) for n in files], dest=tmp_path / "out")
    assert sorted(dl.downloaded) == sorted(files)
    for name, data in files.items():
        assert (tmp_path / "out" / "user.root" / name).read_bytes() == data


def test_bad_upload_checksum_keeps_nothing(live: LiveLake, tmp_path: Path) -> None:
    headers = {"X-Fedlake-Adler32": "00000001"}
    c = client(live)
    token = c.login()
    r = httpx.put(
        f"{live.url}/files/user.root/bad.dat",
        params={"rse": "LOCAL-DISK"},
        content=b"x" * 1000,
        headers=headers | {"X-Rucio-Auth-Token": token},
    )
    assert r.status_code == 409
    assert r.headers["ExceptionClass"] == "ChecksumMismatch"
    assert "adler32" in r.headers["ExceptionMessage"]
    disk = live.data_dir / "rses" / "disk"
    assert [p for p in disk.rglob("*") if p.is_file()] == []
    r = httpx.get(f"{live.url}/dids/user.root/bad.dat", headers={"X-Rucio-Auth-Token": token})
    assert r.status_code == 404


def test_restart_reuses_catalogue(live: LiveLake, tmp_path: Path) -> None:
    c = client(live)
    c.add_did("user.root", "kept", "DATASET")
    assert live.stop() == 0  # Ctrl-C (SIGINT) stops cleanly
    again = start_lake(live.data_dir, live.database_url or None)
    try:
        c2 = client(again)
        assert c2.get_did("user.root", "kept")["type"] == "DATASET"
        assert "new RSEs" not in again.log.read_text()
    finally:
        again.stop()


def test_another_data_dir_is_named_for_other_shells(live: LiveLake) -> None:
    """``fedlake up --data-dir D`` (not ~/.fedlake) says to export FEDLAKE_DATA_DIR; with
    it alone (no URL, no password) another shell reaches the lake as root."""
    said = "".join(live.log.read_text().split())  # rich wraps long lines
    assert f"exportFEDLAKE_DATA_DIR={live.data_dir}" in said
    assert "workswithnoconfiguration" not in said
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLAKE_")}
    env.update(FEDLAKE_DATA_DIR=str(live.data_dir), COLUMNS="250")
    done = subprocess.run(
        [sys.executable, "-m", "fedlake.cli", "rse", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "LOCAL-DISK" in done.stdout


def _registered(c: Client, names: list[str]) -> dict[str, dict[str, object]]:
    body = {"dids": [{"scope": "user.root", "name": n} for n in names], "plugin": "DID_COLUMN"}
    return {m["name"]: m for m in c._stream("POST", "/dids/bulkmeta", body=body)}


def test_killed_upload_resumes_and_converges(live: LiveLake, tmp_path: Path) -> None:
    """SIGKILL ``fedlake upload`` at several points; rerunning converges with nothing lost,
    no temporaries, and every registered replica verified."""
    files = make_tree(tmp_path / "big", 150, 200_000)
    names = sorted(files)
    c = client(live)
    disk = live.data_dir / "rses" / "disk"
    src = str(tmp_path / "big")
    upload = ("upload", "--rse", "LOCAL-DISK", "-j", "4", "--dataset", "user.root:big", src)
    for delay in (0.3, 0.8, 1.5):
        proc = subprocess.Popen(
            fedlake_command(*upload),
            env=fedlake_env(live.url, data_dir=live.data_dir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # every file at a final path is complete and correct (partial bytes only in temporaries)
        for p in disk.rglob("*.dat"):
            assert p.read_bytes() == files[p.name], f"{p} is partial"
        for name, meta in _registered(c, names).items():
            assert meta["bytes"] == len(files[name])
    fedlake(live, *upload)
    reg = _registered(c, names)
    assert sorted(reg) == names
    for name in names:
        assert reg[name]["adler32"] == f"{zlib.adler32(files[name]) & 0xFFFFFFFF:08x}"
    content = {x["name"] for x in c.list_content("user.root", "big")}
    assert content == set(names)
    # temporaries from the killed runs are swept by the daemon; none are final files
    leftovers = [p for p in disk.rglob("*") if p.is_file() and ".fedlake-tmp-" not in p.name]
    assert sorted(p.name for p in leftovers) == names


def test_server_killed_during_bulk_registration_writes_all_or_nothing(
    live: LiveLake, tmp_path: Path
) -> None:
    n = 60_000
    files = [
        {"scope": "user.root", "name": f"bulk{i:06d}", "bytes": 10, "adler32": "0000000a"}
        for i in range(n)
    ]
    token = client(live).login()
    body = json.dumps({"rse": "LOCAL-DISK", "files": files})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import httpx,sys; httpx.post(sys.argv[1], content=sys.stdin.buffer.read(), "
            "headers={'X-Rucio-Auth-Token': sys.argv[2]}, timeout=120)",
            f"{live.url}/replicas",
            token,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    proc.stdin.write(body.encode())
    proc.stdin.close()
    time.sleep(0.6)
    live.process.send_signal(signal.SIGKILL)
    live.process.wait()
    proc.wait(timeout=60)
    again = start_lake(live.data_dir, live.database_url or None)
    try:
        c = client(again)
        count = sum(1 for _ in c.search("user.root", "name=bulk*", did_type="file"))
        assert count in (0, n), f"{count} of {n} rows survived a kill: not atomic"
        reps = (
            list(c.list_replicas([("user.root", "bulk000000")], all_states=True)) if count else []
        )
        assert count == 0 or reps[0]["states"] == {"LOCAL-DISK": "AVAILABLE"}
    finally:
        again.stop()


def test_unreachable_lake_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLAKE_")}
    env.update(
        FEDLAKE_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        FEDLAKE_USERNAME="root",
        FEDLAKE_PASSWORD="whatever-password",
        FEDLAKE_DATA_DIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-m", "fedlake.cli", "ls", "user.root"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert "cannot reach the lake" in done.stderr
    assert "Traceback" not in done.stderr
