"""ping, authentication, traces."""

from __future__ import annotations

import email.utils

from fastapi import APIRouter, Request
from starlette.responses import Response

from fedlake import __version__
from fedlake.server.http import body_json, caller, json_response, lake, threaded, token_of
from fedlake.services import accounts as svc

router = APIRouter(tags=["core"])


@router.get("/ping")
async def ping() -> Response:
    return json_response({"version": __version__})


@router.get("/auth/userpass")
async def auth_userpass(request: Request) -> Response:
    """Exchange X-Rucio-Username/-Password for a token (X-Rucio-Auth-Token header)."""
    h = request.headers
    token, exp, account = await threaded(
        svc.login_userpass,
        lake(request),
        h.get("x-rucio-username", ""),
        h.get("x-rucio-password", ""),
        h.get("x-rucio-account"),
    )
    expires = email.utils.formatdate(exp, usegmt=True).replace("GMT", "UTC")
    return Response(
        status_code=200,
        headers={
            "X-Rucio-Auth-Token": token,
            "X-Rucio-Auth-Token-Expires": expires,
            "X-Rucio-Auth-Account": account,
        },
    )


@router.get("/auth/validate")
async def auth_validate(request: Request) -> Response:
    c = await caller(request)
    claims = lake(request).tokens.validate(token_of(request) or "")
    info = {
        "account": c.account,
        "identity": claims.subject,
        "lifetime": claims.expires_at,
        "audience": "https://wlcg.cern.ch/jwt/v1/any",
        "authz_scope": claims.scope,
    }
    return Response(repr(info), media_type="application/octet-stream")


@router.get("/auth/jwks")
async def jwks(request: Request) -> Response:
    return json_response(await threaded(lake(request).tokens.jwks))


@router.post("/traces/")
@router.post("/traces")
async def traces(request: Request) -> Response:
    """Usage traces from the rucio clients: accepted and dropped (no auth needed)."""
    await body_json(request, required=False)
    return Response(status_code=201)
