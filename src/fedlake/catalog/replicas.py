"""File replicas: bulk registration (which also creates file DIDs), states, listing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm import Session

from fedlake.catalog import new_dids
from fedlake.catalog._util import chunks, insert_rows, pairs_in
from fedlake.catalog.dids import (
    check_new_names,
    datasets_below,
    did_facts,
    existing_dids,
    get_did,
)
from fedlake.catalog.meta import typed
from fedlake.catalog.models import DID, RSE, DIDContent, DIDMeta, Lock, Replica
from fedlake.catalog.rses import RSEInfo
from fedlake.domain.errors import (
    Duplicate,
    FileConsistencyMismatch,
    InvalidInput,
    ReplicaNotFound,
    UnsupportedOperation,
)
from fedlake.domain.paths import lfn2path, split_pfn
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import DIDType, ReplicaState

__all__ = [
    "FileReplica",
    "ReplicaRecord",
    "add_replicas",
    "dataset_replicas",
    "delete_replicas",
    "iter_file_replicas",
    "iter_replicas",
    "replica_path",
    "set_tombstones",
    "update_states",
]

Key = tuple[str, str]


@dataclass(slots=True)
class FileReplica:
    """One validated file of a replica registration."""

    scope: str
    name: str
    bytes: int
    adler32: str | None
    md5: str | None
    state: ReplicaState = ReplicaState.AVAILABLE
    pfn: str | None = None
    guid: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def replica_path(rse: RSEInfo, scope: str, name: str, stored: str | None) -> str:
    """Path of a replica below the protocol prefix (deterministic: computed)."""
    if rse.deterministic:
        return lfn2path(rse.lfn2pfn_algorithm, scope, name)
    if stored is None:
        raise InvalidInput(f"replica {scope}:{name} on non-deterministic {rse.rse} has no path")
    return stored


def _path_from_pfn(rse: RSEInfo, pfn: str) -> str:
    for p in rse.protocols:
        path = split_pfn(pfn, p.scheme, p.hostname, p.port, p.prefix)
        if path is not None:
            return path
    raise InvalidInput(
        f"PFN {pfn!r} does not belong to any protocol of {rse.rse}; "
        "list the protocols with `fedlake rse show`"
    )


def _refuse_duplicates(keys: Sequence[Key]) -> None:
    """One pass, so a duplicate near the end of 100k items stays cheap."""
    seen: set[Key] = set()
    for key in keys:
        if key in seen:
            raise Duplicate(f"{key[0]}:{key[1]} appears twice in the request")
        seen.add(key)


def add_replicas(session: Session, rse: RSEInfo, files: Sequence[FileReplica], account: str) -> int:
    """Register replicas on one RSE; unknown files become new file DIDs. All or nothing."""
    keys = [(f.scope, f.name) for f in files]
    _refuse_duplicates(keys)
    paths: dict[Key, str | None] = {}
    for f in files:
        if rse.deterministic:
            paths[(f.scope, f.name)] = None
        elif f.pfn:
            paths[(f.scope, f.name)] = _path_from_pfn(rse, f.pfn)
        else:
            raise InvalidInput(
                f"{rse.rse} is non-deterministic: give the pfn of {f.scope}:{f.name}"
            )
    # held against removal until commit: a DID removed meanwhile is not given a replica
    # (its name is then refused as a used one), and a removal waits for this transaction
    existing = did_facts(session, keys, key_share=True)
    for f in files:
        ex = existing.get((f.scope, f.name))
        if ex is None:
            continue
        t, b, a, m = ex.did_type, ex.bytes, ex.adler32, ex.md5
        if t != DIDType.FILE:
            raise UnsupportedOperation(f"{f.scope}:{f.name} is a {t.lower()}, not a file")
        if b != f.bytes or (a and f.adler32 and a != f.adler32) or (m and f.md5 and m != f.md5):
            raise FileConsistencyMismatch(
                f"{f.scope}:{f.name} is registered with {b} bytes, adler32 {a}, md5 {m}; "
                f"this request says {f.bytes} bytes, adler32 {f.adler32}, md5 {f.md5}"
            )
    new = [f for f in files if (f.scope, f.name) not in existing]
    if new:
        check_new_names(session, [(f.scope, f.name) for f in new], absent=True)
    old_keys = [k for k in keys if k in existing]
    for batch in chunks(old_keys):
        row = session.execute(
            select(Replica.scope, Replica.name)
            .where(Replica.rse_id == rse.id, pairs_in(Replica.scope, Replica.name, batch))
            .limit(1)
        ).first()
        if row is not None:
            raise Duplicate(f"{row[0]}:{row[1]} already has a replica on {rse.rse}")
    now = utcnow()
    did_rows = [
        {
            "scope": f.scope,
            "name": f.name,
            "did_type": DIDType.FILE.value,
            "account": account,
            "bytes": f.bytes,
            "length": 1,
            "adler32": f.adler32,
            "md5": f.md5,
            "guid": f.guid,
            "events": f.meta.get("events") if isinstance(f.meta.get("events"), int) else None,
            "is_open": None,
            "monotonic": False,
            "hidden": False,
            "availability": "AVAILABLE",
            "created_at": now,
            "updated_at": now,
        }
        for f in new
    ]
    # queued first: its lock is then taken before this transaction holds any new row
    new_dids.record(session, [(f.scope, f.name, DIDType.FILE.value) for f in new])
    insert_rows(session, DID, did_rows, 5000)
    meta_rows = [
        {"scope": f.scope, "name": f.name, "key": k, **typed(v)}
        for f in new
        for k, v in f.meta.items()
        if k not in ("guid", "events")
    ]
    insert_rows(session, DIDMeta, meta_rows, 5000)
    rep_rows = [
        {
            "rse_id": rse.id,
            "scope": f.scope,
            "name": f.name,
            "bytes": f.bytes,
            "adler32": f.adler32,
            "md5": f.md5,
            "path": paths[(f.scope, f.name)],
            "state": f.state.value,
            "lock_cnt": 0,
            "tombstone": None,
            "accessed_at": None,
            "created_at": now,
            "updated_at": now,
        }
        for f in files
    ]
    insert_rows(session, Replica, rep_rows, 5000)
    return len(files)


def update_states(
    session: Session, rse: RSEInfo, changes: Sequence[tuple[str, str, ReplicaState]]
) -> list[Key]:
    """Set replica states; returns the keys that became AVAILABLE (for lock bookkeeping)."""
    now = utcnow()
    became_available: list[Key] = []
    by_state: dict[ReplicaState, list[Key]] = {}
    for s, n, st in changes:
        by_state.setdefault(st, []).append((s, n))
    for state, keys in by_state.items():
        for batch in chunks(keys):
            found = {
                (s, n)
                for s, n in session.execute(
                    select(Replica.scope, Replica.name).where(
                        Replica.rse_id == rse.id, pairs_in(Replica.scope, Replica.name, batch)
                    )
                )
            }
            missing = [k for k in batch if k not in found]
            if missing:
                raise ReplicaNotFound(
                    f"{missing[0][0]}:{missing[0][1]} has no replica on {rse.rse}"
                )
            session.execute(
                update(Replica)
                .where(Replica.rse_id == rse.id, pairs_in(Replica.scope, Replica.name, batch))
                .values(state=state.value, updated_at=now)
            )
        if state == ReplicaState.AVAILABLE:
            became_available.extend(keys)
    return became_available


def delete_replicas(session: Session, rse: RSEInfo, keys: Sequence[Key]) -> None:
    for batch in chunks(keys):
        locked = session.execute(
            select(Lock.scope, Lock.name)
            .where(Lock.rse_id == rse.id, pairs_in(Lock.scope, Lock.name, batch))
            .limit(1)
        ).first()
        if locked is not None:
            raise UnsupportedOperation(
                f"{locked[0]}:{locked[1]} on {rse.rse} is locked by a rule; remove the rule first"
            )
        found = session.execute(
            select(func.count())
            .select_from(Replica)
            .where(Replica.rse_id == rse.id, pairs_in(Replica.scope, Replica.name, batch))
        ).scalar_one()
        if found != len(batch):
            raise ReplicaNotFound(f"some of the replicas are not on {rse.rse}")
        session.execute(
            delete(Replica).where(
                Replica.rse_id == rse.id, pairs_in(Replica.scope, Replica.name, batch)
            )
        )


def set_tombstones(session: Session, items: Sequence[tuple[str, Key]]) -> None:
    """Mark unlocked replicas for deletion now (``replica remove``)."""
    from datetime import datetime

    epoch = datetime(1970, 1, 1)
    for rse_id, (s, n) in items:
        res = session.execute(
            update(Replica)
            .where(
                Replica.rse_id == rse_id,
                Replica.scope == s,
                Replica.name == n,
                Replica.lock_cnt == 0,
            )
            .values(tombstone=epoch)
        )
        if res.rowcount == 0:  # type: ignore[attr-defined]
            raise ReplicaNotFound(f"{s}:{n} has no unlocked replica on that RSE")


# --- listing -----------------------------------------------------------------------------


@dataclass(slots=True)
class ReplicaRecord:
    scope: str
    name: str
    bytes: int | None
    adler32: str | None
    md5: str | None
    replicas: list[tuple[str, str, str | None]] = field(default_factory=list)  # rse_id, state, path
    parents: list[Key] = field(default_factory=list)


def iter_replicas(
    session: Session,
    files: Iterator[tuple[Key, list[Key]]],
    *,
    all_states: bool,
    rse_ids: set[str] | None,
) -> Iterator[ReplicaRecord]:
    """Attach replicas to a stream of files, querying in batches (constant memory)."""
    for batch in chunks(files, 1000):
        keys = [k for k, _ in batch]
        info: dict[Key, ReplicaRecord] = {}
        for row in session.execute(
            select(DID.scope, DID.name, DID.bytes, DID.adler32, DID.md5).where(
                pairs_in(DID.scope, DID.name, keys)
            )
        ):
            info[(row[0], row[1])] = ReplicaRecord(row[0], row[1], row[2], row[3], row[4])
        for s, n, rse_id, state, path in session.execute(
            select(Replica.scope, Replica.name, Replica.rse_id, Replica.state, Replica.path)
            .where(
                and_(
                    pairs_in(Replica.scope, Replica.name, keys),
                    *_replica_filter(all_states, rse_ids),
                )
            )
            .order_by(Replica.rse_id)
        ):
            rec = info.get((s, n))
            if rec is not None:
                rec.replicas.append((rse_id, state, path))
        for key, parents in batch:
            rec = info.get(key)
            if rec is not None:
                rec.parents = parents
                yield rec


def _replica_filter(all_states: bool, rse_ids: set[str] | None) -> list[Any]:
    conds: list[Any] = []
    if not all_states:
        conds.append(Replica.state == ReplicaState.AVAILABLE.value)
    if rse_ids is not None:
        conds.append(Replica.rse_id.in_(rse_ids))
    return conds


def _dataset_replicas(
    session: Session, ds: Key, all_states: bool, rse_ids: set[str] | None
) -> Iterator[ReplicaRecord]:
    """The files of one dataset with their replicas: one streamed join, in name order.

    A file's size and checksums never change, so the copies in ``did_content`` (written
    at attach time) are used and ``dids`` is not joined. Core rows, no ORM loading.
    """
    stmt = (
        select(
            DIDContent.child_scope,
            DIDContent.child_name,
            DIDContent.bytes,
            DIDContent.adler32,
            DIDContent.md5,
            Replica.rse_id,
            Replica.state,
            Replica.path,
        )
        .outerjoin(
            Replica,
            and_(
                Replica.scope == DIDContent.child_scope,
                Replica.name == DIDContent.child_name,
                # the state is checked below: in the join, SQLite would pick the state index
                # and scan every available replica for each file
                *_replica_filter(True, rse_ids),
            ),
        )
        .where(DIDContent.scope == ds[0], DIDContent.name == ds[1])
        .order_by(DIDContent.child_scope, DIDContent.child_name)
    )
    available = ReplicaState.AVAILABLE.value
    rec: ReplicaRecord | None = None
    stmt = stmt.execution_options(stream_results=True, max_row_buffer=5000)
    result = session.connection().execute(stmt)
    for cs, cn, nbytes, adler, md5, rse_id, state, path in result:
        if rec is None or rec.name != cn or rec.scope != cs:
            if rec is not None:
                yield rec
            rec = ReplicaRecord(cs, cn, nbytes, adler, md5, parents=[ds])
        if rse_id is not None and (all_states or state == available):
            rec.replicas.append((rse_id, state, path))
    if rec is not None:
        yield rec


def iter_file_replicas(
    session: Session, dids: Sequence[Key], *, all_states: bool, rse_ids: set[str] | None
) -> Iterator[ReplicaRecord]:
    """The files of ``dids`` (collections expanded) with their replicas, in input order.

    Files given directly are looked up in batches; each dataset is one streamed join
    (constant memory for any size). ``parents`` holds the input collection a file came
    from. A file reached through several datasets of one input is listed once.
    """
    found = existing_dids(session, dids)
    direct: list[tuple[Key, list[Key]]] = []
    for key in dids:
        row = found.get(key)
        if row is None:
            continue
        if row.did_type == DIDType.FILE:
            direct.append((key, []))
            continue
        if direct:
            yield from iter_replicas(session, iter(direct), all_states=all_states, rse_ids=rse_ids)
            direct = []
        datasets = datasets_below(session, key)
        seen: set[Key] | None = set() if len(datasets) > 1 else None
        for ds in datasets:
            for rec in _dataset_replicas(session, ds, all_states, rse_ids):
                if seen is not None:
                    if (rec.scope, rec.name) in seen:
                        continue
                    seen.add((rec.scope, rec.name))
                rec.parents = [key]
                yield rec
    if direct:
        yield from iter_replicas(session, iter(direct), all_states=all_states, rse_ids=rse_ids)


def dataset_replicas(session: Session, datasets: Sequence[Key]) -> Iterator[dict[str, Any]]:
    """Per dataset and RSE: how many of its files (and bytes) are there."""
    for scope, name in datasets:
        ds = get_did(session, scope, name)
        rows = session.execute(
            select(
                Replica.rse_id,
                RSE.rse,
                func.count(),
                func.coalesce(func.sum(Replica.bytes), 0),
                func.max(Replica.created_at),
                func.max(Replica.updated_at),
                func.max(Replica.accessed_at),
            )
            .join(
                DIDContent,
                and_(
                    DIDContent.child_scope == Replica.scope, DIDContent.child_name == Replica.name
                ),
            )
            .join(RSE, RSE.id == Replica.rse_id)
            .where(
                DIDContent.scope == scope,
                DIDContent.name == name,
                Replica.state == ReplicaState.AVAILABLE.value,
            )
            .group_by(Replica.rse_id, RSE.rse)
        )
        for rse_id, rse_name, n, b, created, updated, accessed in rows:
            yield {
                "scope": scope,
                "name": name,
                "rse": rse_name,
                "rse_id": rse_id,
                "bytes": ds.bytes,
                "length": ds.length,
                "available_bytes": int(b),
                "available_length": int(n),
                "state": "AVAILABLE" if n == ds.length else "UNAVAILABLE",
                "created_at": created,
                "updated_at": updated,
                "accessed_at": accessed,
            }


def datasets_at_rse(session: Session, rse_id: str) -> Iterator[dict[str, Any]]:
    rows = session.execute(
        select(
            DIDContent.scope,
            DIDContent.name,
            func.count(),
            func.coalesce(func.sum(Replica.bytes), 0),
        )
        .join(
            Replica,
            and_(DIDContent.child_scope == Replica.scope, DIDContent.child_name == Replica.name),
        )
        .where(
            Replica.rse_id == rse_id,
            Replica.state == ReplicaState.AVAILABLE.value,
            DIDContent.did_type == DIDType.DATASET.value,
        )
        .group_by(DIDContent.scope, DIDContent.name)
    )
    for s, n, cnt, b in rows:
        ds = session.get(DID, (s, n))
        yield {
            "scope": s,
            "name": n,
            "rse_id": rse_id,
            "available_length": int(cnt),
            "available_bytes": int(b),
            "length": ds.length if ds else None,
            "bytes": ds.bytes if ds else None,
        }
