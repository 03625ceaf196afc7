"""Data identifiers: create, look up, attach/detach, list content, files and parents.

Bulk paths use Core statements in chunks so 100k-item requests stay fast; every
operation validates everything first and writes nothing when any item is bad.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Select, and_, delete, func, select, text, update
from sqlalchemy.orm import Session

from fedlake.catalog import new_dids
from fedlake.catalog._util import chunks, insert_rows, pairs_in
from fedlake.catalog.models import DID, DeletedDID, DIDContent, DIDContentHistory, Scope
from fedlake.domain.errors import (
    DIDAlreadyExists,
    DIDNotFound,
    DuplicateContent,
    FileAlreadyExists,
    InvalidInput,
    ScopeNotFound,
    UnsupportedOperation,
)
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import DIDType

__all__ = [
    "FileRow",
    "NewDID",
    "add_collections",
    "attach",
    "check_new_names",
    "dataset_file_rows",
    "datasets_below",
    "detach",
    "did_dict",
    "existing_dids",
    "file_rows_of",
    "get_did",
    "levels",
    "list_content",
    "list_content_history",
    "list_files",
    "list_parents",
    "scope_tree",
    "set_expiry",
    "set_status",
]

Key = tuple[str, str]


@dataclass(slots=True)
class NewDID:
    scope: str
    name: str
    did_type: DIDType
    account: str
    monotonic: bool = False
    lifetime: int | None = None


def did_dict(row: DID, *, dynamic: tuple[int, int] | None = None) -> dict[str, Any]:
    """The shape of ``GET /dids/{scope}/{name}``."""
    out: dict[str, Any] = {
        "scope": row.scope,
        "name": row.name,
        "type": row.did_type,
        "account": row.account,
        "bytes": row.bytes,
        "length": row.length,
    }
    if row.did_type == DIDType.FILE:
        out.update(length=1, md5=row.md5, adler32=row.adler32)
    else:
        out.update(open=row.is_open, monotonic=row.monotonic, expired_at=row.expired_at)
        if dynamic is not None:
            out["bytes"], out["length"] = dynamic
    return out


def get_did(session: Session, scope: str, name: str) -> DID:
    row = session.get(DID, (scope, name))
    if row is None:
        raise DIDNotFound(f"data identifier {scope}:{name} does not exist")
    return row


def existing_dids(session: Session, keys: Sequence[Key]) -> dict[Key, DID]:
    out: dict[Key, DID] = {}
    for batch in chunks(keys):
        for row in session.scalars(select(DID).where(pairs_in(DID.scope, DID.name, batch))):
            out[(row.scope, row.name)] = row
    return out


def _check_scopes(session: Session, scopes: set[str]) -> None:
    rows = session.execute(select(Scope.scope, Scope.status).where(Scope.scope.in_(scopes)))
    status = {scope: st for scope, st in rows}
    missing = scopes - set(status)
    if missing:
        raise ScopeNotFound(
            f"scope {sorted(missing)[0]!r} does not exist; create it with `fedlake scope add`"
        )
    closed = sorted(sc for sc, st in status.items() if st != "OPEN")
    if closed:
        raise UnsupportedOperation(f"scope {closed[0]!r} is closed: no new DIDs can be added")


def check_new_names(session: Session, keys: Sequence[Key], *, absent: bool = False) -> None:
    """Raise if a name is used now or was ever used (names are never reused).

    ``absent=True``: the caller has just looked the keys up in ``dids`` in this
    transaction and found none, so only the deleted names are checked.
    """
    seen: set[Key] = set()
    for key in keys:
        if key in seen:
            raise DIDAlreadyExists(f"{key[0]}:{key[1]} appears twice in the request")
        seen.add(key)
    _check_scopes(session, {k[0] for k in keys})
    for batch in chunks(keys):
        row = (
            None
            if absent
            else session.execute(
                select(DID.scope, DID.name).where(pairs_in(DID.scope, DID.name, batch)).limit(1)
            ).first()
        )
        if row is not None:
            raise DIDAlreadyExists(f"data identifier {row[0]}:{row[1]} already exists")
        row = session.execute(
            select(DeletedDID.scope, DeletedDID.name)
            .where(pairs_in(DeletedDID.scope, DeletedDID.name, batch))
            .limit(1)
        ).first()
        if row is not None:
            raise DIDAlreadyExists(
                f"data identifier {row[0]}:{row[1]} existed before and was deleted; "
                "names are never reused, choose another name"
            )


def add_collections(session: Session, items: Sequence[NewDID]) -> None:
    """Create datasets and containers (all or nothing)."""
    for it in items:
        if it.did_type == DIDType.FILE:
            raise UnsupportedOperation(
                f"{it.scope}:{it.name}: files are registered with their replicas "
                "(POST /replicas or `fedlake upload`), not as bare DIDs"
            )
        if it.lifetime is not None and (not isinstance(it.lifetime, int) or it.lifetime <= 0):
            raise InvalidInput(f"lifetime of {it.scope}:{it.name} must be a positive integer")
    check_new_names(session, [(i.scope, i.name) for i in items])
    now = utcnow()
    rows = [
        {
            "scope": i.scope,
            "name": i.name,
            "did_type": i.did_type.value,
            "account": i.account,
            "bytes": 0,
            "length": 0,
            "is_open": True,
            "monotonic": i.monotonic,
            "hidden": False,
            "availability": "AVAILABLE",
            "expired_at": now + timedelta(seconds=i.lifetime) if i.lifetime else None,
            "created_at": now,
            "updated_at": now,
        }
        for i in items
    ]
    # queued first: its lock is then taken before this transaction holds any new row
    new_dids.record(session, [(i.scope, i.name, i.did_type.value) for i in items])
    insert_rows(session, DID, rows, 2000)


def set_status(session: Session, scope: str, name: str, is_open: bool) -> None:
    row = get_did(session, scope, name)
    if row.did_type == DIDType.FILE:
        raise UnsupportedOperation(f"{scope}:{name} is a file; only collections open and close")
    if row.is_open == is_open:
        return
    if is_open and row.monotonic:
        raise UnsupportedOperation(f"{scope}:{name} is monotonic and cannot be reopened")
    row.is_open = is_open
    row.closed_at = None if is_open else utcnow()
    row.updated_at = utcnow()


def set_expiry(session: Session, scope: str, name: str, lifetime: float | None) -> None:
    """Set ``expired_at`` = now + lifetime seconds (None clears it): Rucio's erase/undo."""
    row = get_did(session, scope, name)
    row.expired_at = None if lifetime is None else utcnow() + timedelta(seconds=float(lifetime))
    row.updated_at = utcnow()


