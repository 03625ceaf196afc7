"""The SE's TOML configuration: what loads, and what is refused with a clear message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fedlake.domain.errors import InvalidInput
from fedlake.se.config import Policy, load_config, parse_config


def test_a_full_file(tmp_path: Path) -> None:
    path = tmp_path / "se.toml"
    path.write_text(
        """
[server]
root = "/data"
put_md5 = true

[[issuers]]
issuer = "https://iam.example/"
audiences = ["https://se.example"]
algorithms = ["ES256"]

[[areas]]
path = "/cms//"
policies = [
  { who = "/cms", actions = ["read", "write"] },
  { who = "anonymous", actions = ["write"], deny = true },
]
"""
    )
    config = load_config(path)
    assert config.root == Path("/data") and config.put_md5 and not config.allow_anonymous
    assert config.issuers[0].audiences == ("https://se.example",)
    assert config.issuers[0].algorithms == ("ES256",)
    assert config.issuers[0].wlcg_profile is True
    assert config.areas[0].path == "/cms"
    assert config.areas[0].policies == (
        Policy("/cms", frozenset({"read", "write"})),
        Policy("anonymous", frozenset({"write"}), deny=True),
    )


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"extra": 1}, "unknown key"),
        ({"server": {"allow_anonymous": "yes"}}, "allow_anonymous must be a bool"),
        ({"issuers": [{"audiences": ["a"]}]}, "issuer .* is required"),
        ({"issuers": [{"issuer": "x", "algorithms": ["HS256"]}]}, "not allowed"),
        ({"issuers": [{"issuer": "x"}, {"issuer": "x"}]}, "listed twice"),
        ({"areas": [{"path": "/a/../b"}]}, "climbs"),
        ({"areas": [{"path": "/a"}, {"path": "/a/"}]}, "same path"),
        ({"areas": [{"path": "/a", "policies": [{"who": "cms", "actions": ["read"]}]}]}, "who"),
        (
            {"areas": [{"path": "/a", "policies": [{"who": "/g", "actions": ["delete"]}]}]},
            "actions",
        ),
        ({"areas": [{"path": "/a", "policies": [{"who": "/g", "actions": []}]}]}, "actions"),
    ],
)
def test_refused(data: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_config(data)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[server\n")
    with pytest.raises(InvalidInput, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_the_s3_table() -> None:
    config = parse_config(
        {
            "s3": {
                "url": "s3://127.0.0.1:9000/lake/disk",
                "access_key": "k",
                "secret_key": "s",
                "verify": "/etc/ca.pem",
                "part_size": 16 * 1024 * 1024,
                "read_timeout": 30,
            }
        }
    )
    assert config.s3 is not None and config.s3.url == "s3://127.0.0.1:9000/lake/disk"
    assert config.s3.options == {
        "access_key": "k",
        "secret_key": "s",
        "verify": "/etc/ca.pem",
        "part_size": 16 * 1024 * 1024,
        "read_timeout": 30,
    }
    assert parse_config({}).s3 is None
    assert parse_config({"s3": {}}).s3 is not None  # the URL may come from --s3


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"bucket": "x"}, "unknown key"),
        ({"url": "https://host/bucket"}, "not an s3:// URL"),
        ({"url": "s3://host"}, "expected s3://HOST:PORT/BUCKET"),
        ({"url": "s3://key:secret@host/bucket"}, "credentials go in options"),
        ({"url": "s3://host/bucket/a/../b"}, "may not hold"),
        ({"part_size": "8M"}, "part_size must be a int"),
        ({"part_size": True}, "part_size must be a int"),
        ({"secure": "yes"}, "secure must be a bool"),
        ({"verify": 1}, "verify must be a bool or str"),
    ],
)
def test_s3_table_refused(table: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_config({"s3": table})
