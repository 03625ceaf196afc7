"""``gfal-copy`` (gfal2/davix, the grid's reference client, as FTS drives it) makes two
``fedlake se serve`` processes copy between themselves over TLS by HTTP third-party copy:
pull and push, with the fallback to a streamed copy switched off so that only the SEs
move the bytes; with bearer tokens, the passive side's one travels as
``TransferHeaderAuthorization``; a missing source fails and leaves nothing.

``scripts/components.d/gfal.sh`` installs gfal2; with CI=true a missing one fails.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.issuer_app import WLCG_ANY, TestIssuer, run_issuer
from tests.servers import require_program
from tests.servers.fedlake_se import SEServer, running_se
from tests.servers.xrdhttp import make_certificate

HINT = "bash scripts/components.d/gfal.sh"
OPTIONS = [
    "-D", "HTTP PLUGIN:INSECURE=true",  # gfal trusts the self-signed certificate
    "-D", "HTTP PLUGIN:ENABLE_FALLBACK_TPC_COPY=false",  # the SEs copy, or it fails
]  # fmt: skip
DATA = os.urandom(5 * 1024 * 1024 + 7)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("se-tpc-gfal-tls"))


def tpc(ca: Path) -> str:
    return f'[tpc]\nmarker_interval = 0.5\nca_file = "{ca}"\n'


@pytest.fixture(scope="module")
def open_ses(tls: tuple[Path, Path]) -> Iterator[tuple[SEServer, SEServer]]:
    with (
        running_se(anonymous=True, config=tpc(tls[0]), tls=tls) as a,
        running_se(anonymous=True, config=tpc(tls[0]), tls=tls) as b,
    ):
        yield a, b


@pytest.fixture(scope="module")
def issuer() -> Iterator[TestIssuer]:
    with run_issuer() as iss:
        yield iss


@pytest.fixture(scope="module")
def token_ses(tls: tuple[Path, Path], issuer: TestIssuer) -> Iterator[tuple[SEServer, SEServer]]:
    config = f'[[issuers]]\nissuer = "{issuer.url}"\naudiences = ["{WLCG_ANY}"]\n\n' + tpc(tls[0])
    with (
        running_se(config=config, tls=tls) as a,
        running_se(config=config, tls=tls) as b,
    ):
        yield a, b


def gfal_copy(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    program = require_program("gfal-copy", HINT)
    env = {**os.environ, "GFAL_PYTHONBIN": "/usr/bin/python3"}
    options = list(OPTIONS)
    if token is not None:
        options += ["-D", f"BEARER:TOKEN={token}"]
    return subprocess.run(
        [program, "-v", *options, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def source_file(se: SEServer, name: str) -> str:
    path = f"tpc-{os.urandom(4).hex()}/{name}"
    (se.root / path).parent.mkdir(parents=True)
    (se.root / path).write_bytes(DATA)
    return se.url(path, scheme="davs")


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_gfal_copy_between_two_ses(open_ses: tuple[SEServer, SEServer], mode: str) -> None:
    a, b = open_ses
    src = source_file(a, "src.bin")
    dst = b.url(f"tpc-{os.urandom(4).hex()}/deep/dst.bin", scheme="davs")
    result = gfal_copy("-f", "-p", "--copy-mode", mode, "-K", "ADLER32", src, dst)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"3rd {mode}" in result.stdout + result.stderr  # a third-party copy, not streamed
    assert b.local(dst).read_bytes() == DATA  # and gfal compared both SEs' ADLER32 (-K)


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_gfal_copy_with_tokens(
    token_ses: tuple[SEServer, SEServer], issuer: TestIssuer, mode: str
) -> None:
    a, b = token_ses
    src = source_file(a, "src.bin")
    dst = b.url(f"tpc-{os.urandom(4).hex()}/dst.bin", scheme="davs")
    refused = gfal_copy("-f", "-p", "--copy-mode", mode, src, dst)  # no token
    assert refused.returncode != 0
    assert not b.local(dst).exists()
    token = issuer.mint(scope="storage.read:/ storage.create:/ storage.modify:/")
    result = gfal_copy("-f", "-p", "--copy-mode", mode, src, dst, token=token)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"3rd {mode}" in result.stdout + result.stderr
    assert b.local(dst).read_bytes() == DATA


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_gfal_copy_of_a_missing_source_fails(
    open_ses: tuple[SEServer, SEServer], mode: str
) -> None:
    a, b = open_ses
    src = a.url(f"tpc-{os.urandom(4).hex()}/missing.bin", scheme="davs")
    dst = b.url(f"tpc-{os.urandom(4).hex()}/never.bin", scheme="davs")
    result = gfal_copy("-p", "--copy-mode", mode, src, dst)
    assert result.returncode != 0
    parent = b.local(dst).parent  # gfal may have made it (-p): then it is empty
    assert not parent.exists() or not list(parent.iterdir())
