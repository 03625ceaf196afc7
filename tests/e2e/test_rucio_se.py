"""The stock rucio CLI (41.5.1) uploading to and downloading from an RSE served by
``fedlake se serve`` over TLS, with the lake's own tokens.

What the client does, read from its sources: ``UploadClient``/``DownloadClient`` pass the
client's Rucio token to the storage protocol as ``auth_token`` whenever it is a JWT
(three dot-separated parts), whatever ``auth_type`` says; ``rucio.rse.protocols.webdav``
then sends it as ``Authorization: Bearer`` (with ``verify=False``) on every request. The
lake's tokens are JWTs (those of ``userpass`` too), so the SE sees exactly the token the
client authenticated to the lake with: here one minted by the lake's issuer
(``POST /iam/tokens``, what ``fedlake iam token issue`` calls) and given to rucio with
``auth_type = oidc`` in its token file.

The SE trusts only the lake's issuer (audience ``https://wlcg.cern.ch/jwt/v1/any``, what
the lake's user tokens carry) and serves the RSE's prefix ``/lake`` as a storage area:
group ``/se/writers`` may read and write, ``/se/readers`` only read. A token with WLCG
storage scopes is judged by its scopes instead, at the SE (its paths) and at the lake
(DID paths ``/<scope>/<name>``), so it needs scopes for both. The protocol is ``https``
with ``rucio.rse.protocols.webdav.Default`` (that impl builds wrong URLs for ``davs``;
``davs`` needs the gfal impl and its gfal2 bindings), and the SE runs with
``create_parents = true``: rucio's plugin PUTs into directories that do not exist yet and
takes a 409 for "the file exists". Refused tokens must leave nothing on the SE and
nothing AVAILABLE in the catalogue.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.conftest import RUCIO_BIN, RucioLake, adler32_hex, api_json, api_stream, unique
from tests.servers.fedlake_se import SEServer, running_se
from tests.servers.xrdhttp import make_certificate

SCOPE = "user.root"
RSE = "SE-HTTPS"
PREFIX = "/lake"
WLCG_ANY = "https://wlcg.cern.ch/jwt/v1/any"

SE_CONFIG = """
[server]
create_parents = true  # rucio's WebDAV plugin takes the 409 of a missing parent for "exists"

[[issuers]]
issuer = "{issuer}"
audiences = ["{aud}"]

[[areas]]
path = "{prefix}"
policies = [
  {{ who = "/se/writers", actions = ["read", "write"] }},
  {{ who = "/se/readers", actions = ["read"] }},
]
"""


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("rucio-se-tls"))


@pytest.fixture(scope="module")
def se(rucio_lake: RucioLake, tls: tuple[Path, Path]) -> Iterator[SEServer]:
    """``fedlake se serve`` over TLS trusting the lake's embedded issuer only."""
    config = SE_CONFIG.format(issuer=rucio_lake.url, aud=WLCG_ANY, prefix=PREFIX)
    with running_se(config=config, tls=tls) as server:
        (server.root / PREFIX.strip("/")).mkdir()
        yield server


@pytest.fixture(scope="module")
def se_rse(se: SEServer, lake_api: httpx.Client) -> str:
    """A deterministic RSE whose only protocol is the SE's https endpoint."""
    r = lake_api.post(f"/rses/{RSE}", json={"deterministic": True})
    assert r.status_code == 201, r.text
    spec = {
        "hostname": "127.0.0.1",
        "port": se.port,
        "prefix": PREFIX,
        "impl": "rucio.rse.protocols.webdav.Default",
        "domains": {"wan": {"read": 1, "write": 1, "delete": 1}, "lan": {}},
    }
    r = lake_api.post(f"/rses/{RSE}/protocols/https", json=spec)
    assert r.status_code == 201, r.text
    for group in ("/se", "/se/writers", "/se/readers"):  # root is in both subgroups
        r = lake_api.post("/iam/groups", json={"name": group})
        assert r.status_code == 201, r.text
        if group != "/se":
            members = f"/iam/groups/{quote(group, safe='')}/members"
            r = lake_api.post(members, json={"account": "root"})
            assert r.status_code < 300, r.text
    return RSE


