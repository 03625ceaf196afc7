"""DIDs and their metadata."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from itertools import islice
from typing import Any

from sqlalchemy.orm import Session

from fedlake.auth import policy
from fedlake.auth.capabilities import allows
from fedlake.auth.policy import DELETE, Caller, require_capability, require_scope_write
from fedlake.bootstrap import Lake
from fedlake.catalog import dids as core
from fedlake.catalog import meta as meta_core
from fedlake.catalog.models import DID
from fedlake.domain.errors import InvalidInput, ScopeNotFound
from fedlake.domain.names import validate_did_name, validate_scope
from fedlake.domain.types import DIDType
from fedlake.expressions.did_filters import TYPES, Filter
from fedlake.services import embargo
from fedlake.services._validate import (
    MAX_LIFETIME,
    opt_bool,
    opt_int,
    req_dict,
    req_list,
    req_str,
)

__all__ = [
    "add_dids",
    "attach",
    "detach",
    "get_did",
    "get_meta",
    "search",
    "set_meta",
    "submit_set_meta",
]

Key = tuple[str, str]


def did_key(d: Any, what: str) -> Key:
    d = req_dict(d, what)
    return validate_scope(req_str(d, "scope", what)), validate_did_name(req_str(d, "name", what))


def _new_did(caller: Caller, item: dict[str, Any]) -> tuple[core.NewDID, dict[str, Any]]:
    scope, name = did_key(item, "DID")
    kind = DIDType.parse(item.get("type") or "DATASET")
    statuses = item.get("statuses") or {}
    if not isinstance(statuses, dict):
        raise InvalidInput('statuses must be an object like {"monotonic": true}')
    lifetime = opt_int(item, "lifetime", f"{scope}:{name}", minimum=1, maximum=MAX_LIFETIME)
    meta = item.get("meta") or {}
    if not isinstance(meta, dict):
        raise InvalidInput("meta must be a JSON object")
    account = item.get("account") or caller.account
    return core.NewDID(
        scope, name, kind, account, bool(statuses.get("monotonic", False)), lifetime
    ), meta


def add_dids(lake: Lake, caller: Caller, items: Any) -> None:
    """Create collections (bulk, all or nothing), with optional meta, content and rules."""
    from fedlake.services import rules as rule_svc

    req_list(items, "the DID list")
    parsed = [_new_did(caller, req_dict(i, "each DID")) for i in items]
    extras = []
    for item in items:
        content = [did_key(d, "content DID") for d in req_list(item.get("dids") or [], "dids")]
        rules = req_list(item.get("rules") or [], "rules")
        extras.append((content, rules))
    with lake.db.write() as s:
        h = embargo.hidden(s, caller)
        for new, _ in parsed:
            embargo.require_visible_scope(h, new.scope)
            require_scope_write(s, caller, new.scope, "add DIDs", name=new.name)
            require_capability(caller, "create", new.scope, new.name, "add")
        for content, _ in extras:
            _require_visible(h, content)
        # a hidden name that exists fails below as it would for anybody (DIDAlreadyExists):
        # see docs/embargo.md, "Creating a DID whose name is embargoed"
        core.add_collections(s, [p[0] for p in parsed])
        for (new, meta), (content, rules) in zip(parsed, extras, strict=True):
            if meta:
                meta_core.set_meta(s, new.scope, new.name, meta)
            if content:
                core.attach(s, new.scope, new.name, content)
                extend_rules(s, new.scope, new.name, content)
            for rule in rules:
                body = dict(req_dict(rule, "rule"))
                body["dids"] = [{"scope": new.scope, "name": new.name}]
                rule_svc.add_rules_in(s, caller, body)


def _reader(lake: Lake, s: Session, caller: Caller) -> policy.Reader | None:
    """What limits the caller's reads (its token's capabilities, read rules); None: nothing."""
    return policy.reader(s, caller, lake.settings.policy_read)


def _require_readable(lake: Lake, s: Session, caller: Caller, keys: list[Key]) -> None:
    """Only what the caller may read, or create, can be attached (a token that may only
    create uploads a file and attaches it: rucio upload)."""
    r = _reader(lake, s, caller)
    caps = caller.capabilities
    for key in keys:
        if caps is not None and allows(caps, "create", policy.did_path(*key)):
            continue
        policy.require_read(r, *key)


def _require_visible(h: embargo.Hidden | None, keys: list[Key]) -> None:
    for scope, name in keys:
        embargo.require_visible(h, scope, name)


def get_did(
    lake: Lake, caller: Caller, scope: str, name: str, dynamic_depth: str | None = None
) -> dict[str, Any]:
    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        embargo.require_visible(h, validate_scope(scope), validate_did_name(name))
        policy.require_read(_reader(lake, s, caller), scope, name)
        row = core.get_did(s, scope, name)
        dynamic = None
        if dynamic_depth and row.did_type == DIDType.CONTAINER:
            dynamic = _visible_size(s, h, row)
        elif h is not None and row.did_type != DIDType.FILE:
            dynamic = _visible_counts(s, h, row)
        return core.did_dict(row, dynamic=dynamic)


def _visible_size(s: Session, h: embargo.Hidden | None, row: DID) -> tuple[int, int]:
    """(bytes, files) over the files below ``row`` that the caller may see."""
    if h is None:
        return core.dynamic_size(s, row)
    total, count = 0, 0
    for f in h.keep(core.list_files(s, row.scope, row.name), lambda f: (f.scope, f.name)):
        total += f.bytes or 0
        count += 1
    return total, count


def _visible_counts(s: Session, h: embargo.Hidden, row: DID) -> tuple[int, int] | None:
    """(bytes, length) of a collection without its hidden content; None if none is hidden
    (the stored counts are right then)."""
    children = list(core.list_content(s, row.scope, row.name))
    shown = list(h.keep(children, lambda c: (c.child_scope, c.child_name)))
    if len(shown) == len(children):
        return None
    if row.did_type == DIDType.DATASET:
        return sum(c.bytes or 0 for c in shown), len(shown)
    return _visible_size(s, h, row)[0], len(shown)


def _check_exists(
    lake: Lake, caller: Caller, scope: str, name: str
) -> tuple[embargo.Hidden | None, policy.Reader | None]:
    """Raise what a nonexistent DID gives, or AccessDenied if the caller may not read it;
    return what the caller may not see (embargo) and what limits its reads (policy)."""
    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        embargo.require_visible(h, validate_scope(scope), validate_did_name(name))
        r = _reader(lake, s, caller)
        policy.require_read(r, scope, name)
        core.get_did(s, scope, name)
        return h, r


def search(
    lake: Lake,
    caller: Caller,
    scope: str,
    flt: Filter,
    did_type: str,
    long: bool,
    limit: int | None,
) -> Iterator[Any]:
    validate_scope(scope)
    if did_type not in TYPES:
        raise InvalidInput(f"type must be one of {', '.join(TYPES)}")
    from fedlake.catalog.accounts import get_scope

    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        embargo.require_visible_scope(h, scope)
        get_scope(s, scope)
        r = _reader(lake, s, caller)
        if r is not None:
            r.require_scope(scope)
    # with hidden or unreadable DIDs the limit applies after filtering them out
    filtered = h is not None or r is not None
    stmt = meta_core.search_statement(scope, flt, did_type, None if filtered else limit)

    def gen() -> Iterator[Any]:
        with lake.db.read() as s:
            rows: Iterator[DID] = iter(s.scalars(stmt))
            if h is not None:
                rows = h.keep(rows, lambda d: (d.scope, d.name))
            if r is not None:
                rows = r.keep(rows, lambda d: (d.scope, d.name))
            if filtered:
                rows = islice(rows, limit or None)
            for row in rows:
                if long:
                    nbytes, length = row.bytes, 1 if row.did_type == DIDType.FILE else row.length
                    if h is not None and row.did_type != DIDType.FILE:
                        nbytes, length = _visible_counts(s, h, row) or (nbytes, length)
                    yield {
                        "scope": row.scope,
                        "name": row.name,
                        "did_type": row.did_type,
                        "bytes": nbytes,
                        "length": length,
                    }
                else:
                    yield row.name

    return gen()


def list_content(lake: Lake, caller: Caller, scope: str, name: str) -> Iterator[dict[str, Any]]:
    h, r = _check_exists(lake, caller, scope, name)

    def gen() -> Iterator[dict[str, Any]]:
        with lake.db.read() as s:
            rows = core.list_content(s, scope, name)
            rows = embargo.keep_visible(h, r, rows, lambda c: (c.child_scope, c.child_name))
            for c in rows:
                yield {
                    "scope": c.child_scope,
                    "name": c.child_name,
                    "type": c.child_type,
                    "bytes": c.bytes,
                    "adler32": c.adler32,
                    "md5": c.md5,
                }

    return gen()


def list_content_history(lake: Lake, caller: Caller, scope: str, name: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        embargo.require_visible(h, validate_scope(scope), validate_did_name(name))
        r = _reader(lake, s, caller)
        policy.require_read(r, scope, name)
        rows = core.list_content_history(s, scope, name)
        rows = embargo.keep_visible(h, r, rows, lambda c: (c.child_scope, c.child_name))
        return [
            {
                "scope": c.child_scope,
                "name": c.child_name,
                "type": c.child_type,
                "bytes": c.bytes,
                "adler32": c.adler32,
                "md5": c.md5,
                "deleted_at": c.deleted_at,
                "created_at": c.created_at,
            }
            for c in rows
        ]


def list_files(lake: Lake, caller: Caller, scope: str, name: str) -> Iterator[dict[str, Any]]:
    h, r = _check_exists(lake, caller, scope, name)

    def gen() -> Iterator[dict[str, Any]]:
        with lake.db.read() as s:
            rows = core.list_files(s, scope, name)
            rows = embargo.keep_visible(h, r, rows, lambda f: (f.scope, f.name))
            for f in rows:
                yield {
                    "scope": f.scope,
                    "name": f.name,
                    "bytes": f.bytes,
                    "adler32": f.adler32,
                    "md5": f.md5,
                    "guid": f.guid,
                    "events": f.events,
                }

    return gen()


def list_parents(lake: Lake, caller: Caller, scope: str, name: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        embargo.require_visible(h, validate_scope(scope), validate_did_name(name))
        r = _reader(lake, s, caller)
        policy.require_read(r, scope, name)
        rows = core.list_parents(s, scope, name)
        rows = list(embargo.keep_visible(h, r, rows, lambda p: (p.scope, p.name)))
        return [{"scope": p.scope, "name": p.name, "type": p.did_type} for p in rows]


def scope_tree(
    lake: Lake, caller: Caller, scope: str, name: str | None, recursive: bool
) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        if h is not None and validate_scope(scope) in h.scopes:
            raise ScopeNotFound(f"scope {scope!r} does not exist")  # as core.scope_tree
        if name:
            embargo.require_visible(h, scope, validate_did_name(name))
        r = _reader(lake, s, caller)
        if r is not None and name:
            r.require(scope, name)
        elif r is not None:
            r.require_scope(scope)
        rows = core.scope_tree(s, validate_scope(scope), name, recursive)
        return list(embargo.keep_visible(h, r, rows, lambda d: (d["scope"], d["name"])))


def attach(
    lake: Lake,
    caller: Caller,
    scope: str,
    name: str,
    dids: Any,
    ignore_duplicate: bool = False,
) -> int:
    keys = [did_key(d, "DID to attach") for d in req_list(dids, "dids")]
    with lake.db.write() as s:
        embargo.require_owner_and_visible(
            s, caller, validate_scope(scope), [(scope, name), *keys], "attach DIDs", name=name
        )
        require_capability(caller, "create", scope, name, "attach DIDs to")
        _require_readable(lake, s, caller, keys)
        n = core.attach(s, scope, validate_did_name(name), keys, ignore_duplicate=ignore_duplicate)
        extend_rules(s, scope, name, keys)
        return n


def extend_rules(s: Any, scope: str, name: str, children: list[Key]) -> None:
    """New content in a DID with rules (or whose ancestors have rules): lock the new files."""
    from fedlake.catalog import rules as rule_core
    from fedlake.services.rules import targets_of

    holders = core._ancestors(s, (scope, name)) | {(scope, name)}
    # rules without locks yet are placed (approved, injected) with all their files then
    unplaced = {state.value for state in rule_core.UNPLACED}
    # the rules are held against deletion: a lock made here for a rule deleted meanwhile
    # would break the locks' foreign key (a lifecycle daemon deletes rules concurrently)
    covering = rule_core.rules_covering(s, list(holders), key_share=True)
    rules = [r for r in covering if r.state not in unplaced]
    if not rules:
        return
    files = core.file_rows_of(s, children)
    for rule in rules:
        current = rule_core.lock_rses(s, rule.id)
        if rule.grouping == "NONE" or len(current) < rule.copies:
            from fedlake.catalog import placement

            targets = targets_of(s, rule.rse_expression, rule.ignore_availability)
            places = placement.places_of(s, placement.distinct_by(rule.meta), targets)
            kept = current[: rule.copies]
            chosen = kept + placement.choose(targets, rule.copies - len(kept), places, kept)
        else:
            chosen = current[: rule.copies]
        rule_core.lock_files(s, rule, [(files, chosen)], check_limits=not rule.ignore_account_limit)
    # the new copies get their transfer requests in the same transaction
    from fedlake.catalog import transfer_queue
    from fedlake.services.transfers import poke_after_commit

    if transfer_queue.queue_for_rules(s, [r.id for r in rules], None):
        poke_after_commit(s)


def attach_bulk(lake: Lake, caller: Caller, attachments: Any, ignore_duplicate: bool) -> None:
    plan = []
    for a in req_list(attachments, "attachments"):
        a = req_dict(a, "attachment")
        scope, name = did_key(a, "attachment")
        plan.append(
            (scope, name, [did_key(d, "DID to attach") for d in req_list(a.get("dids"), "dids")])
        )
    with lake.db.write() as s:
        for scope, name, keys in plan:
            embargo.require_owner_and_visible(
                s, caller, scope, [(scope, name), *keys], "attach DIDs", name=name
            )
            require_capability(caller, "create", scope, name, "attach DIDs to")
            _require_readable(lake, s, caller, keys)
            core.attach(s, scope, name, keys, ignore_duplicate=ignore_duplicate)
            extend_rules(s, scope, name, keys)


def detach(lake: Lake, caller: Caller, scope: str, name: str, dids: Any) -> None:
    keys = [did_key(d, "DID to detach") for d in req_list(dids, "dids")]
    with lake.db.write() as s:
        embargo.require_owner_and_visible(
            s,
            caller,
            validate_scope(scope),
            [(scope, name), *keys],
            "detach DIDs",
            name=name,
            action=DELETE,
        )
        require_capability(caller, "modify", scope, name, "detach DIDs from")
        detach_in(s, scope, validate_did_name(name), keys)


def detach_in(s: Any, scope: str, name: str, keys: list[Key]) -> None:
    """Detach ``keys`` from a collection, releasing the locks of the rules above it on
    the files no longer below them."""
    from fedlake.catalog import rules as rule_core

    holders = core._ancestors(s, (scope, name)) | {(scope, name)}
    rules = rule_core.rules_covering(s, list(holders))
    for rule in sorted(rules, key=lambda r: r.id):
        # requests, then the rule, as a delete of the rule takes them: no deadlock
        rule_core.hold_copies(s, rule.id)
    if rules:  # held against deletion meanwhile, as attach holds them
        rules = rule_core.rules_covering(s, list(holders), key_share=True)
    removed = core.file_rows_of(s, keys) if rules else []
    core.detach(s, scope, name, keys)
    if rules and removed:
        rule_core.unlock_detached(s, rules, [(f.scope, f.name) for f in removed])


def set_status(lake: Lake, caller: Caller, scope: str, name: str, body: dict[str, Any]) -> None:
    req_dict(body, "status body")
    if "open" not in body:
        raise InvalidInput('the body must be {"open": true} or {"open": false}')
    is_open = opt_bool(body, "open", "status")
    with lake.db.write() as s:
        embargo.require_owner_and_visible(
            s, caller, validate_scope(scope), [(scope, name)], "open or close DIDs", name=name
        )
        require_capability(caller, "modify", scope, name, "open or close")
        core.set_status(s, scope, validate_did_name(name), is_open)


def get_meta(
    lake: Lake, caller: Caller, scope: str, name: str, plugin: str | None
) -> dict[str, Any]:
    with lake.db.read() as s:
        embargo.require_visible(embargo.hidden(s, caller), validate_scope(scope), name)
        policy.require_read(_reader(lake, s, caller), scope, name)
        return meta_core.get_meta(
            s, validate_scope(scope), validate_did_name(name), plugin or "DID_COLUMN"
        )


def set_meta(lake: Lake, caller: Caller, scope: str, name: str, meta: Any) -> None:
    req_dict(meta, "meta")
    with lake.db.write() as s:
        embargo.require_owner_and_visible(
            s, caller, validate_scope(scope), [(scope, name)], "set metadata", name=name
        )
        require_capability(caller, "modify", scope, name, "set metadata of")
        meta_core.set_meta(s, scope, validate_did_name(name), meta)


def submit_set_meta(lake: Lake, caller: Caller, scope: str, name: str, meta: Any) -> Future[None]:
    """``set_meta`` through the catalogue's group commit, for one call per DID at a high
    rate: concurrent calls share transactions, each call stays all-or-nothing.

    Checks the arguments' shape at once (raises); the future carries the outcome.
    """
    req_dict(meta, "meta")
    scope, name = validate_scope(scope), validate_did_name(name)

    def job(s: Session) -> None:
        embargo.require_owner_and_visible(
            s, caller, scope, [(scope, name)], "set metadata", name=name
        )
        require_capability(caller, "modify", scope, name, "set metadata of")
        meta_core.set_meta(s, scope, name, meta)

    return lake.db.submit_write(job, order=(scope, name))


def set_meta_bulk(lake: Lake, caller: Caller, items: Any) -> None:
    plan = []
    for it in req_list(items, "dids"):
        it = req_dict(it, "DID")
        plan.append((*did_key(it, "DID"), req_dict(it.get("meta"), "meta")))
    with lake.db.write() as s:
        for scope, name, meta in plan:
            embargo.require_owner_and_visible(
                s, caller, scope, [(scope, name)], "set metadata", name=name
            )
            require_capability(caller, "modify", scope, name, "set metadata of")
            meta_core.set_meta(s, scope, name, meta)


def delete_meta(lake: Lake, caller: Caller, scope: str, name: str, key: str | None) -> None:
    if not key:
        raise InvalidInput("give the key to delete as ?key=NAME")
    with lake.db.write() as s:
        embargo.require_owner_and_visible(
            s,
            caller,
            validate_scope(scope),
            [(scope, name)],
            "delete metadata",
            name=name,
            action=DELETE,
        )
        require_capability(caller, "modify", scope, name, "delete metadata of")
        meta_core.delete_meta(s, scope, validate_did_name(name), key)


def bulk_meta(lake: Lake, caller: Caller, dids: Any, plugin: str | None) -> list[dict[str, Any]]:
    keys = [did_key(d, "DID") for d in req_list(dids, "dids")]
    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        if h is not None:  # hidden DIDs are skipped as missing ones are
            keys = list(h.keep(keys, lambda k: k))
        r = _reader(lake, s, caller)
        for key in keys:
            policy.require_read(r, *key)
        return list(meta_core.get_meta_bulk(s, keys, plugin or "DID_COLUMN"))
