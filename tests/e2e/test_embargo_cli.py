"""Embargoes end to end: ``fedlake iam embargo add|list|remove`` as root, and the stock
``rucio`` CLI (legacy spellings ``list-dids``, ``list-file-replicas``, ``get-metadata``) as
bob, who is not in the group: he reads the embargoed dataset exactly as a name that never
existed, until the embargo is lifted. On both databases."""

from __future__ import annotations

import json
import re
import subprocess
import zlib
from datetime import timedelta

import httpx

from fedlake.client import Client, ClientConfig
from fedlake.domain.timefmt import utcnow
from tests.e2e.cli import fedlake
from tests.e2e.conftest import RucioLake, _client_env
from tests.helpers import ROOT_PASSWORD

SCOPE = "lofar"
BOB_PASSWORD = "bob-embargo-password"


def _rucio_as_bob(rucio_lake: RucioLake) -> RucioLake:
    workdir = rucio_lake.workdir / "bob"
    workdir.mkdir(exist_ok=True)
    config = workdir / "rucio.cfg"
    config.write_text(
        "[common]\n\n[policy]\n\n[client]\n"
        f"rucio_host = {rucio_lake.url}\nauth_host = {rucio_lake.url}\n"
        f"auth_type = userpass\nusername = bob\npassword = {BOB_PASSWORD}\naccount = bob\n"
    )
    return RucioLake(
        rucio_lake.live, rucio_lake.backend, workdir, config, _client_env(workdir, config)
    )


def _setup(lake_api: httpx.Client, rucio_lake: RucioLake) -> None:
    with Client(ClientConfig(url=rucio_lake.url, username="root", password=ROOT_PASSWORD)) as c:
        c.add_account("bob", "USER", "bob@example.org")
        c.add_identity("bob", "bob", BOB_PASSWORD)
        c.add_scope("root", SCOPE)
    files = []
    for name in ("open-f1", "sekrit-f1"):
        data = name.encode()
        files.append(
            {
                "scope": SCOPE,
                "name": name,
                "bytes": len(data),
                "adler32": f"{zlib.adler32(data):08x}",
            }
        )
    for path, body in [
        ("/replicas", {"rse": "LOCAL-DISK", "files": files}),
        (f"/dids/{SCOPE}/open-ds", {"type": "DATASET"}),
        (f"/dids/{SCOPE}/sekrit-ds", {"type": "DATASET"}),
        (f"/dids/{SCOPE}/open-ds/dids", {"dids": [{"scope": SCOPE, "name": "open-f1"}]}),
        (f"/dids/{SCOPE}/sekrit-ds/dids", {"dids": [{"scope": SCOPE, "name": "sekrit-f1"}]}),
        (f"/dids/{SCOPE}/open-ds/meta/telescope", {"value": "LOFAR"}),
        (f"/dids/{SCOPE}/sekrit-ds/meta/telescope", {"value": "LOFAR"}),
        ("/iam/groups", {"name": "/lofar"}),
    ]:
        r = lake_api.post(path, content=json.dumps(body))
        assert r.status_code in (200, 201), (path, r.text)


_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}")


def _norm(proc: subprocess.CompletedProcess[str], name: str) -> tuple[int, str]:
    """Exit status and output, without the log lines' timestamps and the asked name."""
    text = _STAMP.sub("<TIME>", proc.stdout + proc.stderr)
    return proc.returncode, text.replace(name, "<NAME>")


def test_rucio_cli_as_non_member(rucio_lake: RucioLake, lake_api: httpx.Client) -> None:
    _setup(lake_api, rucio_lake)
    until = (utcnow() + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%S")
    added = json.loads(
        fedlake(
            rucio_lake.live,
            "iam", "embargo", "add", f"{SCOPE}:sekrit-ds",
            "--group", "/lofar", "--until", until, "--reason", "proprietary period", "--json",
        ).stdout
    )  # fmt: skip
    listed = json.loads(fedlake(rucio_lake.live, "iam", "embargo", "list", "--json").stdout)
    assert [(e["id"], e["name"], e["active"]) for e in listed] == [(added["id"], "sekrit-ds", True)]
    assert "proprietary period" in fedlake(rucio_lake.live, "iam", "embargo", "list").stdout

    bob = _rucio_as_bob(rucio_lake)
    for args in (
        ("list-dids", f"{SCOPE}:*"),
        ("list-dids", "--filter", "type=all", f"{SCOPE}:*"),
        ("list-dids", "--filter", "telescope=LOFAR", f"{SCOPE}:*"),
    ):
        shown = bob.cli_ok(*args).stdout
        assert "open-" in shown and "sekrit" not in shown, (args, shown)
        assert "sekrit-ds" in rucio_lake.cli_ok(*args).stdout  # root sees it
    for cmd in ("list-file-replicas", "get-metadata", "list-content"):
        hidden = bob.cli(cmd, f"{SCOPE}:sekrit-ds")
        never = bob.cli(cmd, f"{SCOPE}:never-ds")
        assert hidden.returncode != 0
        assert _norm(hidden, "sekrit-ds") == _norm(never, "never-ds"), cmd
    assert "sekrit-f1" in rucio_lake.cli_ok("list-file-replicas", f"{SCOPE}:sekrit-ds").stdout

    fedlake(rucio_lake.live, "iam", "embargo", "remove", str(added["id"]))
    assert "sekrit-ds" in bob.cli_ok("list-dids", f"{SCOPE}:*").stdout
    assert "sekrit-f1" in bob.cli_ok("list-file-replicas", f"{SCOPE}:sekrit-ds").stdout
    assert "sekrit-ds" in bob.cli_ok("get-metadata", f"{SCOPE}:sekrit-ds").stdout

    # the plain output names the embargo and its end once, in the API's date format
    text = fedlake(
        rucio_lake.live, "iam", "embargo", "add", f"{SCOPE}:open-f1", "--group", "/lofar",
        "--until", "2031-01-02T03:04:05",
    ).stdout  # fmt: skip
    again = json.loads(fedlake(rucio_lake.live, "iam", "embargo", "list", "--json").stdout)
    [new] = [e for e in again if e["name"] == "open-f1"]
    assert " ".join(text.split()) == (
        f"embargo {new['id']}: {SCOPE}:open-f1 readable only by /lofar "
        "until Thu, 02 Jan 2031 03:04:05 UTC"
    )
