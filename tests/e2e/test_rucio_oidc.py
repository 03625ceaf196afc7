"""The stock rucio client with ``auth_type = oidc`` and a token it finds on its own.

With ``auth_type = oidc`` the rucio client (41.x, baseclient ``__read_token``) first looks
for a WLCG bearer token (``wlcg_token_discovery``: ``BEARER_TOKEN``, ``BEARER_TOKEN_FILE``,
``$XDG_RUNTIME_DIR/bt_u<uid>``, ``/tmp/bt_u<uid>``), then for its token file
(``auth_token_file_path`` in rucio.cfg, else
``$TMPDIR/.rucio_<user>/auth_token_for_account_<a>``),
and sends what it found as ``X-Rucio-Auth-Token`` with ``X-Rucio-Account``.

Tokens come from a second issuer (tests/issuer_app.py, trusted with the ``fedlake iam issuer``
CLI) and from the lake itself (``lake.tokens.issue``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fedlake.bootstrap import build_lake
from fedlake.settings import Settings
from tests.e2e.cli import run_fedlake
from tests.e2e.conftest import RUCIO_BIN, RucioLake
from tests.issuer_app import WLCG_ANY, TestIssuer, run_issuer


@pytest.fixture(scope="module")
def issuer() -> Iterator[TestIssuer]:
    with run_issuer() as iss:
        yield iss


@pytest.fixture(scope="module")
def trusted(rucio_lake: RucioLake, lake_api: httpx.Client, issuer: TestIssuer) -> TestIssuer:
    """Issuer trusted through the CLI; alice-sub is alice, group /escape/cms maps to cms."""
    run_fedlake(rucio_lake.url, "iam", "issuer", "add", issuer.url, "--audience", WLCG_ANY)
    for account in ("alice", "cms"):
        r = lake_api.post(f"/accounts/{account}", content=b'{"type": "USER"}')
        assert r.status_code == 201, r.text
    ident = {"identity": f"SUB=alice-sub, ISS={issuer.url}", "authtype": "OIDC"}
    r = lake_api.post("/accounts/alice/identities", content=json.dumps(ident))
    assert r.status_code == 201, r.text
    run_fedlake(rucio_lake.url, "iam", "group-map", "add", issuer.url, "/escape/cms", "cms")
    return issuer


def oidc_env(rucio_lake: RucioLake, tmp: Path, account: str, **cfg: str) -> dict[str, str]:
    """Environment for rucio with auth_type=oidc; nothing else to find a token in."""
    lines = [
        "[common]",
        "[client]",
        f"rucio_host = {rucio_lake.url}",
        f"auth_host = {rucio_lake.url}",
        "auth_type = oidc",
        f"account = {account}",
        *(f"{k} = {v}" for k, v in cfg.items()),
    ]
    config = tmp / "rucio-oidc.cfg"
    config.write_text("\n".join(lines) + "\n")
    (tmp / "xdg").mkdir(exist_ok=True)
    (tmp / "tmpdir").mkdir(exist_ok=True)
    env = {k: v for k, v in rucio_lake.env.items() if not k.startswith("BEARER_TOKEN")}
    env.update(
        RUCIO_CONFIG=str(config), XDG_RUNTIME_DIR=str(tmp / "xdg"), TMPDIR=str(tmp / "tmpdir")
    )
    return env


def rucio(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(RUCIO_BIN), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"rucio {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def whoami_account(env: dict[str, str]) -> str:
    out = rucio(env, "whoami").stdout
    for line in out.splitlines():
        parts = line.replace("|", " ").replace(":", " ").split()
        if len(parts) >= 2 and parts[0] == "account":
            return parts[1]
    raise AssertionError(f"no account in rucio whoami output:\n{out}")


def test_the_cli_shows_the_trust_settings(rucio_lake: RucioLake, trusted: TestIssuer) -> None:
    issuers = json.loads(run_fedlake(rucio_lake.url, "iam", "issuer", "list", "--json").stdout)
    assert [(i["issuer"], i["audiences"]) for i in issuers] == [(trusted.url, [WLCG_ANY])]
    maps = json.loads(run_fedlake(rucio_lake.url, "iam", "group-map", "list", "--json").stdout)
    assert [(m["group"], m["account"]) for m in maps] == [("/escape/cms", "cms")]


def test_rucio_reads_a_bearer_token_file(
    rucio_lake: RucioLake, trusted: TestIssuer, tmp_path: Path
) -> None:
    env = oidc_env(rucio_lake, tmp_path, "alice")
    token_file = tmp_path / "token"
    token_file.write_text(trusted.mint("alice-sub") + "\n")
    env["BEARER_TOKEN_FILE"] = str(token_file)
    assert whoami_account(env) == "alice"
    scopes = rucio(env, "list-scopes").stdout
    assert "user.root" in scopes


def test_rucio_uses_the_wlcg_runtime_dir_token_with_a_group_mapping(
    rucio_lake: RucioLake, trusted: TestIssuer, tmp_path: Path
) -> None:
    env = oidc_env(rucio_lake, tmp_path, "cms")
    token = trusted.mint("bob-sub", **{"wlcg.groups": ["/escape", "/escape/cms"]})
    (tmp_path / "xdg" / f"bt_u{os.geteuid()}").write_text(token)
    assert whoami_account(env) == "cms"


def test_rucio_uses_its_token_file_with_a_token_of_the_lake(
    rucio_lake: RucioLake, tmp_path: Path
) -> None:
    live = rucio_lake.live
    port = int(live.url.rsplit(":", 1)[1])
    db_url = live.database_url or f"sqlite:///{(live.data_dir / 'catalog.db').resolve()}"
    lake = build_lake(
        Settings(data_dir=live.data_dir, database_url=db_url, port=port), migrate=False
    )
    try:
        assert lake.tokens.issuer == live.url
        token, _ = lake.tokens.issue("root", "root")
    finally:
        lake.close()
    token_file = tmp_path / "auth_token"
    token_file.write_text(token)
    env = oidc_env(rucio_lake, tmp_path, "root", auth_token_file_path=str(token_file))
    assert whoami_account(env) == "root"


def test_a_refused_token_fails_the_rucio_command(
    rucio_lake: RucioLake, trusted: TestIssuer, tmp_path: Path
) -> None:
    env = oidc_env(rucio_lake, tmp_path, "alice")
    env["BEARER_TOKEN"] = trusted.mint("alice-sub", aud="https://elsewhere.example")
    proc = subprocess.run(
        [str(RUCIO_BIN), "whoami"], env=env, capture_output=True, text=True, timeout=120
    )
    # rucio 41 reports the failure but exits 0: judge by what it printed
    output = proc.stdout + proc.stderr
    assert "Cannot authenticate" in output, output
    assert not any(line.split()[:1] == ["account"] for line in proc.stdout.splitlines())


@pytest.mark.parametrize("header", ["X-Rucio-Auth-Token", "Authorization"])
def test_the_api_takes_the_jwt_in_either_header(
    rucio_lake: RucioLake, trusted: TestIssuer, header: str
) -> None:
    token = trusted.mint("alice-sub")
    value: Any = token if header == "X-Rucio-Auth-Token" else f"Bearer {token}"
    r = httpx.get(f"{rucio_lake.url}/accounts/whoami", headers={header: value}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["account"] == "alice"


def test_the_cli_changes_and_removes_an_issuer(
    rucio_lake: RucioLake, lake_api: httpx.Client
) -> None:
    other = "https://iam.example.org/"
    run_fedlake(rucio_lake.url, "iam", "issuer", "add", other, "--algorithm", "ES256", "--no-wlcg")
    run_fedlake(rucio_lake.url, "iam", "issuer", "update", other, "--disable", "--audience", "x")
    shown = json.loads(run_fedlake(rucio_lake.url, "iam", "issuer", "show", other, "--json").stdout)
    assert (shown["enabled"], shown["algorithms"], shown["audiences"]) == (False, ["ES256"], ["x"])
    assert shown["wlcg_profile"] is False
    run_fedlake(rucio_lake.url, "iam", "group-map", "add", other, "/g", "alice", "--priority", "2")
    run_fedlake(rucio_lake.url, "iam", "group-map", "remove", other, "/g")
    run_fedlake(rucio_lake.url, "iam", "issuer", "remove", other)
    issuers = json.loads(run_fedlake(rucio_lake.url, "iam", "issuer", "list", "--json").stdout)
    assert other not in [i["issuer"] for i in issuers]
    audit = lake_api.get("/iam/audit", params={"target": other})
    assert audit.status_code == 200, audit.text
    actions = {entry["action"] for entry in audit.json()}
    assert {"issuer.add", "issuer.update", "issuer.group_map", "issuer.group_unmap"} <= actions
