"""The embedded lake's local RSEs: POSIX directories under the data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedlake.bootstrap import Lake
from fedlake.catalog import rses as core
from fedlake.catalog.models import RSE
from fedlake.domain.errors import RSENotFound

__all__ = ["LOCAL_RSES", "ensure_local_rses"]

POSIX_IMPL = "rucio.rse.protocols.posix.Default"

#: name -> (settings, attributes, directory)
LOCAL_RSES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "LOCAL-DISK": (
        {"deterministic": True, "lfn2pfn_algorithm": "hash", "qos_class": "FAST"},
        {"site": "LOCAL", "QOS": "FAST", "country": "XX", "fts": "embedded"},
        "disk",
    ),
    "LOCAL-SAFE": (
        {"deterministic": True, "lfn2pfn_algorithm": "hash", "qos_class": "SAFE"},
        {"site": "LOCAL-2", "QOS": "SAFE", "country": "XX"},
        "safe",
    ),
    "LOCAL-BUFFER": (
        {"deterministic": False, "lfn2pfn_algorithm": "identity", "qos_class": "OPPORTUNISTIC"},
        {"site": "LOCAL", "QOS": "OPPORTUNISTIC", "buffer": True},
        "buffer",
    ),
    "LOCAL-TAPE": (
        {
            "deterministic": True,
            "lfn2pfn_algorithm": "hash",
            "rse_type": "TAPE",
            "qos_class": "TAPE",
        },
        {"site": "LOCAL-2", "QOS": "TAPE", "istape": True},
        "tape",
    ),
}


def ensure_local_rses(lake: Lake) -> list[str]:
    """Create the embedded RSEs if missing; returns the names created."""
    created = []
    root = Path(lake.settings.data_dir).resolve() / "rses"
    with lake.db.write() as s:
        for name, (settings, attrs, directory) in LOCAL_RSES.items():
            try:
                core.get_rse(s, name)
                continue
            except RSENotFound:
                pass
            path = root / directory
            path.mkdir(parents=True, exist_ok=True)
            row: RSE = core.add_rse(s, name, **settings)
            for key, value in attrs.items():
                core.set_attribute(s, row, key, value)
            core.add_protocol(
                s,
                row,
                {
                    "scheme": "file",
                    "hostname": "localhost",
                    "port": 0,
                    "prefix": str(path),
                    "impl": POSIX_IMPL,
                    "domains": {
                        "lan": {"read": 1, "write": 1, "delete": 1},
                        "wan": {
                            "read": 1,
                            "write": 1,
                            "delete": 1,
                            "third_party_copy_read": 1,
                            "third_party_copy_write": 1,
                        },
                    },
                },
            )
            created.append(name)
    return created
