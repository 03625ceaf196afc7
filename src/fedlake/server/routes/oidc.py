"""The embedded OAuth 2.0 / OIDC issuer over HTTP: discovery, token, revocation,
introspection, userinfo, the device-code verification page, the authorization page,
and the admin endpoints for clients, signing keys and minted tokens.

OAuth endpoints take ``application/x-www-form-urlencoded`` bodies and answer errors as
RFC 6749 JSON (``{"error", "error_description"}``, 400, or 401 for client
authentication). Tokens and secrets travel only in bodies and headers, never in URLs.
"""

from __future__ import annotations

import base64
import binascii
import html
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from fedlake.domain.errors import AuthenticationFailed, InvalidInput, OAuthError
from fedlake.server.http import body_object, caller, json_response, lake, threaded, token_of
from fedlake.services import oidc as svc
from fedlake.services import oidc_clients as clients
from fedlake.services import oidc_flows as flows

router = APIRouter(tags=["oidc"])
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORM_LIMIT = 64 * 1024


def _oauth_error(exc: OAuthError) -> Response:
    headers = dict(_NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="fedlake"'
    return JSONResponse(
        {"error": exc.error, "error_description": exc.message},
        status_code=exc.status,
        headers=headers,
    )


async def _form(request: Request) -> dict[str, str]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > _FORM_LIMIT:
            raise OAuthError("invalid_request", "the form is too large")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the body must be a URL-encoded form") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise OAuthError("invalid_request", f"parameter {key!r} is repeated")
        out[key] = value
    return out


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    """(client_id, secret) from HTTP Basic (RFC 6749 2.3.1) or the form."""
    auth = request.headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        if "client_secret" in form:
            raise OAuthError("invalid_request", "use one client authentication method", 400)
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "malformed HTTP Basic credentials", 401) from None
        cid, sep, secret = decoded.partition(":")
        if not sep:
            raise OAuthError("invalid_client", "malformed HTTP Basic credentials", 401)
        return unquote(cid), unquote(secret)
    return form.get("client_id"), form.get("client_secret")


async def _oauth(
    request: Request, work: Callable[[dict[str, str], clients.ClientInfo], Any]
) -> Response:
    try:
        form = await _form(request)
        cid, secret = _client_credentials(request, form)
        lk = lake(request)

        def both() -> Any:
            return work(form, clients.authenticate_client(lk, cid, secret))

        result = await threaded(both)
    except OAuthError as exc:
        return _oauth_error(exc)
    return JSONResponse(result, headers=_NO_STORE)


@router.get("/.well-known/openid-configuration")
async def openid_configuration(request: Request) -> Response:
    return json_response(svc.discovery(lake(request)))


@router.post("/oidc/token")
async def token(request: Request) -> Response:
    lk = lake(request)
    return await _oauth(request, lambda form, client: svc.token(lk, client, form))


@router.post("/oidc/device_authorization")
async def device_authorization(request: Request) -> Response:
    lk = lake(request)
    return await _oauth(
        request, lambda form, client: flows.device_authorization(lk, client, form.get("scope"))
    )


@router.post("/oidc/revoke")
async def revoke(request: Request) -> Response:
    lk = lake(request)

    def work(form: dict[str, str], client: clients.ClientInfo) -> dict[str, Any]:
        svc.revoke(lk, client, form.get("token", ""))
        return {}

    return await _oauth(request, work)


@router.post("/oidc/introspect")
async def introspect(request: Request) -> Response:
    lk = lake(request)
    return await _oauth(request, lambda form, client: svc.introspect(lk, form.get("token", "")))


@router.get("/oidc/userinfo")
@router.post("/oidc/userinfo")
async def userinfo(request: Request) -> Response:
    raw = token_of(request)
    if not raw:
        raise AuthenticationFailed("no bearer token (Authorization: Bearer ...)")
    return json_response(await threaded(svc.userinfo, lake(request), raw))


# --- pages ------------------------------------------------------------------------------

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>fedlake: {title}</title>
<style>body{{font-family:sans-serif;max-width:28em;margin:3em auto}}input{{display:block;
margin:.4em 0 1em;width:100%}}</style></head><body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    headers = {
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
        "form-action 'self'",
    }
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status, headers)


def _device_form(user_code: str, message: str = "") -> str:
    note = f"<p><strong>{html.escape(message)}</strong></p>" if message else ""
    return (
        f'{note}<form method="post" action="/oidc/device">'
        f'<label>Code<input name="user_code" value="{html.escape(user_code)}" required></label>'
        '<label>Username<input name="username" autocomplete="username" required></label>'
        '<label>Password<input name="password" type="password" required></label>'
        '<button name="action" value="approve">Approve</button> '
        '<button name="action" value="deny">Deny</button></form>'
    )


@router.get("/oidc/device")
async def device_page(request: Request) -> Response:
    code = request.query_params.get("user_code", "")
    return _page("Log in a device", _device_form(flows.normalise_user_code(code)))


