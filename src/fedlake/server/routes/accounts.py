"""Accounts, scopes, limits, usage (Rucio paths)."""

from __future__ import annotations

from urllib.parse import unquote_plus

from fastapi import APIRouter, Request
from starlette.responses import Response

from fedlake.domain.errors import InvalidInput, ScopeNotFound
from fedlake.server.http import (
    body_json,
    body_object,
    body_value,
    caller,
    json_response,
    lake,
    stream_response,
    threaded,
)
from fedlake.services import accounts as svc
from fedlake.services import rules as rule_svc

router = APIRouter(tags=["accounts"])


@router.get("/accounts/whoami")
async def whoami(request: Request) -> Response:
    c = await caller(request)
    return json_response(await threaded(svc.get_account, lake(request), c.account))


@router.get("/accounts/")
@router.get("/accounts")
async def list_accounts(request: Request) -> Response:
    await caller(request)
    filters = dict(request.query_params)
    return stream_response(await threaded(svc.list_accounts, lake(request), filters))


@router.get("/accounts/{account}")
async def get_account(request: Request, account: str) -> Response:
    await caller(request)
    return json_response(await threaded(svc.get_account, lake(request), account))


@router.post("/accounts/{account}")
async def add_account(request: Request, account: str) -> Response:
    c = await caller(request)
    body = await body_json(request, required=False) or {}
    if not isinstance(body, dict):
        raise InvalidInput('the body must be a JSON object like {"type": "USER"}')
    await threaded(
        svc.add_account, lake(request), c, account, body.get("type") or "USER", body.get("email")
    )
    return Response("Created", status_code=201)


@router.get("/accounts/{account}/scopes/")
@router.get("/accounts/{account}/scopes")
async def account_scopes(request: Request, account: str) -> Response:
    c = await caller(request)
    scopes = await threaded(svc.list_scopes, lake(request), c, account)
    if not scopes:
        raise ScopeNotFound(f"account {account} has no scopes")
    return json_response([s["scope"] for s in scopes])


@router.post("/accounts/{account}/scopes/{scope}")
async def add_scope(request: Request, account: str, scope: str) -> Response:
    c = await caller(request)
    await threaded(svc.add_scope, lake(request), c, scope, account)
    return Response("Created", status_code=201)


@router.get("/accounts/{account}/rules")
@router.get("/accounts/{account}/rules/")
async def account_rules(request: Request, account: str) -> Response:
    c = await caller(request)
    filters = dict(request.query_params) | {"account": account}
    return stream_response(await threaded(rule_svc.list_rules, lake(request), c, filters))


@router.get("/accounts/{account}/attr/")
@router.get("/accounts/{account}/attr")
async def account_attributes(request: Request, account: str) -> Response:
    await caller(request)
    return json_response(await threaded(svc.attributes, lake(request), account))


@router.post("/accounts/{account}/attr/{key}")
async def set_account_attribute(request: Request, account: str, key: str) -> Response:
    c = await caller(request)
    value = await body_value(request)
    await threaded(svc.set_attribute, lake(request), c, account, key, value)
    return Response("Created", status_code=201)


@router.delete("/accounts/{account}/attr/{key}")
async def delete_account_attribute(request: Request, account: str, key: str) -> Response:
    c = await caller(request)
    await threaded(svc.delete_attribute, lake(request), c, account, key)
    return Response(status_code=200)


@router.get("/accounts/{account}/identities")
async def identities(request: Request, account: str) -> Response:
    await caller(request)
    return stream_response(await threaded(svc.list_identities, lake(request), account))


@router.post("/accounts/{account}/identities")
async def add_identity(request: Request, account: str) -> Response:
    c = await caller(request)
    body = await body_object(request)
    await threaded(
        svc.add_identity,
        lake(request),
        c,
        account,
        str(body.get("identity") or ""),
        str(body.get("authtype") or "USERPASS"),
        body.get("password"),
        body.get("email"),
        bool(body.get("default", False)),
    )
    return Response("Created", status_code=201)


def _target(raw: str | None) -> str | None:
    return unquote_plus(raw) if raw else None


@router.get("/accounts/{account}/usage/local")
@router.get("/accounts/{account}/usage/local/{rse}")
async def usage_local(request: Request, account: str, rse: str | None = None) -> Response:
    c = await caller(request)
    return stream_response(await threaded(svc.local_usage, lake(request), c, account, rse))


@router.get("/accounts/{account}/usage/global")
@router.get("/accounts/{account}/usage/global/{expression}")
async def usage_global(request: Request, account: str, expression: str | None = None) -> Response:
    c = await caller(request)
    return stream_response(
        await threaded(svc.global_usage, lake(request), c, account, _target(expression))
    )


@router.get("/accounts/{account}/limits/local")
@router.get("/accounts/{account}/limits/local/{rse}")
async def limits_local(request: Request, account: str, rse: str | None = None) -> Response:
    await caller(request)
    return json_response(await threaded(svc.limits, lake(request), account, "local", rse))


@router.get("/accounts/{account}/limits/global")
@router.get("/accounts/{account}/limits/global/{expression}")
async def limits_global(request: Request, account: str, expression: str | None = None) -> Response:
    await caller(request)
    return json_response(
        await threaded(svc.limits, lake(request), account, "global", _target(expression))
    )


@router.post("/accounts/{account}/limits/{locality}/{target}")
async def set_limit(request: Request, account: str, locality: str, target: str) -> Response:
    c = await caller(request)
    body = await body_json(request)
    if not isinstance(body, dict) or "bytes" not in body:
        raise InvalidInput('the body must be {"bytes": N} (-1 for unlimited)')
    await threaded(
        svc.set_limit, lake(request), c, account, locality, unquote_plus(target), body["bytes"]
    )
    return Response("Created", status_code=201)


@router.delete("/accounts/{account}/limits/{locality}/{target}")
async def delete_limit(request: Request, account: str, locality: str, target: str) -> Response:
    c = await caller(request)
    await threaded(svc.delete_limit, lake(request), c, account, locality, unquote_plus(target))
    return Response(status_code=200)


@router.get("/scopes/")
@router.get("/scopes")
async def list_scopes(request: Request) -> Response:
    c = await caller(request)
    return json_response([s["scope"] for s in await threaded(svc.list_scopes, lake(request), c)])


@router.get("/scopes/owner")
@router.get("/scopes/owner/")
async def scope_owners(request: Request) -> Response:
    c = await caller(request)
    scopes = await threaded(svc.list_scopes, lake(request), c)
    return json_response([{"scope": s["scope"], "account": s["account"]} for s in scopes])


@router.put("/scopes/{account}/{scope}")
async def update_scope(request: Request, account: str, scope: str) -> Response:
    """Open or close a scope: body {"status": "OPEN"|"CLOSED"} (closed scopes take no new DIDs)."""
    c = await caller(request)
    body = await body_json(request)
    if not isinstance(body, dict) or "status" not in body:
        raise InvalidInput('the body must be {"status": "OPEN"} or {"status": "CLOSED"}')
    await threaded(svc.set_scope_status, lake(request), c, scope, body["status"])
    return Response("Created", status_code=201)


@router.post("/scopes/{account}/{scope}")
async def add_scope_admin(request: Request, account: str, scope: str) -> Response:
    c = await caller(request)
    await threaded(svc.add_scope, lake(request), c, scope, account)
    return Response("Created", status_code=201)
