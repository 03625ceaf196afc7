"""``fedlake login`` / ``logout`` (device code) and ``fedlake iam client|keys|token``
against a live ``fedlake up``; the test plays the browser with httpx."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fedlake.client import Client, ClientConfig
from tests.helpers import ROOT_PASSWORD, LiveLake, lake_on, pg_base_url

BACKENDS = ["sqlite"] + (["postgresql"] if pg_base_url() else [])
BOB_PASSWORD = "bob-secret-password"


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveLake]:
    with lake_on(request.param, tmp_path_factory.mktemp(f"login-{request.param}") / "data") as lk:
        with Client(ClientConfig(url=lk.url, username="root", password=ROOT_PASSWORD)) as c:
            c.add_account("bob")
            c.add_identity("bob", "bob", BOB_PASSWORD)
        yield lk


def _env(live: LiveLake, data_dir: Path, **extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("FEDLAKE_")}
    out.update(FEDLAKE_URL=live.url, FEDLAKE_DATA_DIR=str(data_dir), COLUMNS="250", **extra)
    return out


def _run(env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "fedlake.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == code, f"{args} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_login_refresh_logout(live: LiveLake, tmp_path: Path) -> None:
    env = _env(live, tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedlake.cli", "login"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        m = re.search(r"Open (\S+) and enter the code ([A-Z]{4}-[A-Z]{4})", first)
        assert m, first + second
        url, code = m.groups()
        assert url == f"{live.url}/oidc/device"
        assert f"user_code={code}" in second
        # the browser: the page, then the form
        with httpx.Client(base_url=live.url, timeout=30) as browser:
            page = browser.get("/oidc/device", params={"user_code": code})
            assert page.status_code == 200 and code in page.text
            r = browser.post(
                "/oidc/device",
                data={
                    "user_code": code,
                    "username": "bob",
                    "password": BOB_PASSWORD,
                    "action": "approve",
                },
            )
            assert r.status_code == 200, r.text
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    token_file = tmp_path / "home" / "tokens.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    saved = json.loads(token_file.read_text())
    assert saved["url"] == live.url and saved["refresh_token"]

    # the CLI acts as bob with the saved token
    who = json.loads(_run(env, "whoami", "--json").stdout)
    assert who["account"] == "bob"

    # near expiry: the next command refreshes (and rotates the refresh token)
    saved["expires_at"] = int(time.time())
    token_file.write_text(json.dumps(saved))
    assert json.loads(_run(env, "whoami", "--json").stdout)["account"] == "bob"
    renewed = json.loads(token_file.read_text())
    assert renewed["access_token"] != saved["access_token"]
    assert renewed["refresh_token"] != saved["refresh_token"]
    assert renewed["expires_at"] > time.time() + 600

    # logout revokes both tokens and deletes the file
    assert "logged out" in _run(env, "logout").stdout
    assert not token_file.exists()
    with httpx.Client(base_url=live.url, timeout=30) as h:
        r = h.get("/accounts/whoami", headers={"X-Rucio-Auth-Token": renewed["access_token"]})
        assert r.status_code == 401
        r = h.post(
            "/oidc/token",
            data={
                "grant_type": "refresh_token",
                "client_id": "fedlake-cli",
                "refresh_token": renewed["refresh_token"],
            },
        )
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # without saved tokens and credentials the CLI says how to log in
    assert _run(env, "whoami", code=1).returncode == 1


def test_iam_client_keys_token_commands(live: LiveLake, tmp_path: Path) -> None:
    env = _env(live, tmp_path, FEDLAKE_USERNAME="root", FEDLAKE_PASSWORD=ROOT_PASSWORD)
    out = _run(
        env,
        "iam",
        "client",
        "add",
        "bob-robot",
        "--grant",
        "client_credentials",
        "--scope",
        "openid",
        "--scope",
        "storage.read:/data",
        "--account",
        "bob",
    ).stdout
    secret = out.strip().splitlines()[-1]
    assert len(secret) >= 40
    listed = json.loads(_run(env, "iam", "client", "list", "--json").stdout)
    assert "bob-robot" in [c["client_id"] for c in listed]
    assert secret not in json.dumps(listed)
    with httpx.Client(base_url=live.url, timeout=30) as h:
        r = h.post(
            "/oidc/token", data={"grant_type": "client_credentials"}, auth=("bob-robot", secret)
        )
        assert r.status_code == 200, r.text
        service_token = r.json()["access_token"]

    before = json.loads(_run(env, "iam", "keys", "list", "--json").stdout)
    assert "new signing key" in _run(env, "iam", "keys", "rotate").stdout
    after = json.loads(_run(env, "iam", "keys", "list", "--json").stdout)
    assert len(after) == len(before) + 1
    assert sum(1 for k in after if k["current"]) == 1

    token = _run(
        env, "iam", "token", "issue", "bob", "--scope", "storage.read:/x", "--lifetime", "15m"
    ).stdout.strip()
    with httpx.Client(base_url=live.url, timeout=30) as h:
        for t in (token, service_token):  # the old key still validates the service token
            r = h.get("/accounts/whoami", headers={"X-Rucio-Auth-Token": t})
            assert r.status_code == 200 and r.json()["account"] == "bob"
    _run(env, "iam", "token", "issue", "bob", "--lifetime", "soon", code=2)

    _run(env, "iam", "client", "remove", "bob-robot")
    listed = json.loads(_run(env, "iam", "client", "list", "--json").stdout)
    assert "bob-robot" not in [c["client_id"] for c in listed]
    # bob is no admin
    bob = _env(live, tmp_path, FEDLAKE_USERNAME="bob", FEDLAKE_PASSWORD=BOB_PASSWORD)
    assert _run(bob, "iam", "keys", "rotate", code=1).returncode == 1
