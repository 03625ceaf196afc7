"""Replicas: registration, state changes, listing (NDJSON and metalink), redirects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from fedlake.auth import policy
from fedlake.auth.policy import (
    DELETE,
    Caller,
    require_admin,
    require_capability,
    require_scope_write,
)
from fedlake.bootstrap import Lake
from fedlake.catalog import dids as did_core
from fedlake.catalog import replicas as core
from fedlake.catalog import rses as rse_core
from fedlake.catalog import rules as rule_core
from fedlake.catalog.rses import RSEInfo
from fedlake.domain import site_caches
from fedlake.domain.checksums import normalize_adler32, normalize_md5
from fedlake.domain.errors import (
    AccessDenied,
    DIDNotFound,
    InvalidInput,
    ReplicaNotFound,
    UnsupportedOperation,
)
from fedlake.domain.names import validate_did_name, validate_rse_name, validate_scope
from fedlake.domain.paths import build_pfn
from fedlake.domain.types import ReplicaState
from fedlake.services import embargo
from fedlake.services._validate import opt_bool, req_dict, req_int, req_list
from fedlake.services.dids import did_key
from fedlake.services.rses import resolve

__all__ = ["add_replicas", "best_pfn", "list_replicas", "update_replicas"]


def _rse(s: Session, name: Any) -> RSEInfo:
    if not isinstance(name, str):
        raise InvalidInput("'rse' is required and must be an RSE name")
    return rse_core.rse_info(s, rse_core.get_rse(s, validate_rse_name(name)))


def parse_file(f: Any, *, default_state: ReplicaState = ReplicaState.AVAILABLE) -> core.FileReplica:
    f = req_dict(f, "each file")
    scope, name = did_key(f, "file")
    what = f"file {scope}:{name}"
    nbytes = req_int(f, "bytes", what)
    adler32 = normalize_adler32(f.get("adler32"))
    md5 = normalize_md5(f.get("md5"))
    if adler32 is None and md5 is None:
        raise InvalidInput(f"{what}: give adler32 or md5 so the lake can verify the bytes")
    meta = f.get("meta") or {}
    if not isinstance(meta, dict):
        raise InvalidInput(f"{what}: meta must be a JSON object")
    guid = f.get("guid") or meta.get("guid")
    if guid is not None and (not isinstance(guid, str) or len(guid) > 36):
        raise InvalidInput(f"{what}: guid must be a string of at most 36 characters")
    state = ReplicaState.parse(f["state"]) if f.get("state") else default_state
    pfn = f.get("pfn")
    if pfn is not None and not isinstance(pfn, str):
        raise InvalidInput(f"{what}: pfn must be a string")
    return core.FileReplica(scope, name, nbytes, adler32, md5, state, pfn, guid, dict(meta))


def add_replicas(lake: Lake, caller: Caller, body: Any) -> int:
    body = req_dict(body, "the request")
    files = [parse_file(f) for f in req_list(body.get("files"), "files")]
    if not files:
        raise InvalidInput("'files' is empty: nothing to register")
    ignore_availability = opt_bool(body, "ignore_availability", "request", default=True)
    with lake.db.write() as s:
        rse = _rse(s, body.get("rse"))
        if not rse.availability_write and not ignore_availability:
            raise UnsupportedOperation(f"RSE {rse.rse} is not available for writing")
        h = embargo.hidden(s, caller)
        for scope in sorted({f.scope for f in files}):
            embargo.require_visible_scope(h, scope)
        for f in files:
            require_scope_write(s, caller, f.scope, "register replicas", name=f.name)
            require_capability(caller, "create", f.scope, f.name, "register replicas of")
            embargo.require_not_hidden_name(h, f.scope, f.name)
        n = core.add_replicas(s, rse, files, caller.account)
        available = [(f.scope, f.name) for f in files if f.state == ReplicaState.AVAILABLE]
        if available:
            rule_core.locks_available(s, rse.id, available)
        return n


def update_replicas(lake: Lake, caller: Caller, body: Any) -> None:
    body = req_dict(body, "the request")
    changes = []
    for f in req_list(body.get("files"), "files"):
        f = req_dict(f, "each file")
        scope, name = did_key(f, "file")
        if "state" not in f:
            raise InvalidInput(f"file {scope}:{name}: 'state' is required")
        changes.append((scope, name, ReplicaState.parse(f["state"])))
    with lake.db.write() as s:
        rse = _rse(s, body.get("rse"))
        for scope, name, _ in changes:
            embargo.require_owner_and_visible(
                s, caller, scope, [], "change replica states", name=name
            )
            require_capability(caller, "modify", scope, name, "change replica states of")
        h = embargo.hidden(s, caller)
        for scope, name, _ in changes:  # a hidden file has no replica, as a missing one
            if h is not None and h.hides(scope, name):
                raise ReplicaNotFound(f"{scope}:{name} has no replica on {rse.rse}")
        became = core.update_states(s, rse, changes)
        if became:
            rule_core.locks_available(s, rse.id, became)


def delete_replicas(lake: Lake, caller: Caller, body: Any) -> None:
    require_admin(caller, "delete replicas")
    body = req_dict(body, "the request")
    keys = [did_key(f, "file") for f in req_list(body.get("files"), "files")]
    for scope, name in keys:
        require_capability(caller, "modify", scope, name, "delete replicas of")
    with lake.db.write() as s:
        core.delete_replicas(s, _rse(s, body.get("rse")), keys)


def tombstone(lake: Lake, caller: Caller, body: Any) -> None:
    body = req_dict(body, "the request")
    items = []
    with lake.db.write() as s:
        h = embargo.hidden(s, caller)
        for r in req_list(body.get("replicas"), "replicas"):
            r = req_dict(r, "replica")
            scope, name = did_key(r, "replica")
            embargo.require_owner_and_visible(
                s, caller, scope, [], "remove replicas", name=name, action=DELETE
            )
            require_capability(caller, "modify", scope, name, "remove replicas of")
            items.append((_rse(s, r.get("rse")).id, (scope, name)))
        for _, (scope, name) in items:  # as core.set_tombstones says of a missing replica
            if h is not None and h.hides(scope, name):
                raise ReplicaNotFound(f"{scope}:{name} has no unlocked replica on that RSE")
        core.set_tombstones(s, items)


class ListQuery:
    """Parsed body of ``POST /replicas/list``."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.dids = [did_key(d, "DID") for d in req_list(body.get("dids"), "dids")]
        schemes = body.get("schemes")
        if schemes is not None and (
            not isinstance(schemes, list) or not all(isinstance(x, str) for x in schemes)
        ):
            raise InvalidInput("schemes must be a list of strings")
        self.schemes: list[str] | None = schemes or None
        domain = body.get("domain") or "wan"
        if domain not in ("wan", "lan", "all"):
            raise InvalidInput("domain must be wan, lan or all")
        self.domain: str = domain
        self.all_states = opt_bool(body, "all_states", "request")
        self.rse_expression: str | None = body.get("rse_expression") or None
        self.resolve_parents = opt_bool(body, "resolve_parents", "request")
        self.ignore_availability = opt_bool(body, "ignore_availability", "request", default=True)
        self.client_ip, self.client_site = _client_location(body.get("client_location"))


