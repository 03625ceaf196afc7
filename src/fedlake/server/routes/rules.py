"""Replication rules and locks (Rucio paths)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from fedlake.domain.errors import NotFound
from fedlake.domain.names import validate_did_name, validate_scope
from fedlake.server.http import (
    body_json,
    caller,
    json_response,
    lake,
    path_segments,
    stream_response,
    threaded,
)
from fedlake.services import rules as svc

router = APIRouter(tags=["rules"])


@router.post("/rules/")
@router.post("/rules")
async def add_rule(request: Request) -> Response:
    c = await caller(request)
    ids = await threaded(svc.add_rules, lake(request), c, await body_json(request))
    return json_response(ids, status=201)


@router.get("/rules/")
@router.get("/rules")
async def list_rules(request: Request) -> Response:
    c = await caller(request)
    return stream_response(
        await threaded(svc.list_rules, lake(request), c, dict(request.query_params))
    )


@router.get("/rules/{rest:path}")
async def get_rules(request: Request, rest: str) -> Response:
    c = await caller(request)
    segs = [s for s in path_segments(request, "/rules/") if s != ""]
    lk = lake(request)
    if len(segs) == 1:
        return json_response(await threaded(svc.get_rule, lk, c, segs[0]))
    if len(segs) == 2 and segs[1] == "locks":
        return stream_response(await threaded(svc.rule_locks, lk, c, segs[0]))
    if len(segs) == 2 and segs[1] == "analysis":
        rule = await threaded(svc.get_rule, lk, c, segs[0])
        return json_response({"rule_error": rule["error"], "transfers": []})
    if len(segs) == 3 and segs[2] == "history":
        scope, name = validate_scope(segs[0]), validate_did_name(segs[1])
        return stream_response(await threaded(svc.history, lk, c, scope, name))
    raise NotFound(f"no rule operation at {request.url.path}")


@router.put("/rules/{rule_id}")
async def update_rule(request: Request, rule_id: str) -> Response:
    c = await caller(request)
    await threaded(svc.update_rule, lake(request), c, rule_id, await body_json(request))
    return Response(status_code=200)


@router.post("/rules/{rule_id}/reduce")
async def reduce_rule(request: Request, rule_id: str) -> Response:
    c = await caller(request)
    ids = await threaded(svc.reduce_rule, lake(request), c, rule_id, await body_json(request))
    return json_response(ids)


@router.post("/rules/{rule_id}/move")
async def move_rule(request: Request, rule_id: str) -> Response:
    c = await caller(request)
    child = await threaded(svc.move_rule, lake(request), c, rule_id, await body_json(request))
    return json_response(child, status=201)


@router.delete("/rules/{rule_id}")
async def delete_rule(request: Request, rule_id: str) -> Response:
    c = await caller(request)
    body = await body_json(request, required=False)
    await threaded(svc.delete_rule, lake(request), c, rule_id, body)
    return Response(status_code=200)


@router.get("/locks/{scope}/{name}")
async def dataset_locks(request: Request, scope: str, name: str) -> Response:
    c = await caller(request)
    return stream_response(await threaded(svc.dataset_locks, lake(request), c, scope, name))
