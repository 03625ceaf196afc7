"""Delete at source after replication (the MAGIC / CTA / KM3NeT pattern), end to end on a
live ``fedlake up``: files land on the telescope buffer with a short-lived rule, a rule asks
for a copy on safe storage, and the buffer copies disappear once the safe copies exist.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from fedlake.client import Client, ClientConfig
from tests.e2e.test_transfer_cli import fedlake, live  # noqa: F401  (fixture)
from tests.helpers import ROOT_PASSWORD, LiveLake


def test_the_buffer_copy_goes_once_the_data_is_safe_elsewhere(
    live: LiveLake,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = ClientConfig(url=live.url, username="root", password=ROOT_PASSWORD, account="root")
    with Client(config) as client:
        # the buffer deletes what no rule needs any more at once
        client.request("POST", "/rses/LOCAL-BUFFER/attr/greedyDeletion", body={"value": True})
        night = tmp_path / "night"
        night.mkdir()
        for i in range(4):
            (night / f"run-{i}.fits").write_bytes(os.urandom(30_000 + i))
        fedlake(
            live,
            "upload",
            "--rse",
            "LOCAL-BUFFER",
            "--lifetime",
            "3",
            "--dataset",
            "user.root:night-1",
            str(night),
        )
        fedlake(live, "rule", "add", "user.root:night-1", "LOCAL-SAFE")
        names = [("user.root", f"run-{i}.fits") for i in range(4)]
        deadline = time.monotonic() + 90
        where: dict[str, set[str]] = {}
        while time.monotonic() < deadline:
            reps = client.list_replicas(names, all_states=True)
            where = {r["name"]: set(r["states"]) for r in reps}
            safe = all(w == {"LOCAL-SAFE"} for w in where.values())
            if len(where) == 4 and safe:
                break
            time.sleep(0.5)
        assert where and all(w == {"LOCAL-SAFE"} for w in where.values()), where
        for r in client.list_replicas(names, all_states=True):
            assert r["states"] == {"LOCAL-SAFE": "AVAILABLE"}
        rules = client.list_did_rules("user.root", "night-1")
        assert [(r["rse_expression"], r["state"]) for r in rules] == [("LOCAL-SAFE", "OK")]
    buffer = Path(live.data_dir) / "rses" / "buffer"
    left = [p for p in buffer.rglob("*") if p.is_file()]
    assert left == [], left
