"""did_content has no foreign keys (migration 0007): attach and mark_deleted keep it
consistent themselves, also when they race in two transactions (both databases)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from fedlake.bootstrap import Lake
from fedlake.catalog import dids as did_core
from fedlake.catalog.models import DID, DeletedDID, DIDContent, Replica
from fedlake.domain.errors import DIDNotFound, UnsupportedOperation
from tests.helpers import post, race

SCOPE = "user.root"


def _files(api: TestClient, lake: Lake, *names: str) -> None:
    """Files whose replicas are gone (as the reaper leaves them): removable DIDs."""
    files = [{"scope": SCOPE, "name": n, "bytes": 1, "adler32": "00620062"} for n in names]
    r = post(api, "/replicas", {"rse": "LOCAL-DISK", "files": files})
    assert r.status_code == 201, r.text
    with lake.db.write() as s:
        s.execute(delete(Replica).where(Replica.scope == SCOPE, Replica.name.in_(names)))


def _dataset(api: TestClient, name: str) -> None:
    r = post(api, f"/dids/{SCOPE}/{name}", {"type": "DATASET"})
    assert r.status_code == 201, r.text


def _content(lake: Lake) -> set[tuple[str, str]]:
    with lake.db.read() as s:
        return {(c.name, c.child_name) for c in s.scalars(select(DIDContent))}


def _exists(lake: Lake, name: str) -> bool:
    with lake.db.read() as s:
        return s.get(DID, (SCOPE, name)) is not None


def test_an_attached_file_is_not_removed_and_nothing_is_written(
    api: TestClient, lake: Lake
) -> None:
    _files(api, lake, "held")
    _dataset(api, "holder")
    with lake.db.write() as s:
        did_core.attach(s, SCOPE, "holder", [(SCOPE, "held")])
    with (
        pytest.raises(UnsupportedOperation, match=r"held is attached to user\.root:holder"),
        lake.db.write() as s,
    ):
        did_core.mark_deleted(s, [(SCOPE, "held")])
    assert _exists(lake, "held")
    assert _content(lake) == {("holder", "held")}
    with lake.db.read() as s:
        assert s.get(DeletedDID, (SCOPE, "held")) is None


def test_a_removed_collection_takes_its_content_rows_and_leaves_the_files(
    api: TestClient, lake: Lake
) -> None:
    _files(api, lake, "kept1", "kept2")
    _dataset(api, "going")
    _dataset(api, "staying")
    with lake.db.write() as s:
        did_core.attach(s, SCOPE, "going", [(SCOPE, "kept1"), (SCOPE, "kept2")])
        did_core.attach(s, SCOPE, "staying", [(SCOPE, "kept2")])
    with lake.db.write() as s:
        did_core.mark_deleted(s, [(SCOPE, "going")])
    assert _content(lake) == {("staying", "kept2")}
    assert _exists(lake, "kept1") and _exists(lake, "kept2") and not _exists(lake, "going")
    # a collection and its own content removed together is fine
    with lake.db.write() as s:
        did_core.mark_deleted(s, [(SCOPE, "staying"), (SCOPE, "kept2")])
    assert _content(lake) == set()
    assert not _exists(lake, "kept2")


# the generic path runs when a child is attached already (ignore_duplicate), the
# set-based one (PostgreSQL) into an empty dataset; both must lock the children
ATTACH_PATHS = ["into-empty", "with-a-duplicate"]


def _attacher(path: str) -> Callable[[Session], None]:
    children = [(SCOPE, "raced")]
    if path == "with-a-duplicate":
        children.append((SCOPE, "already"))

    def attach(s: Session) -> None:
        did_core.attach(s, SCOPE, "target", children, ignore_duplicate=True)

    return attach


def _remove(s: Session) -> None:
    did_core.mark_deleted(s, [(SCOPE, "raced")])


def _race_setup(api: TestClient, lake: Lake, path: str) -> None:
    _files(api, lake, "raced", "already")
    _dataset(api, "target")
    if path == "with-a-duplicate":
        with lake.db.write() as s:
            did_core.attach(s, SCOPE, "target", [(SCOPE, "already")])


@pytest.mark.parametrize("path", ATTACH_PATHS)
def test_a_delete_waits_for_an_attach_of_the_same_file_and_is_then_refused(
    api: TestClient, lake: Lake, path: str
) -> None:
    _race_setup(api, lake, path)
    errors = race(lake, _attacher(path), _remove, "delete")
    assert len(errors) == 1 and isinstance(errors[0], UnsupportedOperation), errors
    assert "raced is attached to user.root:target" in str(errors[0])
    assert _exists(lake, "raced")
    assert ("target", "raced") in _content(lake)


@pytest.mark.parametrize("path", ATTACH_PATHS)
def test_an_attach_waits_for_a_delete_of_the_same_file_and_then_finds_it_gone(
    api: TestClient, lake: Lake, path: str
) -> None:
    _race_setup(api, lake, path)
    errors = race(lake, _remove, _attacher(path), "attach")
    assert len(errors) == 1 and isinstance(errors[0], DIDNotFound), errors
    assert "raced" in str(errors[0])
    assert not _exists(lake, "raced")
    expected = {("target", "already")} if path == "with-a-duplicate" else set()
    assert _content(lake) == expected
