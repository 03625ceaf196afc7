"""DIDs and their metadata."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from sqlalchemy.orm import Session

from fedlake.auth.policy import Caller, require_scope_owner
from fedlake.bootstrap import Lake
from fedlake.catalog import dids as core
from fedlake.catalog import meta as meta_core
from fedlake.catalog.models import DID
from fedlake.domain.errors import InvalidInput
from fedlake.domain.names import validate_did_name, validate_scope
from fedlake.domain.types import DIDType
from fedlake.expressions.did_filters import TYPES, Filter
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
        for new, _ in parsed:
            require_scope_owner(s, caller, new.scope, "add DIDs")
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


def get_did(lake: Lake, scope: str, name: str, dynamic_depth: str | None = None) -> dict[str, Any]:
    with lake.db.read() as s:
        row = core.get_did(s, validate_scope(scope), validate_did_name(name))
        dynamic = None
        if dynamic_depth and row.did_type == DIDType.CONTAINER:
            dynamic = core.dynamic_size(s, row)
        return core.did_dict(row, dynamic=dynamic)


def _check_exists(lake: Lake, scope: str, name: str) -> DID:
    with lake.db.read() as s:
        return core.get_did(s, validate_scope(scope), validate_did_name(name))


def search(
    lake: Lake, scope: str, flt: Filter, did_type: str, long: bool, limit: int | None
) -> Iterator[Any]:
    validate_scope(scope)
    if did_type not in TYPES:
        raise InvalidInput(f"type must be one of {', '.join(TYPES)}")
    from fedlake.catalog.accounts import get_scope

    with lake.db.read() as s:
        get_scope(s, scope)
    stmt = meta_core.search_statement(scope, flt, did_type, limit)  # bad filters: 400 now

    def gen() -> Iterator[Any]:
        with lake.db.read() as s:
            for row in s.scalars(stmt):
                if long:
                    yield {
                        "scope": row.scope,
                        "name": row.name,
                        "did_type": row.did_type,
                        "bytes": row.bytes,
                        "length": 1 if row.did_type == DIDType.FILE else row.length,
                    }
                else:
                    yield row.name

    return gen()


def list_content(lake: Lake, scope: str, name: str) -> Iterator[dict[str, Any]]:
    _check_exists(lake, scope, name)

    def gen() -> Iterator[dict[str, Any]]:
        with lake.db.read() as s:
            for c in core.list_content(s, scope, name):
                yield {
                    "scope": c.child_scope,
                    "name": c.child_name,
                    "type": c.child_type,
                    "bytes": c.bytes,
                    "adler32": c.adler32,
                    "md5": c.md5,
                }

    return gen()


def list_content_history(lake: Lake, scope: str, name: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
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
            for c in core.list_content_history(s, validate_scope(scope), validate_did_name(name))
        ]


def list_files(lake: Lake, scope: str, name: str) -> Iterator[dict[str, Any]]:
    _check_exists(lake, scope, name)

    def gen() -> Iterator[dict[str, Any]]:
        with lake.db.read() as s:
            for f in core.list_files(s, scope, name):
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


def list_parents(lake: Lake, scope: str, name: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        return [
            {"scope": p.scope, "name": p.name, "type": p.did_type}
            for p in core.list_parents(s, validate_scope(scope), validate_did_name(name))
        ]


def scope_tree(lake: Lake, scope: str, name: str | None, recursive: bool) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        return list(core.scope_tree(s, validate_scope(scope), name, recursive))


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
        require_scope_owner(s, caller, validate_scope(scope), "attach DIDs")
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
    rules = [r for r in rule_core.rules_covering(s, list(holders)) if r.state not in unplaced]
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
    from fedlake.catalog import transfers as transfer_core
    from fedlake.services.transfers import poke_after_commit

    if transfer_core.queue_for_rules(s, [r.id for r in rules], None):
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
            require_scope_owner(s, caller, scope, "attach DIDs")
            core.attach(s, scope, name, keys, ignore_duplicate=ignore_duplicate)
            extend_rules(s, scope, name, keys)


def detach(lake: Lake, caller: Caller, scope: str, name: str, dids: Any) -> None:
    keys = [did_key(d, "DID to detach") for d in req_list(dids, "dids")]
    with lake.db.write() as s:
        require_scope_owner(s, caller, validate_scope(scope), "detach DIDs")
        holders = core._ancestors(s, (scope, validate_did_name(name))) | {(scope, name)}
        from fedlake.catalog import rules as rule_core

        rules = rule_core.rules_covering(s, list(holders))
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
        require_scope_owner(s, caller, validate_scope(scope), "open or close DIDs")
        core.set_status(s, scope, validate_did_name(name), is_open)


def get_meta(lake: Lake, scope: str, name: str, plugin: str | None) -> dict[str, Any]:
    with lake.db.read() as s:
        return meta_core.get_meta(
            s, validate_scope(scope), validate_did_name(name), plugin or "DID_COLUMN"
        )


def set_meta(lake: Lake, caller: Caller, scope: str, name: str, meta: Any) -> None:
    req_dict(meta, "meta")
    with lake.db.write() as s:
        require_scope_owner(s, caller, validate_scope(scope), "set metadata")
        meta_core.set_meta(s, scope, validate_did_name(name), meta)


def submit_set_meta(lake: Lake, caller: Caller, scope: str, name: str, meta: Any) -> Future[None]:
    """``set_meta`` through the catalogue's group commit, for one call per DID at a high
    rate: concurrent calls share transactions, each call stays all-or-nothing.

    Checks the arguments' shape at once (raises); the future carries the outcome.
    """
    req_dict(meta, "meta")
    scope, name = validate_scope(scope), validate_did_name(name)

    def job(s: Session) -> None:
        require_scope_owner(s, caller, scope, "set metadata")
        meta_core.set_meta(s, scope, name, meta)

    return lake.db.submit_write(job, order=(scope, name))


def set_meta_bulk(lake: Lake, caller: Caller, items: Any) -> None:
    plan = []
    for it in req_list(items, "dids"):
        it = req_dict(it, "DID")
        plan.append((*did_key(it, "DID"), req_dict(it.get("meta"), "meta")))
    with lake.db.write() as s:
        for scope, name, meta in plan:
            require_scope_owner(s, caller, scope, "set metadata")
            meta_core.set_meta(s, scope, name, meta)


def delete_meta(lake: Lake, caller: Caller, scope: str, name: str, key: str | None) -> None:
    if not key:
        raise InvalidInput("give the key to delete as ?key=NAME")
    with lake.db.write() as s:
        require_scope_owner(s, caller, validate_scope(scope), "delete metadata")
        meta_core.delete_meta(s, scope, validate_did_name(name), key)


def bulk_meta(lake: Lake, dids: Any, plugin: str | None) -> list[dict[str, Any]]:
    keys = [did_key(d, "DID") for d in req_list(dids, "dids")]
    with lake.db.read() as s:
        return list(meta_core.get_meta_bulk(s, keys, plugin or "DID_COLUMN"))