@router.post("/oidc/device")
async def device_submit(request: Request) -> Response:
    try:
        form = await _form(request)
        done = await threaded(
            flows.approve_device,
            lake(request),
            form.get("user_code", ""),
            form.get("username", ""),
            form.get("password", ""),
            form.get("action") == "approve",
        )
    except OAuthError as exc:
        return _page("Log in a device", _device_form("", exc.message), 400)
    except AuthenticationFailed as exc:
        return _page("Log in a device", _device_form(form.get("user_code", ""), exc.message), 401)
    text = (
        "The device is logged in; you may close this page."
        if done == "approved"
        else ("The request was denied.")
    )
    return _page("Log in a device", f"<p>{html.escape(text)}</p>")


_AUTH_PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
)


def _authorize_form(params: dict[str, str], message: str = "") -> str:
    hidden = "".join(
        f'<input type="hidden" name="{k}" value="{html.escape(params[k])}">'
        for k in _AUTH_PARAMS
        if k in params
    )
    note = f"<p><strong>{html.escape(message)}</strong></p>" if message else ""
    return (
        f"{note}<p>{html.escape(params.get('client_id', ''))} asks to act for you.</p>"
        f'<form method="post" action="/oidc/authorize">{hidden}'
        '<label>Username<input name="username" autocomplete="username" required></label>'
        '<label>Password<input name="password" type="password" required></label>'
        "<button>Log in</button></form>"
    )


@router.get("/oidc/authorize")
async def authorize_page(request: Request) -> Response:
    params = {k: v for k, v in request.query_params.items() if k in _AUTH_PARAMS}
    try:
        await threaded(flows.check_authorize_request, lake(request), params)
    except OAuthError as exc:
        return _page("Authorization error", f"<p>{html.escape(exc.message)}</p>", 400)
    return _page("Log in", _authorize_form(params))


@router.post("/oidc/authorize")
async def authorize_submit(request: Request) -> Response:
    try:
        form = await _form(request)
    except OAuthError as exc:
        return _page("Authorization error", f"<p>{html.escape(exc.message)}</p>", 400)
    params = {k: v for k, v in form.items() if k in _AUTH_PARAMS}
    try:
        url = await threaded(
            flows.authorize,
            lake(request),
            params,
            form.get("username", ""),
            form.get("password", ""),
        )
    except OAuthError as exc:
        return _page("Authorization error", f"<p>{html.escape(exc.message)}</p>", 400)
    except AuthenticationFailed as exc:
        return _page("Log in", _authorize_form(params, exc.message), 401)
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


# --- administration ---------------------------------------------------------------------


def _str_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{key} must be a list of strings")
    return value


@router.get("/iam/clients")
async def list_clients(request: Request) -> Response:
    c = await caller(request)
    return json_response(await threaded(clients.list_clients, lake(request), c))


@router.post("/iam/clients")
async def add_client(request: Request) -> Response:
    c = await caller(request)
    body = await body_object(request)
    try:
        scope = _str_list(body, "scope")
        out = await threaded(
            clients.add_client,
            lake(request),
            c,
            str(body.get("client_id", "")),
            name=body.get("name") if isinstance(body.get("name"), str) else None,
            grant_types=_str_list(body, "grant_types"),
            scope=scope,
            account=body.get("account") if isinstance(body.get("account"), str) else None,
            public=bool(body.get("public", False)),
            redirect_uris=_str_list(body, "redirect_uris"),
        )
    except OAuthError as exc:
        raise InvalidInput(exc.message) from None
    return Response(
        json_response(out).body, status_code=201, media_type="application/json", headers=_NO_STORE
    )


@router.delete("/iam/clients/{client_id}")
async def remove_client(request: Request, client_id: str) -> Response:
    c = await caller(request)
    await threaded(clients.remove_client, lake(request), c, client_id)
    return Response(status_code=200)


@router.get("/iam/keys")
async def list_keys(request: Request) -> Response:
    c = await caller(request)
    return json_response(await threaded(clients.list_keys, lake(request), c))


@router.post("/iam/keys/rotate")
async def rotate_keys(request: Request) -> Response:
    c = await caller(request)
    body = await body_object(request, required=False)
    algorithm = body.get("algorithm")
    if algorithm is not None and not isinstance(algorithm, str):
        raise InvalidInput("algorithm must be ES256 or RS256")
    return json_response(await threaded(clients.rotate_keys, lake(request), c, algorithm))


@router.post("/iam/tokens")
async def mint_token(request: Request) -> Response:
    c = await caller(request)
    body = await body_object(request)
    account = body.get("account")
    if not isinstance(account, str) or not account:
        raise InvalidInput('the body needs "account"')
    lifetime = body.get("lifetime")
    if lifetime is not None and (not isinstance(lifetime, int) or isinstance(lifetime, bool)):
        raise InvalidInput("lifetime must be an integer number of seconds")
    scope = body.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise InvalidInput("scope must be a space-separated string")
    out = await threaded(
        clients.mint_token,
        lake(request),
        c,
        account,
        groups=_str_list(body, "groups"),
        scope=scope,
        lifetime=lifetime,
    )
    return Response(
        json_response(out).body, status_code=201, media_type="application/json", headers=_NO_STORE
    )