def levels(session: Session, start: Sequence[Key], *, up: bool) -> Iterator[list[Key]]:
    """The DIDs above (``up``) or below ``start``, breadth-first, one list per level, each
    DID once; the first level is ``start``. Lazy: a caller may stop at any level."""
    near, far = (
        ((DIDContent.child_scope, DIDContent.child_name), (DIDContent.scope, DIDContent.name))
        if up
        else ((DIDContent.scope, DIDContent.name), (DIDContent.child_scope, DIDContent.child_name))
    )
    seen: set[Key] = set(start)
    frontier = list(start)
    while frontier:
        yield frontier
        found: list[Key] = []
        for batch in chunks(frontier):
            for s, n in session.execute(select(*far).where(pairs_in(*near, batch))):
                if (s, n) not in seen:
                    seen.add((s, n))
                    found.append((s, n))
        frontier = found


def _ancestors(session: Session, key: Key) -> set[Key]:
    return {k for level in levels(session, [key], up=True) for k in level} - {key}


@dataclass(frozen=True, slots=True)
class DIDFacts:
    """What bulk operations need to know of a DID: its type, size and checksums."""

    did_type: str
    bytes: int | None
    adler32: str | None
    md5: str | None


def did_facts(
    session: Session, keys: Sequence[Key], *, key_share: bool = False
) -> dict[Key, DIDFacts]:
    """The facts of those of ``keys`` that exist, in bulk (Core rows, not ORM objects:
    100,000-file calls stay fast); in the order the database returns them.

    ``key_share``: lock the rows found against deletion until the transaction ends, as a
    foreign key to them would (PostgreSQL; SQLite has one writer at a time anyway)."""
    out: dict[Key, DIDFacts] = {}
    conn = session.connection()
    for batch in chunks(keys):
        stmt = select(DID.scope, DID.name, DID.did_type, DID.bytes, DID.adler32, DID.md5).where(
            pairs_in(DID.scope, DID.name, batch)
        )
        if key_share:
            stmt = stmt.with_for_update(read=True, key_share=True)
        for s, n, t, b, a, m in conn.execute(stmt):
            out[(s, n)] = DIDFacts(t, b, a, m)
    return out


