"""Embargoes under ``/iam/embargoes`` (docs/embargo.md): add, list, lift.

``POST /iam/embargoes`` with ``{"scope", "name"?, "group", "until", "reason"?}``;
``GET /iam/embargoes[?scope=S&active=true]``; ``DELETE /iam/embargoes/{id}``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from fedlake.domain.errors import InvalidInput
from fedlake.server.http import body_object, caller, json_response, lake, threaded
from fedlake.services import embargo as svc

router = APIRouter(tags=["iam"])


@router.post("/iam/embargoes")
async def add_embargo(request: Request) -> Response:
    c = await caller(request)
    body = await body_object(request)
    return json_response(await threaded(svc.add_embargo, lake(request), c, body), status=201)


@router.get("/iam/embargoes")
async def list_embargoes(request: Request) -> Response:
    c = await caller(request)
    q = request.query_params
    active = q.get("active", "").lower()
    if active not in ("", "true", "false", "1", "0"):
        raise InvalidInput("active must be true or false")
    out = await threaded(
        svc.list_embargoes, lake(request), c, q.get("scope"), active in ("true", "1")
    )
    return json_response(out)


@router.delete("/iam/embargoes/{embargo_id}")
async def remove_embargo(request: Request, embargo_id: str) -> Response:
    c = await caller(request)
    await threaded(svc.remove_embargo, lake(request), c, embargo_id)
    return Response(status_code=200)
