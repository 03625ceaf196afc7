"""gfal2 and davix, the grid's reference clients, against ``fedlake se serve`` over TLS
(``davs://``, self-signed certificate accepted with ``HTTP PLUGIN:INSECURE``) and plain
``http://``: copy up and down with checksum verification, gfal-sum, ls, mkdir, rm.

``scripts/components.d/gfal.sh`` installs them; with CI=true a missing one fails.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import require_program
from tests.servers.fedlake_se import SEServer, running_se
from tests.servers.xrdhttp import make_certificate

HINT = "bash scripts/components.d/gfal.sh"
INSECURE = ["-D", "HTTP PLUGIN:INSECURE=true"]
DATA = os.urandom(3 * 1024 * 1024 + 17)


@pytest.fixture(scope="module")
def se(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SEServer]:
    pair = make_certificate(tmp_path_factory.mktemp("se-gfal-tls"))
    with running_se(anonymous=True, tls=pair) as server:
        yield server


@pytest.fixture(scope="module")
def se_plain() -> Iterator[SEServer]:
    with running_se(anonymous=True) as server:
        yield server


def gfal(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    program = require_program(f"gfal-{args[0]}", HINT)
    env = {**os.environ, "GFAL_PYTHONBIN": "/usr/bin/python3"}
    result = subprocess.run(
        [program, *args[1:]], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def local(tmp_path: Path) -> Path:
    path = tmp_path / "f.bin"
    path.write_bytes(DATA)
    return path


def test_copy_up_and_down_with_adler32(se: SEServer, local: Path, tmp_path: Path) -> None:
    url = se.url("/gfal/up/f.bin", scheme="davs")
    gfal("copy", *INSECURE, "-f", "-p", "-K", "ADLER32", f"file://{local}", url)
    assert (se.root / "gfal" / "up" / "f.bin").read_bytes() == DATA
    back = tmp_path / "back.bin"
    gfal("copy", *INSECURE, "-K", "ADLER32", url, f"file://{back}")
    assert back.read_bytes() == DATA


def test_a_checksum_mismatch_fails_the_copy_and_keeps_nothing(se: SEServer, local: Path) -> None:
    url = se.url("/gfal/bad/f.bin", scheme="davs")
    wrong = f"ADLER32:{zlib.adler32(DATA) ^ 1:08x}"
    result = gfal("copy", *INSECURE, "-f", "-p", "--checksum", wrong, f"file://{local}", url,
                  check=False)  # fmt: skip
    assert result.returncode != 0
    assert not (se.root / "gfal" / "bad" / "f.bin").exists()


def test_gfal_sum(se: SEServer) -> None:
    (se.root / "sum").mkdir()
    (se.root / "sum" / "s.bin").write_bytes(DATA)  # written behind the server's back
    url = se.url("/sum/s.bin", scheme="davs")
    out = gfal("sum", *INSECURE, url, "ADLER32").stdout.split()
    assert out == [url, f"{zlib.adler32(DATA):08x}"]
    out = gfal("sum", *INSECURE, url, "MD5").stdout.split()
    assert out == [url, hashlib.md5(DATA, usedforsecurity=False).hexdigest()]


def test_mkdir_ls_rm(se: SEServer) -> None:
    base = se.url("/tree", scheme="davs")
    gfal("mkdir", *INSECURE, "-p", f"{base}/a/b")
    assert (se.root / "tree" / "a" / "b").is_dir()
    (se.root / "tree" / "a" / "f.bin").write_bytes(b"12345")
    listing = gfal("ls", *INSECURE, "-l", f"{base}/a").stdout
    lines = sorted(
        (line.split() for line in listing.splitlines() if line.strip()), key=lambda x: x[-1]
    )
    assert [line[-1] for line in lines] == ["b", "f.bin"]
    assert lines[1][0].startswith("-") and lines[1][4] == "5"
    assert lines[0][0].startswith("d")
    gfal("rm", *INSECURE, f"{base}/a/f.bin")
    assert not (se.root / "tree" / "a" / "f.bin").exists()
    gfal("rm", *INSECURE, "-r", f"{base}/a")
    assert not (se.root / "tree" / "a").exists()
    missing = gfal("ls", *INSECURE, f"{base}/a", check=False)
    assert missing.returncode != 0
    assert "No such file" in missing.stderr


def test_plain_http_and_davix(se_plain: SEServer, local: Path, tmp_path: Path) -> None:
    url = se_plain.url("/plain/f.bin")
    gfal("copy", "-f", "-p", "-K", "ADLER32", f"file://{local}", url)
    out = gfal("sum", url, "ADLER32").stdout.split()
    assert out[1] == f"{zlib.adler32(DATA):08x}"
    davix_get = require_program("davix-get", HINT)
    back = tmp_path / "davix.bin"
    subprocess.run([davix_get, url, str(back)], check=True, capture_output=True, timeout=60)
    assert back.read_bytes() == DATA
    davix_ls = require_program("davix-ls", HINT)
    listed = subprocess.run(
        [davix_ls, se_plain.url("/plain/")], check=True, capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert listed == ["f.bin"]