def _check_children(parent_type: str, keys: Sequence[Key], found: dict[Key, DIDFacts]) -> None:
    """Every child exists and may go into a collection of ``parent_type``."""
    for key in keys:
        child = found.get(key)
        if child is None:
            raise DIDNotFound(f"data identifier {key[0]}:{key[1]} does not exist")
        if parent_type == DIDType.DATASET and child.did_type != DIDType.FILE:
            raise UnsupportedOperation(
                f"{key[0]}:{key[1]} is a {child.did_type.lower()}; datasets hold only files"
            )
        if parent_type == DIDType.CONTAINER and child.did_type == DIDType.FILE:
            raise UnsupportedOperation(
                f"{key[0]}:{key[1]} is a file; containers hold datasets and containers "
                "(attach the file to a dataset)"
            )


def attach(
    session: Session,
    scope: str,
    name: str,
    children: Sequence[Key],
    *,
    ignore_duplicate: bool = False,
) -> int:
    """Attach children to a collection; returns how many were newly attached.

    The collection's row is locked first (PostgreSQL), so attaches to one collection run
    one after the other and its ``length`` is exact: a collection with no content needs
    no look for children attached already."""
    parent = session.get(DID, (scope, name), with_for_update=True)
    if parent is None:
        raise DIDNotFound(f"data identifier {scope}:{name} does not exist")
    if parent.did_type == DIDType.FILE:
        raise UnsupportedOperation(f"{scope}:{name} is a file; attach to a dataset or container")
    if not parent.is_open:
        raise UnsupportedOperation(f"{scope}:{name} is closed; reopen it before attaching")
    keys = list(dict.fromkeys(children))
    if session.get_bind().dialect.name == "postgresql":
        if parent.did_type == DIDType.CONTAINER:
            _check_no_cycle(session, scope, name, keys)
        added = (
            None if _attached(session, parent, keys) else _insert_content_pg(session, parent, keys)
        )
        if added is not None:
            _grow(session, scope, name, len(keys), added)
            return len(keys)
    found = did_facts(session, keys, key_share=True)  # did_content has no foreign keys
    _check_children(parent.did_type, keys, found)
    if parent.did_type == DIDType.CONTAINER:
        _check_no_cycle(session, scope, name, keys)
    already = _attached(session, parent, keys)
    if already and not ignore_duplicate:
        k = sorted(already)[0]
        cls = FileAlreadyExists if parent.did_type == DIDType.DATASET else DuplicateContent
        raise cls(f"{k[0]}:{k[1]} is already attached to {scope}:{name}")
    new = [k for k in keys if k not in already]
    now = utcnow()
    rows = [
        {
            "scope": scope,
            "name": name,
            "child_scope": k[0],
            "child_name": k[1],
            "did_type": parent.did_type,
            "child_type": found[k].did_type,
            "bytes": found[k].bytes,
            "adler32": found[k].adler32,
            "md5": found[k].md5,
            "created_at": now,
        }
        for k in new
    ]
    insert_rows(session, DIDContent, rows, 5000)
    if new:
        _grow(session, scope, name, len(new), sum((found[k].bytes or 0) for k in new))
    return len(new)


def _attached(session: Session, parent: DID, keys: Sequence[Key]) -> set[Key]:
    """Those of ``keys`` in ``parent`` already (none to look for in an empty one)."""
    already: set[Key] = set()
    for batch in chunks(keys) if parent.length else ():
        already.update(
            (cs, cn)
            for cs, cn in session.connection().execute(
                select(DIDContent.child_scope, DIDContent.child_name).where(
                    DIDContent.scope == parent.scope,
                    DIDContent.name == parent.name,
                    pairs_in(DIDContent.child_scope, DIDContent.child_name, batch),
                )
            )
        )
    return already


