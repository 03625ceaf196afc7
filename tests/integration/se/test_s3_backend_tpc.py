"""``fedlake se serve --s3`` over TLS, with the grid's clients: HTTP third-party copy (COPY)
between it and a POSIX SE both ways, with the scripted source of test_tpc.py for the
failures (missing source, wrong checksum, cut-off source, a client that goes away: each
leaves no object and no pending upload); the lake's TPC client and gfal-copy between the
two; tokens and storage areas; gfal2 copying, summing, listing and removing. Then
credentials from ``--config``, and the command line (``--help``; ``--s3`` with ``--root``
or ``--tape``, a missing bucket, refused credentials: refused at start).

The judge of what was stored is the bucket itself (boto3), and the POSIX SE's directory.
"""

from __future__ import annotations

import hashlib
import os
import random
import ssl
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fedlake.storage.backends.webdav import WebDAVStorage
from tests.integration.se.test_s3_backend import Bucket, b64md5
from tests.integration.se.test_tpc import DATA, Source, adler, copy, markers, running_source
from tests.issuer_app import WLCG_ANY, TestIssuer, run_issuer
from tests.servers import ServerProcess, free_port, require_program
from tests.servers.fedlake_se import SEServer, running_se
from tests.servers.seaweedfs import S3Server, seaweedfs
from tests.servers.xrdhttp import make_certificate

__all__ = ["seaweedfs"]  # the session fixture, imported so pytest finds it

HINT = "bash scripts/components.d/gfal.sh"
INSECURE = ["-D", "HTTP PLUGIN:INSECURE=true"]  # gfal trusts the self-signed certificate
NO_FALLBACK = ["-D", "HTTP PLUGIN:ENABLE_FALLBACK_TPC_COPY=false"]  # the SEs copy, or it fails
MiB = 1 << 20


def fresh(what: str) -> str:
    return f"tpc-{os.urandom(4).hex()}/{what}"


# --- servers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("se-s3-tls"))


def tpc(ca: Path) -> str:
    return f'[tpc]\nmarker_interval = 0.2\nca_file = "{ca}"\n'


@pytest.fixture(scope="module")
def bucket(seaweedfs: S3Server) -> Bucket:
    return Bucket(seaweedfs, seaweedfs.new_bucket("se-tpc"), "served/")


@pytest.fixture(scope="module")
def se_s3(seaweedfs: S3Server, bucket: Bucket, tls: tuple[Path, Path]) -> Iterator[SEServer]:
    s3 = (seaweedfs, seaweedfs.url(bucket.name, "served"))
    with running_se(anonymous=True, config=tpc(tls[0]), tls=tls, s3=s3) as server:
        yield server


@pytest.fixture(scope="module")
def se_posix(tls: tuple[Path, Path]) -> Iterator[SEServer]:
    with running_se(anonymous=True, config=tpc(tls[0]), tls=tls) as server:
        yield server


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    with running_source() as server:
        yield server


