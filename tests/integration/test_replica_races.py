"""Registering a replica of a file whose DID is being removed in another transaction
(the undertaker) is refused with a clear error and writes nothing (both databases;
without the DID held, PostgreSQL failed with a ForeignKeyViolation on replicas)."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import dids as did_core
from fedlake.catalog import replicas as replica_core
from fedlake.catalog import rses as rse_core
from fedlake.catalog.models import Replica
from fedlake.domain.errors import DIDAlreadyExists
from fedlake.domain.types import ReplicaState
from tests.helpers import post, race

SCOPE = "user.root"
FILE = {"scope": SCOPE, "name": "leaving", "bytes": 1, "adler32": "00620062"}


def test_a_replica_of_a_file_being_removed_is_refused(
    api: TestClient, lake: Lake, root: Caller
) -> None:
    r = post(api, "/replicas", {"rse": "LOCAL-DISK", "files": [FILE]})
    assert r.status_code == 201, r.text
    with lake.db.write() as s:  # its replica gone, as the reaper leaves it: removable
        s.execute(delete(Replica).where(Replica.name == "leaving"))

    def remove(s: Session) -> None:
        did_core.mark_deleted(s, [(SCOPE, "leaving")])

    def register(s: Session) -> None:
        rse = rse_core.rse_info(s, rse_core.get_rse(s, "LOCAL-SAFE"))
        f = replica_core.FileReplica(
            SCOPE, "leaving", 1, "00620062", None, ReplicaState.AVAILABLE, None
        )
        replica_core.add_replicas(s, rse, [f], "root")

    errors = race(lake, remove, register, "registration")
    assert len(errors) == 1 and isinstance(errors[0], DIDAlreadyExists), errors
    assert "leaving" in str(errors[0])
    with lake.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Replica)) == 0
