"""Identity administration under ``/iam``: groups, members, users, registration requests,
token revocation and the audit log.

A group path travels as ONE percent-encoded path segment: ``/escape/cms`` is
``/iam/groups/%2Fescape%2Fcms`` (its members: ``/iam/groups/%2Fescape%2Fcms/members``).
Starlette decodes ``%2F`` before routing, so these routes read the raw path instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from fedlake.domain.errors import InvalidInput, NotFound
from fedlake.server.http import (
    body_object,
    caller,
    json_response,
    lake,
    path_segments,
    threaded,
)
from fedlake.services import iam as svc

router = APIRouter(tags=["iam"])

_GROUPS = "/iam/groups/"


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("", "0", "false", "no"):
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    raise InvalidInput(f"{name} must be true or false")


def _int(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit():
        raise InvalidInput(f"{name} must be a positive integer")
    return int(value)


# --- groups ------------------------------------------------------------------------------


@router.get("/iam/groups")
async def list_groups(request: Request) -> Response:
    c = await caller(request)
    under = request.query_params.get("under")
    return json_response(await threaded(svc.list_groups, lake(request), c, under))


@router.post("/iam/groups")
async def add_group(request: Request) -> Response:
    c = await caller(request)
    body = await body_object(request)
    name = body.get("name")
    if not isinstance(name, str):
        raise InvalidInput('the body must be {"name": "/escape/cms", ...}')
    out = await threaded(
        svc.add_group,
        lake(request),
        c,
        name,
        optional=body.get("optional", False),
        description=body.get("description"),
    )
    return json_response(out, 201)


# one route per method: a route with several methods gives them one OpenAPI operation id
@router.get("/iam/groups/{rest:path}")
@router.post("/iam/groups/{rest:path}")
@router.delete("/iam/groups/{rest:path}")
@router.patch("/iam/groups/{rest:path}")
async def group_resource(request: Request, rest: str) -> Response:
    """``{group}``, ``{group}/members`` and ``{group}/members/{account}``."""
    c = await caller(request)
    lk, method = lake(request), request.method
    parts = path_segments(request, _GROUPS)
    if len(parts) == 1 and method == "GET":
        return json_response(await threaded(svc.get_group, lk, c, parts[0]))
    if len(parts) == 1 and method == "DELETE":
        recursive = _flag(request.query_params.get("recursive"), "recursive")
        removed = await threaded(svc.remove_group, lk, c, parts[0], recursive=recursive)
        return json_response({"removed": removed})
    if len(parts) == 2 and parts[1] == "members":
        if method == "GET":
            return json_response(await threaded(svc.list_members, lk, c, parts[0]))
        if method == "POST":
            return await _add_member(request, parts[0])
    if len(parts) == 3 and parts[1] == "members":
        if method == "DELETE":
            await threaded(svc.remove_member, lk, c, parts[0], parts[2])
            return Response(status_code=204)
        if method == "PATCH":
            body = await body_object(request)
            await threaded(svc.set_manager, lk, c, parts[0], parts[2], body.get("manager"))
            return Response(status_code=204)
    if len(parts) in (1, 2, 3) and (len(parts) == 1 or parts[1] == "members"):
        raise HTTPException(405)
    raise NotFound(
        f"no such resource: {request.url.path}; a group path is one percent-encoded "
        "segment: /iam/groups/%2Fescape%2Fcms, /iam/groups/%2Fescape%2Fcms/members"
    )


async def _add_member(request: Request, group: str) -> Response:
    c = await caller(request)
    body = await body_object(request)
    account = body.get("account")
    if not isinstance(account, str):
        raise InvalidInput('the body must be {"account": "alice", "manager": false}')
    manager = body.get("manager", False)
    if not isinstance(manager, bool):
        raise InvalidInput("manager must be true or false")
    await threaded(svc.add_member, lake(request), c, group, account, manager=manager)
    return Response("Created", status_code=201)


# --- users and tokens --------------------------------------------------------------------


@router.get("/iam/me")
async def me(request: Request) -> Response:
    c = await caller(request)
    return json_response(await threaded(svc.show_user, lake(request), c, c.account))


@router.get("/iam/users")
async def list_users(request: Request) -> Response:
    c = await caller(request)
    status = request.query_params.get("status")
    return json_response(await threaded(svc.list_users, lake(request), c, status))


@router.get("/iam/users/{account}")
async def show_user(request: Request, account: str) -> Response:
    c = await caller(request)
    return json_response(await threaded(svc.show_user, lake(request), c, account))


@router.post("/iam/users/{account}/suspend")
async def suspend(request: Request, account: str) -> Response:
    c = await caller(request)
    body = await body_object(request, required=False)
    await threaded(svc.suspend, lake(request), c, account, body.get("reason"))
    return Response(status_code=204)


@router.post("/iam/users/{account}/reinstate")
async def reinstate(request: Request, account: str) -> Response:
    c = await caller(request)
    await threaded(svc.reinstate, lake(request), c, account)
    return Response(status_code=204)


@router.post("/iam/users/{account}/revoke-tokens")
async def revoke_tokens(request: Request, account: str) -> Response:
    c = await caller(request)
    await threaded(svc.revoke_tokens, lake(request), c, account)
    return Response(status_code=204)


@router.post("/iam/revoked-tokens")
async def revoke_token(request: Request) -> Response:
    c = await caller(request)
    body = await body_object(request)
    await threaded(svc.revoke_token, lake(request), c, body.get("jti"), body.get("expires_at"))
    return Response(status_code=204)


# --- registration requests ---------------------------------------------------------------


@router.post("/iam/requests")
async def submit_request(request: Request) -> Response:
    c = await caller(request)
    body = await body_object(request)
    group = body.get("group")
    if not isinstance(group, str):
        raise InvalidInput('the body must be {"group": "/escape/cms", "notes": "why"}')
    out = await threaded(svc.submit_request, lake(request), c, group, body.get("notes"))
    return json_response(out, 201)


@router.get("/iam/requests")
async def list_requests(request: Request) -> Response:
    c = await caller(request)
    q = request.query_params
    state: str | None = q.get("state", "PENDING").upper()
    if state == "ALL":
        state = None
    out = await threaded(
        svc.list_requests,
        lake(request),
        c,
        state=state,
        group=q.get("group"),
        mine=_flag(q.get("mine"), "mine"),
    )
    return json_response(out)


@router.get("/iam/requests/{request_id}")
async def get_request(request: Request, request_id: str) -> Response:
    c = await caller(request)
    return json_response(await threaded(svc.get_request, lake(request), c, request_id))


@router.post("/iam/requests/{request_id}/approve")
async def approve(request: Request, request_id: str) -> Response:
    return await _decide(request, request_id, approve=True)


@router.post("/iam/requests/{request_id}/reject")
async def reject(request: Request, request_id: str) -> Response:
    return await _decide(request, request_id, approve=False)


async def _decide(request: Request, request_id: str, *, approve: bool) -> Response:
    c = await caller(request)
    body: dict[str, Any] = await body_object(request, required=False)
    out = await threaded(
        svc.decide_request, lake(request), c, request_id, approve=approve, reason=body.get("reason")
    )
    return json_response(out)


# --- audit -------------------------------------------------------------------------------


@router.get("/iam/audit")
async def audit_log(request: Request) -> Response:
    c = await caller(request)
    q = request.query_params
    out = await threaded(
        svc.audit_entries,
        lake(request),
        c,
        target=q.get("target"),
        actor=q.get("actor"),
        action=q.get("action"),
        since=q.get("since"),
        limit=_int(q.get("limit"), "limit", 1000),
    )
    return json_response(out)