def _grow(session: Session, scope: str, name: str, files: int, added_bytes: int) -> None:
    """A collection's derived length and size after ``files`` children were attached."""
    session.execute(
        update(DID)
        .where(DID.scope == scope, DID.name == name)
        .values(
            length=func.coalesce(DID.length, 0) + files,
            bytes=func.coalesce(DID.bytes, 0) + added_bytes,
            updated_at=utcnow(),
        )
    )


def _check_no_cycle(session: Session, scope: str, name: str, keys: Sequence[Key]) -> None:
    ancestors = _ancestors(session, (scope, name)) | {(scope, name)}
    loop = next((k for k in keys if k in ancestors), None)
    if loop is not None:
        raise UnsupportedOperation(
            f"attaching {loop[0]}:{loop[1]} to {scope}:{name} would create a cycle"
        )


_CONTENT_FROM_DIDS = text(
    """WITH fl_new AS (
  INSERT INTO did_content (scope, name, child_scope, child_name, did_type, child_type,
                           bytes, adler32, md5, created_at)
  SELECT :scope, :name, d.scope, d.name, :parent_type, d.did_type,
         d.bytes, d.adler32, d.md5, :now
  FROM json_array_elements(CAST(:pairs AS JSON)) AS fl_p(v)
  JOIN dids AS d ON d.scope = fl_p.v ->> 0 AND d.name = fl_p.v ->> 1
  WHERE (d.did_type = 'FILE') = :files
  FOR KEY SHARE OF d
  RETURNING bytes)
SELECT count(*), coalesce(sum(bytes), 0) FROM fl_new"""
)


def _insert_content_pg(session: Session, parent: DID, keys: Sequence[Key]) -> int | None:
    """PostgreSQL, children none of which is attached yet: copy their facts from ``dids``
    into ``did_content`` in the database, one statement per chunk (no row travels to
    Python and back). Returns the bytes added, or None (nothing written) when a child
    is missing or of the wrong type: the caller's checks then say which.

    The statement key-share locks each child it reads, as a foreign key would: a child
    being deleted is waited for (and then not found), and one attached here cannot be
    deleted before this transaction ends (``mark_deleted`` then sees it attached)."""
    files = parent.did_type == DIDType.DATASET
    added = 0
    with session.begin_nested() as savepoint:
        for batch in chunks(keys, 50_000):
            count, size = session.execute(
                _CONTENT_FROM_DIDS,
                {
                    "scope": parent.scope,
                    "name": parent.name,
                    "parent_type": parent.did_type,
                    "now": utcnow(),
                    "files": files,
                    "pairs": orjson.dumps(batch).decode(),
                },
            ).one()
            if count != len(batch):
                savepoint.rollback()
                return None
            added += int(size)
    return added


def detach(session: Session, scope: str, name: str, children: Sequence[Key]) -> None:
    parent = get_did(session, scope, name)
    if parent.did_type == DIDType.FILE:
        raise UnsupportedOperation(f"{scope}:{name} is a file and has no content")
    keys = list(dict.fromkeys(children))
    rows: dict[Key, DIDContent] = {}
    for batch in chunks(keys):
        for r in session.scalars(
            select(DIDContent).where(
                DIDContent.scope == scope,
                DIDContent.name == name,
                pairs_in(DIDContent.child_scope, DIDContent.child_name, batch),
            )
        ):
            rows[(r.child_scope, r.child_name)] = r
    missing = [k for k in keys if k not in rows]
    if missing:
        raise DIDNotFound(f"{missing[0][0]}:{missing[0][1]} is not attached to {scope}:{name}")
    now = utcnow()
    history = [
        {
            "scope": scope,
            "name": name,
            "child_scope": r.child_scope,
            "child_name": r.child_name,
            "did_type": r.did_type,
            "child_type": r.child_type,
            "bytes": r.bytes,
            "adler32": r.adler32,
            "md5": r.md5,
            "created_at": r.created_at,
            "deleted_at": now,
        }
        for r in rows.values()
    ]
    insert_rows(session, DIDContentHistory, history, 5000)
    for batch in chunks(keys):
        session.execute(
            delete(DIDContent).where(
                DIDContent.scope == scope,
                DIDContent.name == name,
                pairs_in(DIDContent.child_scope, DIDContent.child_name, batch),
            )
        )
    removed_bytes = sum((r.bytes or 0) for r in rows.values())
    session.execute(
        update(DID)
        .where(DID.scope == scope, DID.name == name)
        .values(
            length=func.coalesce(DID.length, 0) - len(keys),
            bytes=func.coalesce(DID.bytes, 0) - removed_bytes,
            updated_at=now,
        )
    )


