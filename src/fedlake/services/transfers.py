"""Transfers: ask for copies, inspect the queue, cancel and retry, links and distances."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from fedlake.auth import policy
from fedlake.auth.policy import Caller, require_admin
from fedlake.bootstrap import Lake
from fedlake.catalog import dids as did_core
from fedlake.catalog import rses as rse_core
from fedlake.catalog import transfer_admin as admin
from fedlake.catalog import transfer_queue
from fedlake.catalog import transfers as core
from fedlake.domain.errors import Duplicate, InvalidInput, RequestNotFound
from fedlake.domain.names import validate_did_name, validate_rse_name, validate_scope
from fedlake.domain.types import DIDType, RequestState
from fedlake.services import embargo
from fedlake.services._validate import opt_bool, opt_int, opt_str, req_dict, req_list, req_str
from fedlake.transfers import wakeup

__all__ = [
    "add_distance",
    "cancel",
    "delete_distance",
    "get_distances",
    "get_request",
    "list_links",
    "list_requests",
    "list_shares",
    "poke_after_commit",
    "retry",
    "set_distance",
    "set_link",
    "set_share",
    "submit",
    "summary",
    "update_distance",
]

MAX_LIST = 10_000
_RULE_ID = re.compile(r"[0-9a-fA-F]{32}")
_SUBMIT_KEYS = {
    "dids",
    "rse",
    "activity",
    "priority",
    "source_rse_expression",
    "verify_source",
    "max_attempts",
}


def poke_after_commit(s: Session) -> None:
    """Wake this process's transfer workers once the transaction has committed."""
    event.listen(s, "after_commit", lambda _s: wakeup.poke(), once=True)


def _files(s: Session, scope: str, name: str) -> list[tuple[str, str]]:
    row = did_core.get_did(s, scope, name)
    if row.did_type == DIDType.FILE.value:
        return [(scope, name)]
    return [(f.scope, f.name) for f in did_core.list_files(s, scope, name)]


def submit(lake: Lake, caller: Caller, body: Any) -> list[int]:
    """Copy DIDs (files, or every file of collections) to an RSE: one request per file."""
    require_admin(caller, "request transfers directly (add a rule instead)")
    body = req_dict(body, "the transfer")
    unknown = sorted(set(body) - _SUBMIT_KEYS)
    if unknown:
        raise InvalidInput(
            f"unknown transfer field(s) {', '.join(unknown)}; use {', '.join(sorted(_SUBMIT_KEYS))}"
        )
    dids = req_list(body.get("dids"), "dids")
    if not dids:
        raise InvalidInput("a transfer needs at least one DID in 'dids'")
    rse = validate_rse_name(req_str(body, "rse", "the transfer"))
    activity = opt_str(body, "activity", "the transfer") or "default"
    if len(activity) > 50:
        raise InvalidInput("activity is longer than 50 characters")
    priority = opt_int(body, "priority", "the transfer")
    priority = 3 if priority is None else priority
    if not 1 <= priority <= 5:
        raise InvalidInput(f"priority must be 1 (lowest) to 5 (highest), got {priority}")
    max_attempts = opt_int(body, "max_attempts", "the transfer")
    max_attempts = 5 if max_attempts is None else max_attempts
    if not 1 <= max_attempts <= 100:
        raise InvalidInput(f"max_attempts must be 1 to 100, got {max_attempts}")
    source = opt_str(body, "source_rse_expression", "the transfer")
    verify_source = opt_bool(body, "verify_source", "the transfer")
    keys = []
    for d in dids:
        d = req_dict(d, "DID")
        keys.append(
            (
                validate_scope(req_str(d, "scope", "DID")),
                validate_did_name(req_str(d, "name", "DID")),
            )
        )
    for scope, name in keys:  # a token's capabilities: no copy of what it may not read
        policy.require_capability(caller, "read", scope, name, "copy")
    with lake.db.write() as s:
        row = rse_core.get_rse(s, rse)
        if not row.availability_write:
            raise InvalidInput(f"RSE {rse} does not accept writes (availability_write is off)")
        if not any(p.write_wan is not None for p in rse_core.protocols(s, row.id)):
            raise InvalidInput(f"RSE {rse} has no protocol for writing; add one first")
        if source is not None:
            from fedlake.services.rses import resolve

            resolve(s, source)  # a clear error for a bad expression, now
        files: list[tuple[str, str]] = []
        known = did_core.existing_dids(s, keys)
        for scope, name in keys:
            did = known.get((scope, name))
            if did is not None and did.did_type == DIDType.FILE.value:
                files.append((scope, name))
            else:
                files.extend(_files(s, scope, name))  # a collection, or a clear not-found
        items = [
            transfer_queue.NewRequest(
                scope,
                name,
                row.id,
                caller.account,
                activity=activity,
                priority=priority,
                source_rse_expression=source,
                verify_source=verify_source,
                max_attempts=max_attempts,
            )
            for scope, name in dict.fromkeys(files)
        ]
        ids = transfer_queue.queue_requests(s, items)
        poke_after_commit(s)
    return ids


