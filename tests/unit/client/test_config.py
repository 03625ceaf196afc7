"""Where the client's settings come from: the environment, else the file ``fedlake up``
wrote into the data directory (``client.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedlake.client.http import Client, ClientConfig
from fedlake.domain.errors import AuthenticationFailed


def _saved(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "client.json").write_text(
        json.dumps({"url": "http://127.0.0.1:8080", "username": "root", "account": "root"})
    )
    return {"FEDLAKE_DATA_DIR": str(tmp_path)}


def test_the_saved_login_acts_as_the_saved_account(tmp_path: Path) -> None:
    config = ClientConfig.load(_saved(tmp_path))
    assert (config.url, config.username, config.account) == (
        "http://127.0.0.1:8080",
        "root",
        "root",
    )


def test_another_user_acts_as_its_own_account(tmp_path: Path) -> None:
    env = _saved(tmp_path) | {"FEDLAKE_USERNAME": "alice", "FEDLAKE_PASSWORD": "pw"}
    config = ClientConfig.load(env)
    assert (config.username, config.account) == ("alice", None)  # the server's default
    env["FEDLAKE_ACCOUNT"] = "cms_prod"
    assert ClientConfig.load(env).account == "cms_prod"


def test_a_token_acts_as_its_own_account(tmp_path: Path) -> None:
    config = ClientConfig.load(_saved(tmp_path) | {"FEDLAKE_TOKEN": "a.b.c"})
    assert (config.token, config.account) == ("a.b.c", None)


def test_a_token_never_falls_back_to_the_saved_password(tmp_path: Path) -> None:
    env = _saved(tmp_path)
    (tmp_path / "pw").write_text("root-secret")
    saved = json.loads((tmp_path / "client.json").read_text())
    saved["password_file"] = str(tmp_path / "pw")
    (tmp_path / "client.json").write_text(json.dumps(saved))
    assert ClientConfig.load(env).password == "root-secret"  # the saved login
    config = ClientConfig.load(env | {"FEDLAKE_TOKEN": "a.b.c"})
    assert (config.token, config.username, config.password) == ("a.b.c", None, None)


def test_no_credentials_say_how_to_get_some() -> None:
    with (
        Client(ClientConfig(url="http://127.0.0.1:9")) as client,
        pytest.raises(AuthenticationFailed, match="run 'fedlake login', or set FEDLAKE_TOKEN"),
    ):
        client.login()
