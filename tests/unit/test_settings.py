"""Settings: one frozen dataclass, loaded from FEDLAKE_* variables; typos are refused."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from fedlake.settings import ENV_VARS, Settings, load_settings


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_defaults(home: Path) -> None:
    s = load_settings({})
    assert s.data_dir == home / ".fedlake"
    assert s.database_url == f"sqlite:///{(home / '.fedlake' / 'catalog.db').resolve()}"
    assert s.host == "127.0.0.1"
    assert s.port == 8080
    assert s.public_url == "http://127.0.0.1:8080"
    assert s.root_password is None
    assert s.max_body_bytes == 256 * 1024 * 1024
    assert s.token_lifetime == 3600
    assert s == Settings()


def test_values_from_environment(tmp_path: Path) -> None:
    s = load_settings(
        {
            "FEDLAKE_DATA_DIR": str(tmp_path / "lake"),
            "FEDLAKE_DATABASE_URL": "postgresql+psycopg://u@db/lake",
            "FEDLAKE_HOST": "10.1.2.3",
            "FEDLAKE_PORT": "9000",
            "FEDLAKE_PUBLIC_URL": "https://lake.example.org",
            "FEDLAKE_ROOT_PASSWORD": "pw",
            "FEDLAKE_MAX_BODY_BYTES": "2048",
            "FEDLAKE_TOKEN_LIFETIME": "600",
            "PATH": "/usr/bin",  # other variables are not ours
            "FEDLAKE": "not a FEDLAKE_ variable",
        }
    )
    assert s.data_dir == tmp_path / "lake"
    assert s.database_url == "postgresql+psycopg://u@db/lake"
    assert (s.host, s.port) == ("10.1.2.3", 9000)
    assert s.public_url == "https://lake.example.org"
    assert s.root_password == "pw"
    assert s.max_body_bytes == 2048
    assert s.token_lifetime == 600


def test_derived_values_follow_data_dir_host_and_port(tmp_path: Path) -> None:
    s = load_settings({"FEDLAKE_DATA_DIR": str(tmp_path), "FEDLAKE_PORT": "9001"})
    assert s.database_url == f"sqlite:///{(tmp_path / 'catalog.db').resolve()}"
    assert s.public_url == "http://127.0.0.1:9001"


def test_tilde_is_expanded(home: Path) -> None:
    assert load_settings({"FEDLAKE_DATA_DIR": "~/lake"}).data_dir == home / "lake"


def test_empty_values_mean_default() -> None:
    s = load_settings({"FEDLAKE_PORT": "", "FEDLAKE_ROOT_PASSWORD": "", "FEDLAKE_DATA_DIR": ""})
    assert s.port == 8080
    assert s.root_password is None
    assert s.data_dir.name == ".fedlake"


def test_client_side_variables_are_known() -> None:
    env = {
        k: "x"
        for k in (
            "FEDLAKE_URL",
            "FEDLAKE_ACCOUNT",
            "FEDLAKE_USERNAME",
            "FEDLAKE_PASSWORD",
            "FEDLAKE_TOKEN",
            "FEDLAKE_TEST_DATABASE_URL",
        )
    }
    assert load_settings(env).port == 8080


def test_unknown_variable_is_refused() -> None:
    message = re.escape("unknown setting(s) FEDLAKE_PROT, FEDLAKE_ZZZ; known: ")
    with pytest.raises(ValueError, match=message) as info:
        load_settings({"FEDLAKE_PROT": "9000", "FEDLAKE_ZZZ": "1"})
    assert "FEDLAKE_PORT" in str(info.value)


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDLAKE_TYPO", "1")
    with pytest.raises(ValueError, match="FEDLAKE_TYPO"):
        load_settings()
    monkeypatch.delenv("FEDLAKE_TYPO")
    monkeypatch.setenv("FEDLAKE_PORT", "8181")
    assert load_settings().port == 8181


@pytest.mark.parametrize("port", ["0", "-1", "65536", "100000"])
def test_bad_port(port: str) -> None:
    with pytest.raises(ValueError, match=f"FEDLAKE_PORT={port} is not a TCP port"):
        load_settings({"FEDLAKE_PORT": port})


@pytest.mark.parametrize("port", ["abc", "80.5", "8o8o"])
def test_port_not_a_number(port: str) -> None:
    with pytest.raises(ValueError, match=f"FEDLAKE_PORT='{port}' is not an integer"):
        load_settings({"FEDLAKE_PORT": port})


def test_port_bounds_accepted() -> None:
    assert load_settings({"FEDLAKE_PORT": "1"}).port == 1
    assert load_settings({"FEDLAKE_PORT": "65535"}).port == 65535


def test_other_limits() -> None:
    with pytest.raises(ValueError, match="FEDLAKE_MAX_BODY_BYTES must be at least 1024"):
        load_settings({"FEDLAKE_MAX_BODY_BYTES": "1023"})
    with pytest.raises(ValueError, match="FEDLAKE_TOKEN_LIFETIME must be at least 60"):
        load_settings({"FEDLAKE_TOKEN_LIFETIME": "59"})
    with pytest.raises(ValueError, match="FEDLAKE_TOKEN_LIFETIME='1h' is not an integer"):
        load_settings({"FEDLAKE_TOKEN_LIFETIME": "1h"})


def test_auth_cache_seconds() -> None:
    assert load_settings({}).auth_cache_seconds == 5
    assert load_settings({"FEDLAKE_AUTH_CACHE_SECONDS": "0"}).auth_cache_seconds == 0
    assert load_settings({"FEDLAKE_AUTH_CACHE_SECONDS": "300"}).auth_cache_seconds == 300
    for bad in ("-1", "301"):
        with pytest.raises(ValueError, match="FEDLAKE_AUTH_CACHE_SECONDS must be from 0 to 300"):
            load_settings({"FEDLAKE_AUTH_CACHE_SECONDS": bad})
    with pytest.raises(ValueError, match="FEDLAKE_AUTH_CACHE_SECONDS='5s' is not an integer"):
        load_settings({"FEDLAKE_AUTH_CACHE_SECONDS": "5s"})


def test_frozen() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


def test_replace_recomputes_derived_values(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "a")
    moved = s.replace(data_dir=tmp_path / "b", port=9999)
    assert moved.database_url == f"sqlite:///{(tmp_path / 'b' / 'catalog.db').resolve()}"
    assert moved.public_url == "http://127.0.0.1:9999"
    pinned = s.replace(data_dir=tmp_path / "d", database_url="sqlite:///y.db")
    assert pinned.database_url == "sqlite:///y.db"
    assert s.replace(host="h").database_url == s.database_url
    assert s.replace(data_dir=tmp_path / "e").public_url == s.public_url
    with pytest.raises(ValueError, match="not a TCP port"):
        s.replace(port=0)


def test_every_field_has_a_variable() -> None:
    for f in dataclasses.fields(Settings):
        assert f"FEDLAKE_{f.name.upper()}" in ENV_VARS
    assert all(k.startswith("FEDLAKE_") and help_text for k, help_text in ENV_VARS.items())


def test_replace_keeps_explicit_values(tmp_path: Path) -> None:
    """`fedlake up --data-dir D --port P` with FEDLAKE_DATABASE_URL/PUBLIC_URL set keeps them."""
    s = load_settings(
        {
            "FEDLAKE_DATABASE_URL": "postgresql+psycopg://pg/lake",
            "FEDLAKE_PUBLIC_URL": "https://lake.example",
        }
    )
    moved = s.replace(data_dir=tmp_path / "x", port=9000)
    assert moved.database_url == "postgresql+psycopg://pg/lake"
    assert moved.public_url == "https://lake.example"