def mint(lake_api: httpx.Client, groups: list[str], scope: str) -> str:
    """An access token of the lake's issuer for root (``fedlake iam token issue``)."""
    body = {"account": "root", "groups": groups, "scope": scope}
    out = api_json(lake_api, "POST", "/iam/tokens", json=body)
    token = out["access_token"]
    assert isinstance(token, str) and token.count(".") == 2
    return token


@dataclass
class TokenRucio:
    """The rucio CLI with ``auth_type = oidc`` and nothing but one token file."""

    env: dict[str, str]
    cwd: Path
    token: str

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RUCIO_BIN), *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.run(*args)
        assert proc.returncode == 0, (
            f"rucio {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
        return proc


def token_rucio(rucio_lake: RucioLake, workdir: Path, token: str) -> TokenRucio:
    workdir.mkdir(parents=True)
    token_file = workdir / "token"
    token_file.write_text(token)
    config = workdir / "rucio.cfg"
    config.write_text(
        "[common]\n[client]\n"
        f"rucio_host = {rucio_lake.url}\nauth_host = {rucio_lake.url}\n"
        f"auth_type = oidc\naccount = root\nauth_token_file_path = {token_file}\n"
    )
    for sub in ("xdg", "tmp"):
        (workdir / sub).mkdir()
    env = {k: v for k, v in rucio_lake.env.items() if not k.startswith("BEARER_TOKEN")}
    env.update(
        RUCIO_CONFIG=str(config),
        XDG_RUNTIME_DIR=str(workdir / "xdg"),
        TMPDIR=str(workdir / "tmp"),
    )
    return TokenRucio(env, workdir, token)


def rse_path(scope: str, name: str) -> str:
    """Rucio's default deterministic path: ``<scope with / for .>/<ab>/<cd>/<name>``."""
    md5 = hashlib.md5(f"{scope}:{name}".encode()).hexdigest()  # noqa: S324 -- not security
    return f"{scope.replace('.', '/')}/{md5[:2]}/{md5[2:4]}/{name}"


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


#: the lake judges a token's storage scopes against DID paths ``/<scope>/<name>``, the SE
#: against its own paths: a token with storage scopes needs both (modify at the lake for
#: the replica's state change; create is enough at the SE: rucio PUTs ``<pfn>.rucio.upload``
#: and MOVEs it onto the free final name, a rename the WLCG profile grants to create)
LAKE_SCOPES = f"storage.read:/{SCOPE} storage.modify:/{SCOPE}"
SE_SCOPES = f"storage.read:{PREFIX} storage.create:{PREFIX}"
WRITER = {
    "storage-area": (["/se/writers"], "openid"),
    "capability-scopes": ([], f"openid {LAKE_SCOPES} {SE_SCOPES}"),
}
READER = {
    "storage-area": (["/se/readers"], "openid"),
    "capability-scopes": ([], f"openid {LAKE_SCOPES} storage.read:{PREFIX}"),
}


def new_file(tmp_path: Path) -> tuple[str, bytes]:
    name = unique("se") + ".dat"
    data = b"fedlake se " + os.urandom(10_000)
    (tmp_path / name).write_bytes(data)
    return name, data


def replica(lake_api: httpx.Client, name: str) -> dict[str, Any]:
    body = {"dids": [{"scope": SCOPE, "name": name}], "all_states": True}
    [rep] = api_stream(lake_api, "POST", "/replicas/list", json=body)
    assert isinstance(rep, dict)
    return rep


@pytest.mark.parametrize("policy", WRITER)
def test_upload_list_download_through_the_se(
    rucio_lake: RucioLake,
    lake_api: httpx.Client,
    se: SEServer,
    se_rse: str,
    tmp_path: Path,
    policy: str,
) -> None:
    client = token_rucio(rucio_lake, tmp_path / "client", mint(lake_api, *WRITER[policy]))
    name, data = new_file(tmp_path)

    up = client.ok("upload", "--rse", se_rse, "--scope", SCOPE, str(tmp_path / name))
    assert f"Successfully uploaded file {name}" in output(up), output(up)

    # the bytes are at the deterministic path below the SE's root, and only there
    stored = se.root / PREFIX.strip("/") / rse_path(SCOPE, name)
    assert stored.read_bytes() == data
    assert [p.name for p in stored.parent.iterdir()] == [name]  # no .rucio.upload left
    did = api_json(lake_api, "GET", f"/dids/{SCOPE}/{name}")
    assert (did["bytes"], did["adler32"]) == (len(data), adler32_hex(data))
    pfn = f"https://127.0.0.1:{se.port}{PREFIX}/{rse_path(SCOPE, name)}"
    rep = replica(lake_api, name)
    assert rep["states"] == {se_rse: "AVAILABLE"}
    assert rep["rses"][se_rse] == [pfn]
    assert rep["adler32"] == adler32_hex(data)
    # the SE has the adler32 of the upload; without a token it serves nothing
    with httpx.Client(verify=ssl.create_default_context(cafile=se.ca), timeout=30) as http:
        head = http.head(pfn, headers={"Want-Digest": "adler32"})
        assert head.status_code == 401
        head = http.head(
            pfn, headers={"Want-Digest": "adler32", "Authorization": f"Bearer {client.token}"}
        )
        assert head.status_code == 200, head.text
        assert head.headers["digest"] == f"adler32={adler32_hex(data)}"

    listed = client.ok("list-file-replicas", f"{SCOPE}:{name}")
    row = next(line for line in listed.stdout.splitlines() if name in line)
    assert pfn in row and adler32_hex(data) in row and se_rse in row, listed.stdout

    down = client.ok("download", "--dir", str(tmp_path / "down"), f"{SCOPE}:{name}")
    said = output(down)
    assert re.search(r"^Downloaded files:\s+1$", down.stdout, re.MULTILINE), said
    assert f"Using PFN: {pfn}" in said, said
    assert (tmp_path / "down" / SCOPE / name).read_bytes() == data


@pytest.mark.parametrize("policy", READER)
def test_a_token_that_may_not_write_gets_the_upload_refused(
    rucio_lake: RucioLake,
    lake_api: httpx.Client,
    se: SEServer,
    se_rse: str,
    tmp_path: Path,
    policy: str,
) -> None:
    client = token_rucio(rucio_lake, tmp_path / "client", mint(lake_api, *READER[policy]))
    name, _ = new_file(tmp_path)
    before = set(se.root.rglob("*"))

    up = client.run("upload", "--rse", se_rse, "--scope", SCOPE, str(tmp_path / name))
    said = output(up)
    # rucio 41 exits 0 when no file was uploaded: judge by what it printed
    assert f"Failed to upload file {name}" in said, said
    assert "403" in said, said  # the SE's refusal, as rucio's WebDAV plugin reports it
    assert f"Successfully uploaded file {name}" not in said

    assert not [p for p in se.root.rglob("*") if name in p.name]  # not even a temporary
    # nor a directory: nothing at all is new on the SE (the hash directories of the file's
    # path may exist already, made by another upload whose path shares them)
    assert set(se.root.rglob("*")) == before, sorted(set(se.root.rglob("*")) - before)
    states = replica(lake_api, name)["states"]
    assert states == {se_rse: "COPYING"}, states  # registered first by rucio, never made AVAILABLE


def test_a_userpass_login_token_goes_to_the_se_too(
    rucio_lake: RucioLake, se: SEServer, se_rse: str, tmp_path: Path
) -> None:
    """The module's rucio.cfg logs in with userpass: the lake answers a JWT, which the
    client sends to the SE as well; it names root without groups, so the area refuses even
    the plugin's first ``HEAD`` of the prefix with 403 (a valid token without the right; a
    request without a token would be 401)."""
    name, _ = new_file(tmp_path)
    up = rucio_lake.cli("upload", "--rse", se_rse, "--scope", SCOPE, str(tmp_path / name))
    said = output(up)
    assert f"Bad status code 403 {se.url(PREFIX)} :" in said, said
    assert f"Successfully uploaded file {name}" not in said
    assert not [p for p in se.root.rglob("*") if name in p.name]