def _with_attempts(s: Session, r: Any, names: dict[str, str]) -> dict[str, Any]:
    out = admin.request_dict(r, names)
    out["attempts"] = [
        {
            "attempt": a.attempt,
            "source_rse": names.get(a.source_rse_id or "", a.source_rse_id),
            "worker": a.worker,
            "state": a.state,
            "error": a.error,
            "recoverable": a.recoverable,
            "bytes": a.bytes,
            "seconds": a.seconds,
            "tpc": a.tpc,
            "started_at": a.started_at,
            "finished_at": a.finished_at,
        }
        for a in admin.attempts_of(s, r.id)
    ]
    return out


def get_request(lake: Lake, caller: Caller, request_id: int) -> dict[str, Any]:
    with lake.db.read() as s:
        r = admin.get_request(s, request_id)
        h = embargo.hidden(s, caller)
        if h is not None and (h.hides(r.scope, r.name) or embargo.hidden_rules(s, h, [r.rule_id])):
            raise RequestNotFound(f"transfer request {request_id} does not exist")  # as admin
        policy.require_read(policy.reader(s, caller, lake.settings.policy_read), r.scope, r.name)
        return _with_attempts(s, r, core.rse_names(s))


def list_requests(lake: Lake, caller: Caller, filters: dict[str, str]) -> list[dict[str, Any]]:
    """Transfer requests; those of DIDs embargoed from ``caller`` or that it may not read
    (``fedlake.auth.policy``) are left out (after the limit: a listing may then hold fewer
    than ``limit`` rows)."""
    known = {"state", "scope", "name", "rse", "rule_id", "limit"}
    unknown = sorted(set(filters) - known)
    if unknown:
        raise InvalidInput(
            f"unknown filter(s) {', '.join(unknown)}; use {', '.join(sorted(known))}"
        )
    states = [RequestState.parse(x).value for x in filters.get("state", "").split(",") if x]
    try:
        limit = int(filters.get("limit", "1000"))
    except ValueError:
        raise InvalidInput(f"limit must be an integer, got {filters['limit']!r}") from None
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit must be 1 to {MAX_LIST}")
    scope, name, rule_id = filters.get("scope"), filters.get("name"), filters.get("rule_id")
    scope = None if scope is None else validate_scope(scope)
    name = None if name is None else validate_did_name(name)
    if rule_id is not None and not _RULE_ID.fullmatch(rule_id):
        raise InvalidInput(f"rule_id must be 32 hexadecimal digits, got {rule_id!r}")
    with lake.db.read() as s:
        dest = None
        if "rse" in filters:
            dest = rse_core.get_rse(s, validate_rse_name(filters["rse"])).id
        names = core.rse_names(s)
        rows = admin.list_requests(
            s,
            states=states,
            scope=scope,
            name=name,
            dest_rse_id=dest,
            rule_id=None if rule_id is None else rule_id.lower(),
            limit=limit,
        )
        h = embargo.hidden(s, caller)
        if h is not None:
            rows = list(h.keep(rows, lambda r: (r.scope, r.name)))
            gone = embargo.hidden_rules(s, h, (r.rule_id for r in rows))
            rows = [r for r in rows if r.rule_id not in gone]
        r = policy.reader(s, caller, lake.settings.policy_read)
        rows = list(policy.keep_readable(r, rows, lambda row: (row.scope, row.name)))
        return [admin.request_dict(row, names) for row in rows]