def _content_select(scope: str, name: str) -> Select[Any]:
    return (
        select(DIDContent)
        .where(DIDContent.scope == scope, DIDContent.name == name)
        .order_by(DIDContent.child_scope, DIDContent.child_name)
    )


def list_content(session: Session, scope: str, name: str) -> Iterator[DIDContent]:
    get_did(session, scope, name)
    yield from session.scalars(_content_select(scope, name).execution_options(yield_per=2000))


def list_content_history(session: Session, scope: str, name: str) -> Iterator[DIDContentHistory]:
    get_did(session, scope, name)
    yield from session.scalars(
        select(DIDContentHistory)
        .where(DIDContentHistory.scope == scope, DIDContentHistory.name == name)
        .order_by(DIDContentHistory.id)
    )


def list_parents(session: Session, scope: str, name: str) -> list[DIDContent]:
    get_did(session, scope, name)
    return list(
        session.scalars(
            select(DIDContent).where(DIDContent.child_scope == scope, DIDContent.child_name == name)
        )
    )


def _collections_below(session: Session, roots: Sequence[Key]) -> tuple[list[Key], dict[Key, Key]]:
    """All datasets reachable from ``roots`` (containers expanded), with one parent each."""
    datasets: list[Key] = []
    parent_of: dict[Key, Key] = {}
    seen: set[Key] = set()
    frontier = list(roots)
    while frontier:
        containers: list[Key] = []
        found = existing_dids(session, frontier)
        for key in frontier:
            row = found.get(key)
            if row is None or key in seen:
                continue
            seen.add(key)
            if row.did_type == DIDType.DATASET:
                datasets.append(key)
            elif row.did_type == DIDType.CONTAINER:
                containers.append(key)
        frontier = []
        for batch in chunks(containers):
            for s, n, cs, cn in session.execute(
                select(
                    DIDContent.scope, DIDContent.name, DIDContent.child_scope, DIDContent.child_name
                ).where(pairs_in(DIDContent.scope, DIDContent.name, batch))
            ):
                parent_of.setdefault((cs, cn), (s, n))
                frontier.append((cs, cn))
    return datasets, parent_of


def list_files(session: Session, scope: str, name: str) -> Iterator[DID]:
    """Every file below a DID (itself if it is a file), each once, streamed."""
    row = get_did(session, scope, name)
    if row.did_type == DIDType.FILE:
        yield row
        return
    datasets, _ = _collections_below(session, [(scope, name)])
    seen: set[Key] | None = set() if len(datasets) > 1 else None
    for ds in datasets:
        stmt = (
            select(DID)
            .join(
                DIDContent,
                and_(DIDContent.child_scope == DID.scope, DIDContent.child_name == DID.name),
            )
            .where(DIDContent.scope == ds[0], DIDContent.name == ds[1])
            .order_by(DID.scope, DID.name)
            .execution_options(yield_per=5000)
        )
        for f in session.scalars(stmt):
            if seen is not None:
                if (f.scope, f.name) in seen:
                    continue
                seen.add((f.scope, f.name))
            yield f


class FileRow(NamedTuple):
    """The columns of a file that placement needs (a plain row, no ORM object)."""

    scope: str
    name: str
    bytes: int | None
    adler32: str | None
    md5: str | None


_FILE_COLS = (DID.scope, DID.name, DID.bytes, DID.adler32, DID.md5)


