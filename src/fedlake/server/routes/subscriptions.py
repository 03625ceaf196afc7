"""Subscriptions (Rucio paths; the rucio client's SubscriptionClient works against them).

    POST /subscriptions/{account}/{name}                 create: 201, the id as text
    PUT  /subscriptions/{account}/{name}                 change: 201
    GET  /subscriptions/                                 every subscription (NDJSON)
    GET  /subscriptions/{account}                        an account's (NDJSON)
    GET  /subscriptions/{account}/{name}                 one (NDJSON; 404 if unknown)
    GET  /subscriptions/name/{name}                      by name, any account (NDJSON)
    GET  /subscriptions/id/{id}                          one by id (JSON)
    GET  /subscriptions/{account}/{name}/rules           its rules (NDJSON; ?state=)
    GET  /subscriptions/{account}[/{name}]/rules/states  [account, name, state, count] rows

The legacy capitalised forms (``/Id/``, ``/Name/``, ``/Rules``, ``/Rules/States``) work
too. ``name`` and ``id`` are read as those operations, not as account names.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from fedlake.domain.errors import NotFound
from fedlake.server.http import (
    body_json,
    caller,
    json_response,
    lake,
    path_segments,
    stream_response,
    threaded,
)
from fedlake.services import subscriptions as svc

router = APIRouter(tags=["subscriptions"])
_PREFIX = "/subscriptions/"


def _segments(request: Request) -> list[str]:
    segs = path_segments(request, _PREFIX)
    while segs and segs[-1] == "":
        segs.pop()
    return segs


def _account_and_name(request: Request) -> tuple[str, str]:
    segs = _segments(request)
    if len(segs) != 2:
        raise NotFound(
            f"no subscription operation at {request.url.path}: use /subscriptions/ACCOUNT/NAME"
        )
    return segs[0], segs[1]


@router.post("/subscriptions/{rest:path}")
async def add_subscription(request: Request, rest: str) -> Response:
    c = await caller(request)
    account, name = _account_and_name(request)
    body = await body_json(request)
    sub_id = await threaded(svc.add_subscription, lake(request), c, account, name, body)
    return Response(sub_id, status_code=201, media_type="text/plain")


@router.put("/subscriptions/{rest:path}")
async def update_subscription(request: Request, rest: str) -> Response:
    c = await caller(request)
    account, name = _account_and_name(request)
    body = await body_json(request)
    await threaded(svc.update_subscription, lake(request), c, account, name, body)
    return Response("Created", status_code=201, media_type="text/plain")


@router.get("/subscriptions")
async def list_all(request: Request) -> Response:
    await caller(request)
    state = request.query_params.get("state")
    return stream_response(await threaded(svc.list_subscriptions, lake(request), state=state))


@router.get("/subscriptions/{rest:path}")
async def get_subscriptions(request: Request, rest: str) -> Response:
    c = await caller(request)
    lk = lake(request)
    segs = _segments(request)
    lowered = [s.lower() for s in segs]
    if not segs:
        state = request.query_params.get("state")
        return stream_response(await threaded(svc.list_subscriptions, lk, state=state))
    if len(segs) == 2 and lowered[0] == "id":
        return json_response(await threaded(svc.get_by_id, lk, segs[1]))
    if len(segs) == 2 and lowered[0] == "name":
        return stream_response(await threaded(svc.list_subscriptions, lk, name=segs[1]))
    if len(segs) == 1:
        return stream_response(await threaded(svc.list_subscriptions, lk, account=segs[0]))
    if len(segs) == 2:
        return stream_response([await threaded(svc.get_subscription, lk, segs[0], segs[1])])
    if len(segs) == 3 and lowered[1:] == ["rules", "states"]:
        return stream_response(await threaded(svc.rule_states, lk, c, segs[0]))
    if len(segs) == 3 and lowered[2] == "rules":
        state = request.query_params.get("state")
        return stream_response(await threaded(svc.list_rules, lk, c, segs[0], segs[1], state))
    if len(segs) == 4 and lowered[2:] == ["rules", "states"]:
        return stream_response(await threaded(svc.rule_states, lk, c, segs[0], segs[1]))
    raise NotFound(f"no subscription operation at {request.url.path}")