def _client_location(value: Any) -> tuple[str | None, str | None]:
    """(ip, site) of Rucio's ``client_location`` (``{"ip", "fqdn", "site"}``; all optional)."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise InvalidInput('client_location must be an object like {"ip": ..., "site": ...}')
    found: list[str | None] = []
    for key in ("ip", "site"):
        item = value.get(key)
        if item is not None and not isinstance(item, str):
            raise InvalidInput(f"client_location.{key} must be a string")
        found.append(item or None)
    return found[0], found[1]


def list_replicas(lake: Lake, caller: Caller, body: Any) -> Iterator[dict[str, Any]]:
    q = ListQuery(req_dict(body, "the request"))
    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        found = did_core.existing_dids(s, q.dids)
        missing = [k for k in q.dids if k not in found or (h is not None and h.hides(*k))]
        if missing:
            raise DIDNotFound(f"data identifier {missing[0][0]}:{missing[0][1]} does not exist")
        r = policy.reader(s, caller, lake.settings.policy_read)
        for key in q.dids:
            policy.require_read(r, *key)
        infos = {r.id: rse_core.rse_info(s, r) for r in rse_core.all_rses(s)}
        rse_ids = None
        if q.rse_expression:
            names = set(resolve(s, q.rse_expression))
            rse_ids = {i for i, info in infos.items() if info.rse in names}
    return _records(lake, q, infos, rse_ids, h, r)


def _records(
    lake: Lake,
    q: ListQuery,
    infos: dict[str, RSEInfo],
    rse_ids: set[str] | None,
    h: embargo.Hidden | None,
    r: policy.Reader | None = None,
) -> Iterator[dict[str, Any]]:
    plan = _PfnPlan(infos, q)
    with lake.db.read() as s:
        records = core.iter_file_replicas(s, q.dids, all_states=q.all_states, rse_ids=rse_ids)
        records = embargo.keep_visible(h, r, records, lambda f: (f.scope, f.name))
        for rec in records:
            if h is not None and rec.parents:
                rec.parents = list(h.keep(rec.parents, lambda k: k))
            if r is not None and rec.parents:
                rec.parents = list(r.keep(rec.parents, lambda k: k))
            yield plan.record(rec)


class _PfnPlan:
    """Per listing, each RSE's matching read protocols as (PFN head, domain, priority).

    Worked out once, so each file costs its path and a string concatenation per PFN
    (``build_pfn(..., "") + path`` is exactly ``build_pfn(..., path)``).
    """

    def __init__(self, infos: dict[str, RSEInfo], q: ListQuery) -> None:
        self.infos = infos
        self.q = q
        domains = ("lan", "wan") if q.domain == "all" else (q.domain,)
        self.heads: dict[str, list[tuple[str, str, int]]] = {}
        for rid, info in infos.items():
            heads = []
            for dom in domains:
                for p in info.protocols:
                    prio = getattr(p, f"read_{dom}")
                    if prio is None or (q.schemes and p.scheme not in q.schemes):
                        continue
                    heads.append((build_pfn(p.scheme, p.hostname, p.port, p.prefix, ""), dom, prio))
            heads.sort(key=lambda h: h[2])
            self.heads[rid] = heads
        self.rank = {rid: (i.rse_type == "TAPE", i.rse) for rid, i in infos.items()}
        self.caches = {rid: url for rid, i in infos.items() if (url := self._cache(i)) is not None}

    def _cache(self, info: RSEInfo) -> str | None:
        """The base URL of the cache this client reads ``info``'s files through, if any."""
        value = info.attributes.get(site_caches.ATTRIBUTE)
        if value is None:
            return None
        try:
            url = site_caches.cache_for(
                site_caches.parse_caches(value), self.q.client_ip, self.q.client_site
            )
        except InvalidInput:  # set before values were checked: no cache, rather than no list
            return None
        if url is None or (self.q.schemes and url.split(":", 1)[0] not in self.q.schemes):
            return None
        return url

    @staticmethod
    def _meta(info: RSEInfo, rse_id: str, domain: str) -> dict[str, Any]:
        return {
            "rse": info.rse,
            "rse_id": rse_id,
            "type": info.rse_type,
            "volatile": info.volatile,
            "domain": domain,
            "priority": 0,
            "client_extract": False,
        }

    def record(self, rec: core.ReplicaRecord) -> dict[str, Any]:
        infos, q = self.infos, self.q
        pfns: dict[str, dict[str, Any]] = {}
        cached: dict[str, dict[str, Any]] = {}  # a site's cache comes before everything else
        rses: dict[str, list[str]] = {}
        states: dict[str, str] = {}
        replicas = rec.replicas
        if len(replicas) > 1:
            replicas = sorted(replicas, key=lambda r: self.rank[r[0]])
        for rse_id, state, path in replicas:
            info = infos[rse_id]
            if not q.ignore_availability and not info.availability_read:
                continue
            states[info.rse] = state
            listed = rses.setdefault(info.rse, [])
            heads = self.heads[rse_id]
            if not heads:
                continue
            try:
                rel = core.replica_path(info, rec.scope, rec.name, path)
            except InvalidInput:
                continue
            rel = rel[1:] if rel.startswith("/") else rel
            cache = self.caches.get(rse_id)
            if cache is not None:
                cached[cache + rel] = self._meta(info, rse_id, "wan")
                listed.append(cache + rel)
            for head, dom, _prio in heads:
                pfn = head + rel
                pfns[pfn] = self._meta(info, rse_id, dom)
                listed.append(pfn)
        if cached:
            pfns = cached | {k: v for k, v in pfns.items() if k not in cached}
        for i, meta in enumerate(pfns.values(), start=1):
            meta["priority"] = i
        out: dict[str, Any] = {
            "scope": rec.scope,
            "name": rec.name,
            "bytes": rec.bytes,
            "md5": rec.md5,
            "adler32": rec.adler32,
            "pfns": pfns,
            "rses": rses,
            "states": states,
        }
        if q.resolve_parents:
            out["parents"] = [f"{s}:{n}" for s, n in rec.parents]
        return out


