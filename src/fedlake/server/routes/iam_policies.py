"""Namespace rules (policy v2, docs/policy.md) under ``/iam/policies``: admins only.

``POST /iam/policies`` with ``{"group", "action", "scope", "name_prefix"?}`` (201, the
rule); ``GET /iam/policies[?group=G]``; ``DELETE /iam/policies/{id}``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from fedlake.server.http import body_object, caller, json_response, lake, threaded
from fedlake.services import iam_policies as svc

router = APIRouter(tags=["iam"])


@router.post("/iam/policies")
async def add_policy(request: Request) -> Response:
    c = await caller(request)
    body = await body_object(request)
    return json_response(await threaded(svc.add_policy, lake(request), c, body), status=201)


@router.get("/iam/policies")
async def list_policies(request: Request) -> Response:
    c = await caller(request)
    out = await threaded(svc.list_policies, lake(request), c, request.query_params.get("group"))
    return json_response(out)


@router.delete("/iam/policies/{rule_id}")
async def remove_policy(request: Request, rule_id: str) -> Response:
    c = await caller(request)
    await threaded(svc.remove_policy, lake(request), c, rule_id)
    return Response(status_code=200)