@pytest.fixture(scope="module")
def http(tls: tuple[Path, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60, verify=ssl.create_default_context(cafile=tls[0])) as client:
        yield client


def posix_file(se: SEServer, path: str, data: bytes = DATA) -> str:
    local = se.root / path
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    return se.url(path)


def s3_collection(bucket: Bucket, path: str) -> None:
    """The parent collection of ``path``, as MKCOL makes it (a marker object)."""
    bucket.put(path.rpartition("/")[0] + "/", b"")


# --- pull and push --------------------------------------------------------------------------


def test_pull_into_s3(
    se_s3: SEServer, se_posix: SEServer, bucket: Bucket, http: httpx.Client
) -> None:
    src = posix_file(se_posix, fresh("src.bin"))
    path = fresh("dst.bin")
    s3_collection(bucket, path)
    status, lines, _ = copy(http, se_s3.url(path), Source=src)
    assert status == 202
    assert lines[-1] == "success: Created"
    assert markers(lines)[-1] == len(DATA)
    assert bucket.get(path) == DATA
    top = path.partition("/")[0]
    assert bucket.keys(top) == [f"{top}/", path]  # nothing else written
    head = http.head(se_s3.url(path), headers={"Want-Digest": "adler32"})
    assert head.headers["digest"] == f"adler32={adler(DATA)}"


def test_push_from_s3(
    se_s3: SEServer, se_posix: SEServer, bucket: Bucket, http: httpx.Client
) -> None:
    path = fresh("src.bin")
    bucket.put(path, DATA)  # written with boto3: no checksum stored with it
    dst = se_posix.url(fresh("dst.bin"))
    se_posix.local(dst).parent.mkdir(parents=True)
    status, lines, _ = copy(http, se_s3.url(path), Destination=dst.replace("https", "davs"))
    assert (status, lines[-1]) == (202, "success: Created")
    assert markers(lines)[-1] == len(DATA)
    assert se_posix.local(dst).read_bytes() == DATA


def test_push_sends_the_stored_checksum(
    se_s3: SEServer, source: Source, bucket: Bucket, http: httpx.Client
) -> None:
    path = fresh("up.bin")
    s3_collection(bucket, path)
    assert http.put(se_s3.url(path), content=DATA).status_code == 201
    status, lines, _ = copy(
        http, se_s3.url(path), Destination=source.url("/upload/s3"), Overwrite="F"
    )
    assert (status, lines[-1]) == (202, "success: Created")
    method, where, headers, body = source.seen[-1]
    assert (method, where, body) == ("PUT", "/upload/s3", DATA)
    assert headers["digest"] == f"adler32={adler(DATA)}"
    assert headers["if-none-match"] == "*"


def test_existing_destination_and_overwrite(
    se_s3: SEServer, se_posix: SEServer, bucket: Bucket, http: httpx.Client
) -> None:
    src = posix_file(se_posix, fresh("src.bin"))
    path = fresh("old.bin")
    bucket.put(path, b"old")
    r = http.request("COPY", se_s3.url(path), headers={"Source": src, "Overwrite": "F"})
    assert r.status_code == 412
    assert bucket.get(path) == b"old"
    status, lines, _ = copy(http, se_s3.url(path), Source=src, Overwrite="T")
    assert (status, lines[-1]) == (202, "success: Created")
    assert bucket.get(path) == DATA


def test_transfer_headers_are_forwarded(
    se_s3: SEServer, source: Source, bucket: Bucket, http: httpx.Client
) -> None:
    path = fresh("fwd.bin")
    s3_collection(bucket, path)
    status, lines, _ = copy(
        http,
        se_s3.url(path),
        Source=source.url("/good"),
        TransferHeaderAuthorization="Bearer remote-token",
        TransferHeaderX_Custom="yes",
    )
    assert (status, lines[-1]) == (202, "success: Created")
    method, where, headers, _ = source.seen[-1]
    assert (method, where) == ("GET", "/good")
    assert headers["authorization"] == "Bearer remote-token"
    assert headers["x-custom"] == "yes"
    assert not [h for h in headers if h.startswith("transferheader")]
    assert bucket.get(path) == DATA


# --- failures leave nothing -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_a_missing_source(
    se_s3: SEServer, se_posix: SEServer, bucket: Bucket, http: httpx.Client, mode: str
) -> None:
    before = bucket.everything()
    if mode == "pull":
        path = fresh("never.bin")
        s3_collection(bucket, path)
        before = bucket.everything()
        src = se_posix.url(fresh("missing.bin"))
        status, lines, _ = copy(http, se_s3.url(path), Source=src)
        assert status == 202
        assert lines[-1].startswith("failure: GET ")
        assert "status code 404" in lines[-1]
    else:
        dst = se_posix.url(fresh("never.bin"))
        se_posix.local(dst).parent.mkdir(parents=True)
        r = http.request("COPY", se_s3.url(fresh("missing.bin")), headers={"Destination": dst})
        assert r.status_code == 404
        assert list(se_posix.local(dst).parent.iterdir()) == []
    assert bucket.everything() == before
    assert bucket.pending_uploads() == []