def replicas_of_did(lake: Lake, caller: Caller, scope: str, name: str) -> Iterator[dict[str, Any]]:
    body = {"dids": [{"scope": scope, "name": name}], "all_states": True}
    return list_replicas(lake, caller, body)


def dataset_replicas(
    lake: Lake, caller: Caller, dids: list[tuple[str, str]], deep: bool = False
) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        r = policy.reader(s, caller, lake.settings.policy_read)
        datasets: list[tuple[str, str]] = []
        for scope, name in dids:
            embargo.require_visible(h, validate_scope(scope), validate_did_name(name))
            policy.require_read(r, scope, name)
            row = did_core.get_did(s, scope, name)
            if row.did_type == "CONTAINER":
                datasets.extend(did_core._collections_below(s, [(scope, name)])[0])
            elif row.did_type == "DATASET":
                datasets.append((scope, name))
            else:
                raise InvalidInput(f"{scope}:{name} is a file; dataset replicas need a dataset")
        if h is not None:
            datasets = list(h.keep(datasets, lambda k: k))
        datasets = list(policy.keep_readable(r, datasets, lambda k: k))
        return list(core.dataset_replicas(s, datasets))


def datasets_at_rse(lake: Lake, caller: Caller, rse: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        row = rse_core.get_rse(s, validate_rse_name(rse))
        rows = core.datasets_at_rse(s, row.id)
        if h is not None:
            rows = h.keep(rows, lambda d: (d["scope"], d["name"]))
        r = policy.reader(s, caller, lake.settings.policy_read)
        rows = policy.keep_readable(r, rows, lambda d: (d["scope"], d["name"]))
        return [d | {"rse": rse} for d in rows]


def best_pfn(
    lake: Lake,
    caller: Caller,
    scope: str,
    name: str,
    schemes: list[str] | None = None,
    client_location: dict[str, str] | None = None,
) -> str:
    """The PFN a client should read first (``/redirect``): its site's cache (the RSE
    attribute ``caches``, ``fedlake.domain.site_caches``), then available, disk before
    tape."""
    with lake.db.read() as s:
        embargo.require_visible(
            embargo.hidden(s, caller), validate_scope(scope), validate_did_name(name)
        )
        policy.require_read(policy.reader(s, caller, lake.settings.policy_read), scope, name)
        row = did_core.get_did(s, scope, name)
        if row.did_type != "FILE":
            raise InvalidInput(f"{scope}:{name} is a {row.did_type.lower()}; redirect needs a file")
    body = {
        "dids": [{"scope": scope, "name": name}],
        "schemes": schemes,
        "client_location": client_location,
    }
    for rec in list_replicas(lake, caller, body):
        for pfn in rec["pfns"]:
            return str(pfn)
    raise ReplicaNotFound(f"{scope}:{name} has no available replica")


def check_caller(caller: Caller) -> None:
    if not caller.account:
        raise AccessDenied("no account")