def summary(lake: Lake, caller: Caller) -> dict[str, Any]:
    """Counts per state and per-link statistics (for `fedlake transfer watch`); the
    requests that ``GET /transfers`` leaves out for ``caller`` (embargoed DIDs, rules on
    them) are not counted (docs/embargo.md)."""
    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        return {"states": admin.state_counts(s, h), "links": _links(s, h)}


def cancel(lake: Lake, caller: Caller, request_id: int) -> None:
    require_admin(caller, "cancel transfers")
    with lake.db.write() as s:
        admin.cancel(s, request_id)


def retry(lake: Lake, caller: Caller, request_id: int) -> int:
    require_admin(caller, "retry transfers")
    with lake.db.write() as s:
        new_id = admin.retry(s, request_id)
        poke_after_commit(s)
    return new_id


def _links(s: Session, h: embargo.Hidden | None) -> list[dict[str, Any]]:
    """Per link: the requests running now (without those ``h`` leaves out) and the
    optimizer's figures, which describe the link and stay as they are (docs/embargo.md)."""
    names = core.rse_names(s)
    running = core.active_counts(s, _now()) if h is None else admin.active_counts(s, _now(), h)
    out = []
    for lk in core.links(s):
        key = (lk.source_rse_id, lk.dest_rse_id)
        out.append(
            {
                "source_rse": names.get(lk.source_rse_id, lk.source_rse_id),
                "dest_rse": names.get(lk.dest_rse_id, lk.dest_rse_id),
                "active": running.get(key, 0),
                "max_active": lk.max_active,
                "optimizer": lk.optimizer,
                "optimal_active": lk.optimal_active,
                "throughput": lk.throughput,
                "files_per_second": lk.files_per_second,
                "success_rate": lk.success_rate,
                "decision": lk.decision,
                "decided_at": lk.decided_at,
            }
        )
    for (src, dst), n in running.items():
        if not any(
            o["source_rse"] == names.get(src) and o["dest_rse"] == names.get(dst) for o in out
        ):
            out.append(
                {"source_rse": names.get(src, src), "dest_rse": names.get(dst, dst), "active": n}
            )
    return sorted(out, key=lambda o: (str(o["source_rse"]), str(o["dest_rse"])))


def _now() -> Any:
    from fedlake.domain.timefmt import utcnow

    return utcnow()


def list_links(lake: Lake, caller: Caller) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        return _links(s, embargo.hidden(s, caller))


def _two_rses(s: Session, source: str, dest: str) -> tuple[str, str]:
    a = rse_core.get_rse(s, validate_rse_name(source)).id
    b = rse_core.get_rse(s, validate_rse_name(dest)).id
    if a == b:
        raise InvalidInput("source and destination must be different RSEs")
    return a, b


def set_link(lake: Lake, caller: Caller, source: str, dest: str, body: Any) -> None:
    """Configure a link: ``max_active`` (limit, null for none) and ``optimizer`` (on/off)."""
    require_admin(caller, "configure transfer links")
    body = req_dict(body, "the link settings")
    unknown = sorted(set(body) - {"max_active", "optimizer", "initial"})
    if unknown:
        raise InvalidInput(f"unknown link setting(s) {', '.join(unknown)}")
    max_active = opt_int(body, "max_active", "the link")
    if max_active is not None and not 1 <= max_active <= 100_000:
        raise InvalidInput("max_active must be 1 to 100000 (or null for no limit)")
    initial = opt_int(body, "initial", "the link")
    if initial is not None and initial < 1:
        raise InvalidInput("initial must be at least 1")
    optimizer = body.get("optimizer", True)
    if not isinstance(optimizer, bool):
        raise InvalidInput("optimizer must be true or false")
    if not optimizer and max_active is None:
        raise InvalidInput("a link without the optimizer needs a fixed max_active")
    with lake.db.write() as s:
        a, b = _two_rses(s, source, dest)
        core.set_link(s, a, b, max_active=max_active, optimizer=optimizer, initial=initial)