def file_rows_of(session: Session, keys: Sequence[Key]) -> list[FileRow]:
    """Every file below each of ``keys`` (files themselves, collections expanded), each
    once, in bulk: what a rule must lock when these DIDs arrive somewhere."""
    out: list[FileRow] = []
    seen: set[Key] = set()
    collections: list[Key] = []
    for (sc, nm), facts in did_facts(session, list(dict.fromkeys(keys))).items():
        if facts.did_type == DIDType.FILE.value:
            seen.add((sc, nm))
            out.append(FileRow(sc, nm, facts.bytes, facts.adler32, facts.md5))
        else:
            collections.append((sc, nm))
    if collections:
        datasets, _ = _collections_below(session, collections)
        for ds in datasets:
            for f in dataset_file_rows(session, ds):
                if (f.scope, f.name) not in seen:
                    seen.add((f.scope, f.name))
                    out.append(f)
    return out


def dataset_file_rows(session: Session, dataset: Key) -> list[FileRow]:
    """The files attached directly to one dataset, as plain rows."""
    stmt = (
        select(*_FILE_COLS)
        .join(
            DIDContent,
            and_(DIDContent.child_scope == DID.scope, DIDContent.child_name == DID.name),
        )
        .where(DIDContent.scope == dataset[0], DIDContent.name == dataset[1])
        .order_by(DID.scope, DID.name)
    )
    return [FileRow(*r) for r in session.execute(stmt)]


def datasets_below(session: Session, key: Key) -> list[Key]:
    """Every dataset reachable from ``key`` (itself if it is one; containers expanded)."""
    return _collections_below(session, [key])[0]


def dynamic_size(session: Session, row: DID) -> tuple[int, int]:
    """(bytes, files) summed over every file below a collection."""
    total, count = 0, 0
    for f in list_files(session, row.scope, row.name):
        total += f.bytes or 0
        count += 1
    return total, count


def scope_tree(
    session: Session, scope: str, name: str | None, recursive: bool
) -> Iterator[dict[str, Any]]:
    """Rucio's ``GET /dids/{scope}/``: the DID(s) and, recursively, their content."""
    if session.get(Scope, scope) is None:
        raise ScopeNotFound(f"scope {scope!r} does not exist")
    if name:
        roots = [get_did(session, scope, name)]
    else:
        roots = list(session.scalars(select(DID).where(DID.scope == scope).limit(100000)))
    for root in roots:
        yield {
            "scope": root.scope,
            "name": root.name,
            "type": root.did_type,
            "parent": None,
            "level": 0,
        }
        if recursive and root.did_type != DIDType.FILE:
            yield from _tree_below(session, root, 1)


def _tree_below(session: Session, parent: DID, level: int) -> Iterator[dict[str, Any]]:
    for c in session.scalars(_content_select(parent.scope, parent.name)):
        yield {
            "scope": c.child_scope,
            "name": c.child_name,
            "type": c.child_type,
            "parent": {"scope": parent.scope, "name": parent.name},
            "level": level,
        }
        if c.child_type != DIDType.FILE:
            child = session.get(DID, (c.child_scope, c.child_name))
            if child is not None:
                yield from _tree_below(session, child, level + 1)


def mark_deleted(session: Session, keys: Sequence[Key], when: datetime | None = None) -> None:
    """Remove DIDs for ever: record their names so they can never be reused."""
    when = when or utcnow()
    found = existing_dids(session, keys)
    rows = [
        {
            "scope": k[0],
            "name": k[1],
            "did_type": r.did_type,
            "account": r.account,
            "deleted_at": when,
        }
        for k, r in found.items()
    ]
    insert_rows(session, DeletedDID, rows, 2000)
    gone = list(found)
    for batch in chunks(gone):  # a collection's content goes with it
        session.execute(
            delete(DIDContent).where(pairs_in(DIDContent.scope, DIDContent.name, batch))
        )
        session.execute(delete(DID).where(pairs_in(DID.scope, DID.name, batch)))
    # checked after the delete, as a foreign key would be: an attach that held one of
    # these rows has committed by now (the delete waited for its lock) and is seen here
    for batch in chunks(gone):
        held = session.execute(
            select(
                DIDContent.child_scope,
                DIDContent.child_name,
                DIDContent.scope,
                DIDContent.name,
            )
            .where(pairs_in(DIDContent.child_scope, DIDContent.child_name, batch))
            .limit(1)
        ).first()
        if held is not None:
            raise UnsupportedOperation(
                f"{held[0]}:{held[1]} is attached to {held[2]}:{held[3]}; "
                "detach it before removing it"
            )