def test_a_checksum_mismatch_stores_nothing(
    se_s3: SEServer, source: Source, bucket: Bucket, http: httpx.Client
) -> None:
    path = fresh("bad.bin")
    s3_collection(bucket, path)
    status, lines, _ = copy(http, se_s3.url(path), Source=source.url("/wrong-digest"))
    assert status == 202
    assert lines[-1].startswith("failure: checksum mismatch")
    assert f"adler32 is {adler(DATA)}" in lines[-1]
    assert "s3://" not in lines[-1] and bucket.name not in lines[-1]  # the backend stays private
    assert bucket.keys(path) == []
    assert bucket.pending_uploads() == []


def test_a_cut_off_source_keeps_the_old_object(
    se_s3: SEServer, source: Source, bucket: Bucket, http: httpx.Client
) -> None:
    path = fresh("kept.bin")
    bucket.put(path, b"previous")
    status, lines, _ = copy(http, se_s3.url(path), Source=source.url("/cut"))
    assert status == 202
    assert lines[-1].startswith("failure: ")
    assert "nothing was stored" in lines[-1]
    assert bucket.get(path) == b"previous"
    assert bucket.keys(path.partition("/")[0]) == [path]
    assert bucket.pending_uploads() == []


def test_a_client_that_goes_away_cancels_the_pull(
    se_s3: SEServer, source: Source, bucket: Bucket, http: httpx.Client
) -> None:
    path = fresh("gone.bin")
    s3_collection(bucket, path)
    with http.stream("COPY", se_s3.url(path), headers={"Source": source.url("/slow")}) as r:
        assert next(r.iter_lines()) == "Perf Marker"  # under way
    time.sleep(2.5)  # /slow takes about 1.2 s: had the copy gone on, it would be done
    assert bucket.keys(path) == []
    assert bucket.pending_uploads() == []


# --- the lake's TPC client and gfal-copy between the two SEs ---------------------------------


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_the_lakes_tpc_client(
    se_s3: SEServer, se_posix: SEServer, bucket: Bucket, tls: tuple[Path, Path], mode: str
) -> None:
    src = posix_file(se_posix, fresh("client.bin"))
    path = fresh("deep/er/dst.bin")
    with WebDAVStorage(timeout=30, verify=str(tls[0])) as storage:
        storage.third_party_copy(src, se_s3.url(path), mode=mode)
        assert storage.checksum(se_s3.url(path), "adler32") == adler(DATA)
        back = se_posix.url(fresh("back/f.bin"))
        storage.third_party_copy(se_s3.url(path), back, mode=mode)
    assert bucket.get(path) == DATA
    assert se_posix.local(back).read_bytes() == DATA