def set_share(lake: Lake, caller: Caller, activity: str, weight: Any) -> None:
    require_admin(caller, "set activity shares")
    if weight is not None and (
        isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0
    ):
        raise InvalidInput("an activity share must be a positive number (or null to remove it)")
    if not activity or len(activity) > 50:
        raise InvalidInput("activity must be 1 to 50 characters")
    with lake.db.write() as s:
        core.set_share(s, activity, None if weight is None else float(weight))


def set_distance(lake: Lake, caller: Caller, source: str, dest: str, distance: Any) -> None:
    require_admin(caller, "set RSE distances")
    if distance is not None and (
        isinstance(distance, bool) or not isinstance(distance, int) or distance < 0
    ):
        raise InvalidInput("distance must be a non-negative integer (or null to remove it)")
    with lake.db.write() as s:
        a, b = _two_rses(s, source, dest)
        core.set_distance(s, a, b, distance)


def list_shares(lake: Lake) -> dict[str, float]:
    """Activity weights in force (activities without one weigh as ``default``, else 1)."""
    with lake.db.read() as s:
        return core.shares(s)


def _distance_body(body: Any) -> tuple[int, bool]:
    """``{"distance": n, "bidirectional": b}`` as the rucio client sends it (``ranking``,
    the old name, is accepted too)."""
    body = req_dict(body, "the distance")
    unknown = sorted(set(body) - {"distance", "ranking", "bidirectional"})
    if unknown:
        raise InvalidInput(f"unknown distance field(s) {', '.join(unknown)}; use distance")
    value = body.get("distance", body.get("ranking"))
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        raise InvalidInput(f"distance must be an integer from 0 to 1000000, got {value!r}")
    both = body.get("bidirectional", False)
    if not isinstance(both, bool):
        raise InvalidInput("bidirectional must be true or false")
    return value, both


def add_distance(lake: Lake, caller: Caller, source: str, dest: str, body: Any) -> None:
    """A new distance (Rucio's ``add_distance``); an existing one is a Duplicate."""
    require_admin(caller, "set RSE distances")
    value, both = _distance_body(body)
    with lake.db.write() as s:
        a, b = _two_rses(s, source, dest)
        known = core.distances(s)
        pairs = [(a, b), (b, a)] if both else [(a, b)]
        for x, y in pairs:
            if (x, y) in known:
                names = core.rse_names(s)
                raise Duplicate(
                    f"a distance from {names[x]} to {names[y]} exists already; "
                    "change it with PUT (update_distance)"
                )
        for x, y in pairs:
            core.set_distance(s, x, y, value)


def update_distance(lake: Lake, caller: Caller, source: str, dest: str, body: Any) -> None:
    """Change a distance (Rucio's ``update_distance``): as in Rucio, a pair without one
    stays without one."""
    require_admin(caller, "set RSE distances")
    value, both = _distance_body(body)
    with lake.db.write() as s:
        a, b = _two_rses(s, source, dest)
        known = core.distances(s)
        for x, y in [(a, b), (b, a)] if both else [(a, b)]:
            if (x, y) in known:
                core.set_distance(s, x, y, value)


def delete_distance(
    lake: Lake, caller: Caller, source: str, dest: str, bidirectional: bool = False
) -> None:
    require_admin(caller, "remove RSE distances")
    with lake.db.write() as s:
        a, b = _two_rses(s, source, dest)
        for x, y in [(a, b), (b, a)] if bidirectional else [(a, b)]:
            core.set_distance(s, x, y, None)


def get_distances(lake: Lake, source: str, dest: str) -> list[dict[str, Any]]:
    """Rucio's ``get_distance`` answer: a list of one entry, or empty."""
    with lake.db.read() as s:
        a, b = _two_rses(s, source, dest)
        d = core.distances(s).get((a, b))
        if d is None:
            return []
        names = core.rse_names(s)
        return [
            {
                "src_rse_id": a,
                "src_rse": names[a],
                "dest_rse_id": b,
                "dest_rse": names[b],
                "distance": d,
                "ranking": d,
            }
        ]
