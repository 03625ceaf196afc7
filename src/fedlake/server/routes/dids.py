"""DIDs and metadata. Paths are parsed like Rucio's: scope / name / known suffix.

Names are taken from the raw path so an encoded '/' (%2F) stays inside the name and
is refused with a clear message instead of being routed elsewhere.
"""

from __future__ import annotations

from asyncio import wrap_future

from fastapi import APIRouter, Request
from starlette.responses import Response

from fedlake.auth.policy import Caller
from fedlake.domain.errors import InvalidInput, InvalidName, NotFound
from fedlake.domain.names import validate_did_name, validate_scope
from fedlake.expressions.did_filters import parse_query
from fedlake.server.http import (
    body_json,
    body_object,
    body_value,
    caller,
    json_response,
    lake,
    path_segments,
    stream_response,
    threaded,
)
from fedlake.services import dids as svc
from fedlake.services import rules as rule_svc

router = APIRouter(tags=["dids"])

_SUFFIXES = {
    "dids",
    "files",
    "parents",
    "meta",
    "rules",
    "associated_rules",
    "status",
    "dids/history",
}
_TRUE = ("true", "1", "yes")
_SEARCH_RESERVED = ("type", "limit", "long", "recursive", "filters")


def _flag(request: Request, key: str) -> bool:
    return request.query_params.get(key, "").lower() in _TRUE


def _split(request: Request) -> tuple[str, str, str]:
    """(scope, name, suffix) from /dids/<scope>/<name>[/<suffix>]."""
    segs = path_segments(request, "/dids/")
    if len(segs) < 2 or not segs[1]:
        raise NotFound("give a DID as /dids/<scope>/<name>")
    scope, name = segs[0], segs[1]
    suffix = "/".join(segs[2:]).rstrip("/")
    if suffix and suffix not in _SUFFIXES and not suffix.startswith("meta/"):
        raise InvalidName(
            f"DID name {'/'.join(segs[1:])!r} contains '/' or ends in an unknown operation "
            f"{suffix!r}; names may not contain '/'"
        )
    return validate_scope(scope), validate_did_name(name), suffix


@router.get("/dids/{rest:path}")
async def get_dids(request: Request, rest: str) -> Response:
    c = await caller(request)
    lk = lake(request)
    segs = path_segments(request, "/dids/")
    if len(segs) >= 3 and segs[1] == "dids" and segs[2] == "search":
        return await _search(request, c, segs[0])
    if len(segs) == 1 or (len(segs) == 2 and segs[1] == ""):
        q = request.query_params
        return stream_response(
            await threaded(
                svc.scope_tree, lk, c, segs[0], q.get("name"), _flag(request, "recursive")
            )
        )
    scope, name, suffix = _split(request)
    if suffix == "":
        return json_response(
            await threaded(
                svc.get_did, lk, c, scope, name, request.query_params.get("dynamic_depth")
            )
        )
    if suffix == "dids":
        return stream_response(await threaded(svc.list_content, lk, c, scope, name))
    if suffix == "dids/history":
        return stream_response(await threaded(svc.list_content_history, lk, c, scope, name))
    if suffix == "files":
        return stream_response(await threaded(svc.list_files, lk, c, scope, name))
    if suffix == "parents":
        return stream_response(await threaded(svc.list_parents, lk, c, scope, name))
    if suffix == "meta":
        return json_response(
            await threaded(svc.get_meta, lk, c, scope, name, request.query_params.get("plugin"))
        )
    if suffix == "rules":
        return stream_response(await threaded(rule_svc.rules_of_did, lk, c, scope, name))
    if suffix == "associated_rules":
        return stream_response(await threaded(rule_svc.associated_rules, lk, c, scope, name))
    raise NotFound(f"no GET operation {suffix!r} on DIDs")


async def _search(request: Request, c: Caller, scope: str) -> Response:
    q = request.query_params
    extra = {k: v for k, v in q.items() if k not in _SEARCH_RESERVED}
    flt = parse_query(q.get("filters"), extra)
    did_type = (q.get("type") or "collection").lower()
    limit_text = q.get("limit")
    limit = int(limit_text) if limit_text and limit_text.isdigit() else None
    return stream_response(
        await threaded(
            svc.search, lake(request), c, scope, flt, did_type, _flag(request, "long"), limit
        )
    )


@router.post("/dids")
@router.post("/dids/")
async def add_dids_bulk(request: Request) -> Response:
    c = await caller(request)
    body = await body_json(request)
    if not isinstance(body, list):
        raise InvalidInput("the body must be a JSON list of DIDs")
    await threaded(svc.add_dids, lake(request), c, body)
    return Response("Created", status_code=201)


@router.post("/dids/{rest:path}")
async def post_dids(request: Request, rest: str) -> Response:
    c = await caller(request)
    lk = lake(request)
    segs = path_segments(request, "/dids/")
    if segs == ["attachments"]:
        body = await body_object(request)
        await threaded(
            svc.attach_bulk,
            lk,
            c,
            body.get("attachments"),
            bool(body.get("ignore_duplicate", False)),
        )
        return Response("Created", status_code=201)
    if segs == ["bulkmeta"]:
        body = await body_object(request)
        return stream_response(
            await threaded(svc.bulk_meta, lk, c, body.get("dids"), body.get("plugin"))
        )
    if segs == ["bulkdidsmeta"]:
        body = await body_object(request)
        await threaded(svc.set_meta_bulk, lk, c, body.get("dids"))
        return Response("Created", status_code=201)
    scope, name, suffix = _split(request)
    if suffix == "":
        body = await body_object(request, required=False)
        item = dict(body, scope=scope, name=name)
        await threaded(svc.add_dids, lk, c, [item])
        return Response("Created", status_code=201)
    if suffix == "dids":
        body = await body_object(request)
        await threaded(
            svc.attach,
            lk,
            c,
            scope,
            name,
            body.get("dids"),
            bool(body.get("ignore_duplicate", False)),
        )
        return Response("Created", status_code=201)
    if suffix == "meta":
        body = await body_object(request)
        await wrap_future(svc.submit_set_meta(lk, c, scope, name, body.get("meta")))
        return Response("Created", status_code=201)
    if suffix.startswith("meta/"):
        key = suffix[len("meta/") :]
        value = await body_value(request)
        # group commit: concurrent calls (one per DID, as rucio's set_metadata) share commits
        await wrap_future(svc.submit_set_meta(lk, c, scope, name, {key: value}))
        return Response("Created", status_code=201)
    raise NotFound(f"no POST operation {suffix!r} on DIDs")


@router.put("/dids/{rest:path}")
async def put_dids(request: Request, rest: str) -> Response:
    c = await caller(request)
    scope, name, suffix = _split(request)
    if suffix != "status":
        raise NotFound(f"no PUT operation {suffix!r} on DIDs")
    await threaded(svc.set_status, lake(request), c, scope, name, await body_object(request))
    return Response(status_code=200)


@router.delete("/dids/{rest:path}")
async def delete_dids(request: Request, rest: str) -> Response:
    c = await caller(request)
    lk = lake(request)
    scope, name, suffix = _split(request)
    if suffix == "dids":
        body = await body_object(request)
        await threaded(svc.detach, lk, c, scope, name, body.get("dids"))
        return Response(status_code=200)
    if suffix == "meta":
        await threaded(svc.delete_meta, lk, c, scope, name, request.query_params.get("key"))
        return Response(status_code=200)
    raise NotFound(f"no DELETE operation {suffix!r} on DIDs")