def gfal(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    program = require_program(f"gfal-{args[0]}", HINT)
    env = {**os.environ, "GFAL_PYTHONBIN": "/usr/bin/python3"}
    result = subprocess.run(
        [program, *INSECURE, *args[1:]],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.parametrize("mode", ["pull", "push"])
@pytest.mark.parametrize("into", ["s3", "posix"])
def test_gfal_third_party_copy(
    se_s3: SEServer, se_posix: SEServer, bucket: Bucket, mode: str, into: str
) -> None:
    if into == "s3":
        src = posix_file(se_posix, fresh("src.bin"))
        path = fresh("deep/dst.bin")
        dst = se_s3.url(path, scheme="davs")
    else:
        path = fresh("src.bin")
        bucket.put(path, DATA)
        src = se_s3.url(path, scheme="davs")
        dst = se_posix.url(fresh("deep/dst.bin"), scheme="davs")
    result = gfal("copy", "-v", *NO_FALLBACK, "-f", "-p", "--copy-mode", mode, "-K", "ADLER32",
                  src, dst)  # fmt: skip
    assert f"3rd {mode}" in result.stdout + result.stderr  # the SEs copied, not gfal
    got = bucket.get(path) if into == "s3" else se_posix.local(dst).read_bytes()
    assert got == DATA


# --- gfal2 ------------------------------------------------------------------------------------


def test_gfal_copy_up_and_down(se_s3: SEServer, bucket: Bucket, tmp_path: Path) -> None:
    data = os.urandom(9 * MiB + 17)  # more than one part
    local = tmp_path / "f.bin"
    local.write_bytes(data)
    url = se_s3.url("/gfal/up/f.bin", scheme="davs")
    gfal("copy", "-f", "-p", "-K", "ADLER32", f"file://{local}", url)
    assert bucket.get("gfal/up/f.bin") == data
    back = tmp_path / "back.bin"
    gfal("copy", "-K", "ADLER32", url, f"file://{back}")
    assert back.read_bytes() == data
    wrong = f"ADLER32:{zlib.adler32(data) ^ 1:08x}"
    bad = se_s3.url("/gfal/up/bad.bin", scheme="davs")
    result = gfal("copy", "-f", "--checksum", wrong, f"file://{local}", bad, check=False)
    assert result.returncode != 0
    assert bucket.keys("gfal/up/") == ["gfal/up/", "gfal/up/f.bin"]
    assert bucket.pending_uploads() == []


def test_gfal_sum_of_an_object_written_with_boto3(se_s3: SEServer, bucket: Bucket) -> None:
    data = os.urandom(1_000_003)
    bucket.put("gsum/s.bin", data)
    url = se_s3.url("/gsum/s.bin", scheme="davs")
    assert gfal("sum", url, "ADLER32").stdout.split() == [url, adler(data)]
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert gfal("sum", url, "MD5").stdout.split() == [url, md5]


def test_gfal_mkdir_ls_rm(se_s3: SEServer, bucket: Bucket) -> None:
    base = se_s3.url("/gtree", scheme="davs")
    gfal("mkdir", "-p", f"{base}/a/b")
    assert bucket.keys("gtree/") == ["gtree/", "gtree/a/", "gtree/a/b/"]
    bucket.put("gtree/a/f.bin", b"12345")
    listing = gfal("ls", "-l", f"{base}/a").stdout
    lines = sorted((ln.split() for ln in listing.splitlines() if ln.strip()), key=lambda x: x[-1])
    assert [line[-1] for line in lines] == ["b", "f.bin"]
    assert lines[0][0].startswith("d")
    assert lines[1][0].startswith("-") and lines[1][4] == "5"
    gfal("rm", f"{base}/a/f.bin")
    assert bucket.keys("gtree/a/") == ["gtree/a/", "gtree/a/b/"]
    gfal("rm", "-r", f"{base}/a")
    assert bucket.keys("gtree/") == ["gtree/"]
    missing = gfal("ls", f"{base}/a", check=False)
    assert missing.returncode != 0
    assert "No such file" in missing.stderr


# --- tokens and storage areas ---------------------------------------------------------------

AREAS = """
[[issuers]]
issuer = "{issuer}"
audiences = ["{aud}"]

[[areas]]
path = "/cms"
policies = [
  {{ who = "/cms/prod", actions = ["read", "write"] }},
  {{ who = "/cms/banned", actions = ["read", "write"], deny = true }},
  {{ who = "/cms", actions = ["read"] }},
]

[[areas]]
path = "/public"
policies = [ {{ who = "anonymous", actions = ["read"] }} ]
"""


@pytest.fixture(scope="module")
def issuer() -> Iterator[TestIssuer]:
    with run_issuer() as iss:
        yield iss


@pytest.fixture(scope="module")
def tok_bucket(bucket: Bucket) -> Bucket:
    tok = Bucket(bucket.s3, bucket.name, "tok/")
    tok.put("cms/data.bin", b"cms data")
    tok.put("public/p.bin", b"public data")
    return tok


@pytest.fixture(scope="module")
def se_tok(
    seaweedfs: S3Server, tok_bucket: Bucket, issuer: TestIssuer, tls: tuple[Path, Path]
) -> Iterator[SEServer]:
    config = AREAS.format(issuer=issuer.url, aud=WLCG_ANY) + tpc(tls[0])
    s3 = (seaweedfs, seaweedfs.url(tok_bucket.name, "tok"))
    with running_se(config=config, s3=s3, tls=tls, workers=2) as server:
        yield server


def test_tokens_and_areas(
    se_tok: SEServer, tok_bucket: Bucket, issuer: TestIssuer, http: httpx.Client
) -> None:
    def bearer(**claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {issuer.mint('u-' + os.urandom(3).hex(), **claims)}"}

    assert http.get(se_tok.url("/public/p.bin")).content == b"public data"
    r = http.put(se_tok.url("/public/new.bin"), content=b"x")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert http.get(se_tok.url("/cms/data.bin")).status_code == 401
    prod = bearer(scope="openid", **{"wlcg.groups": ["/cms", "/cms/prod"]})
    member = bearer(scope="openid", **{"wlcg.groups": ["/cms"]})
    banned = bearer(scope="openid", **{"wlcg.groups": ["/cms/banned", "/cms"]})
    r = http.put(se_tok.url("/cms/by-prod.bin"), content=b"prod", headers=prod)
    assert r.status_code == 201
    assert http.get(se_tok.url("/cms/by-prod.bin"), headers=member).content == b"prod"
    r = http.put(se_tok.url("/cms/by-member.bin"), content=b"m", headers=member)
    assert r.status_code == 403
    assert "cms" in r.text and "write" in r.text
    r = http.get(se_tok.url("/cms/data.bin"), headers=banned)
    assert r.status_code == 403
    assert "denies" in r.text
    reader = bearer(scope="storage.read:/cms")
    r = http.put(se_tok.url("/cms/by-reader.bin"), content=b"r", headers=reader)
    assert r.status_code == 403
    assert "storage.create" in r.text
    creator = bearer(scope="storage.create:/cms/new storage.read:/cms/new")
    assert http.request("MKCOL", se_tok.url("/cms/new"), headers=creator).status_code == 201
    assert http.put(se_tok.url("/cms/new/a.bin"), content=b"a", headers=creator).status_code == 201
    r = http.put(se_tok.url("/cms/new/a.bin"), content=b"changed", headers=creator)
    assert r.status_code == 403
    assert "storage.modify" in r.text
    assert tok_bucket.keys("cms/by-") == ["cms/by-prod.bin"]  # no by-member, no by-reader
    assert tok_bucket.keys("cms/new/") == ["cms/new/", "cms/new/a.bin"]
    assert tok_bucket.keys("public/") == ["public/p.bin"]
    assert tok_bucket.get("cms/new/a.bin") == b"a"


def test_our_client_uploads_with_a_create_only_token(
    se_tok: SEServer, tok_bucket: Bucket, issuer: TestIssuer, tls: tuple[Path, Path]
) -> None:
    """The webdav plugin PUTs a temporary and MOVEs it onto the name (a copy in S3)."""
    token = issuer.mint("uploader", scope="storage.create:/cms/up storage.read:/cms/up")
    with WebDAVStorage(token=token, timeout=30, verify=str(tls[0])) as client:
        url = se_tok.url("/cms/up/deep/f.bin")
        got = client.write(url, [b"uploaded"])
        assert client.checksum(url, "adler32") == got.adler32 == adler(b"uploaded")
        with pytest.raises(PermissionError):
            client.write(url, [b"again"], overwrite=True)
    assert tok_bucket.get("cms/up/deep/f.bin") == b"uploaded"
    assert tok_bucket.listdir("cms/up/deep") == ["f.bin"]


def test_copy_into_the_token_se(
    se_tok: SEServer, se_posix: SEServer, tok_bucket: Bucket, issuer: TestIssuer,
    http: httpx.Client,
) -> None:  # fmt: skip
    src = posix_file(se_posix, fresh("src.bin"))
    r = http.request("COPY", se_tok.url("/cms/tpc.bin"), headers={"Source": src})
    assert r.status_code == 401  # anonymous: refused before anything moves
    reader = issuer.mint("r", scope="storage.read:/cms/tpc.bin")
    r = http.request(
        "COPY", se_tok.url("/cms/tpc.bin"),
        headers={"Source": src, "Authorization": f"Bearer {reader}"},
    )  # fmt: skip
    assert r.status_code == 403
    assert "storage.create" in r.text
    assert tok_bucket.keys("cms/tpc") == []
    writer = issuer.mint("w", scope="storage.create:/cms/tpc.bin storage.read:/cms/tpc.bin")
    status, lines, _ = copy(
        http, se_tok.url("/cms/tpc.bin"), Source=src, Authorization=f"Bearer {writer}"
    )
    assert (status, lines[-1]) == (202, "success: Created")
    assert tok_bucket.get("cms/tpc.bin") == DATA


# --- credentials from --config ------------------------------------------------------------


def test_credentials_and_part_size_from_the_config(
    seaweedfs: S3Server, bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEDLAKE_S3_ACCESS_KEY", raising=False)
    monkeypatch.delenv("FEDLAKE_S3_SECRET_KEY", raising=False)
    (tmp_path / "se.toml").write_text(
        f'[s3]\naccess_key = "{seaweedfs.access_key}"\nsecret_key = "{seaweedfs.secret_key}"\n'
        f'region = "us-east-1"\naddressing_style = "path"\npart_size = {5 * MiB}\n'
    )
    port = free_port()
    argv = [sys.executable, "-m", "fedlake.cli", "se", "serve", "--allow-anonymous"]
    argv += ["--s3", seaweedfs.url(bucket.name, "from-config"), "--port", str(port)]
    argv += ["--config", str(tmp_path / "se.toml")]
    process = ServerProcess(argv, tmp_path / "se.log")
    cfg = Bucket(bucket.s3, bucket.name, "from-config/")
    try:
        process.wait_for_port(port, timeout=30)
        data = random.Random(9).randbytes(12 * MiB + 1)  # three parts of 5 MiB
        with httpx.Client(timeout=60) as client:
            url = f"http://127.0.0.1:{port}/c.bin"
            r = client.put(url, content=data, headers={"Digest": f"md5={b64md5(data)}"})
            assert r.status_code == 201, r.text
            assert client.get(url).content == data
        assert cfg.get("c.bin") == data
        etag = bucket.client.head_object(Bucket=bucket.name, Key="from-config/c.bin")["ETag"]
        assert etag.strip('"').endswith("-3")  # a multipart upload of three parts
    finally:
        process.stop()


# --- the command line ---------------------------------------------------------------------


def serve_once(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``fedlake se serve`` expected to exit by itself: its exit code and output."""
    argv = [sys.executable, "-m", "fedlake.cli", "se", "serve", "--port", str(free_port())]
    full_env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, env=full_env, timeout=30, check=False
    )


def creds(server: S3Server, secret: str | None = None) -> dict[str, str]:
    return {
        "FEDLAKE_S3_ACCESS_KEY": server.access_key,
        "FEDLAKE_S3_SECRET_KEY": secret or server.secret_key,
    }


def test_the_help_names_the_s3_option() -> None:
    done = serve_once("--help")
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, said[-2000:]
    assert "--s3" in said and "PREFIX" in said


@pytest.mark.parametrize("other", [["--root", "."], ["--tape"]])
def test_s3_excludes_root_and_tape(seaweedfs: S3Server, bucket: Bucket, other: list[str]) -> None:
    url = seaweedfs.url(bucket.name, "x")
    done = serve_once("--s3", url, *other, "--allow-anonymous", env=creds(seaweedfs))
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, said
    assert "--s3" in said and other[0] in said


def test_an_unknown_bucket_stops_the_server(seaweedfs: S3Server) -> None:
    missing = f"no-such-bucket-{os.urandom(3).hex()}"
    done = serve_once(
        "--s3", seaweedfs.url(missing, "p"), "--allow-anonymous", env=creds(seaweedfs)
    )
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0, said
    assert missing in said
    assert "Traceback" not in said


def test_refused_credentials_stop_the_server(seaweedfs: S3Server, bucket: Bucket) -> None:
    url = seaweedfs.url(bucket.name, "p")
    done = serve_once("--s3", url, "--allow-anonymous", env=creds(seaweedfs, "wrong-secret"))
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0, said
    assert bucket.name in said or url in said
    assert "Traceback" not in said
