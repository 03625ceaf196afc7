"""``fedlake login`` / ``fedlake logout``: the device-code login (RFC 8628) with the lake's
own issuer, and its end.

``login`` asks the lake for a code, prints the verification URL and the code (and the
complete URL), polls the token endpoint until the user approved in a browser, and saves
the tokens (``fedlake.client.saved_login``: ``tokens.json`` in FEDLAKE_DATA_DIR or
~/.fedlake, mode 0600). The CLI then uses them and refreshes them when they near expiry.
``logout`` revokes the saved tokens at the lake and deletes the file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from fedlake.cli.output import console, err_console

__all__ = ["register"]

CLI_CLIENT = "fedlake-cli"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _where() -> tuple[str, Path]:
    import os

    from fedlake.client import ClientConfig

    env = dict(os.environ)
    env.pop("FEDLAKE_TOKEN", None)
    url = ClientConfig.load(env).url
    data_dir = Path(env.get("FEDLAKE_DATA_DIR") or Path.home() / ".fedlake").expanduser()
    return url, data_dir


def login(
    scope: Annotated[
        str, typer.Option(help="scopes to ask for")
    ] = "openid offline_access wlcg.groups",
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 600,
) -> None:
    """Log in through a browser (device code); the CLI then uses the saved tokens."""
    import httpx

    from fedlake.client import saved_login

    url, data_dir = _where()
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/oidc/device_authorization", data={"client_id": CLI_CLIENT, "scope": scope})
        if r.status_code != 200:
            err_console.print(f"the lake refused the login: {r.text[:300]}")
            raise typer.Exit(1)
        dev = r.json()
        console.print(
            f"Open {dev['verification_uri']} and enter the code {dev['user_code']}", highlight=False
        )
        console.print(f"(or open {dev['verification_uri_complete']})", highlight=False)
        interval = float(dev.get("interval", 5))
        deadline = time.monotonic() + min(timeout, float(dev.get("expires_in", timeout)))
        form = {
            "grant_type": DEVICE_GRANT,
            "device_code": dev["device_code"],
            "client_id": CLI_CLIENT,
        }
        while True:
            time.sleep(interval)
            r = http.post("/oidc/token", data=form)
            if r.status_code == 200:
                break
            error = (
                r.json().get("error")
                if r.headers.get("content-type", "").startswith("application/json")
                else None
            )
            if error == "slow_down":
                interval += 5
            elif error != "authorization_pending":
                why = r.json().get("error_description", "") if error else r.text[:300]
                err_console.print(f"login failed: {error or r.status_code}: {why}")
                raise typer.Exit(1)
            if time.monotonic() > deadline:
                err_console.print("login timed out: nobody approved the code; run it again")
                raise typer.Exit(1)
    body = r.json()
    saved = saved_login.SavedLogin(
        url=url,
        access_token=body["access_token"],
        expires_at=int(time.time()) + int(body.get("expires_in", 0)),
        refresh_token=body.get("refresh_token"),
        client_id=CLI_CLIENT,
    )
    target = saved_login.save(data_dir, saved)
    console.print(f"logged in; tokens saved in {target}", highlight=False)


def logout() -> None:
    """Revoke the saved tokens at the lake and delete them."""
    import httpx

    from fedlake.client import saved_login

    url, data_dir = _where()
    saved = saved_login.load(data_dir, url)
    if saved is None:
        console.print("not logged in (no saved tokens for this lake)", highlight=False)
        return
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            for token in (saved.refresh_token, saved.access_token):
                if token:
                    http.post("/oidc/revoke", data={"token": token, "client_id": saved.client_id})
    except httpx.HTTPError as exc:
        err_console.print(f"could not reach the lake to revoke the tokens ({exc}); deleting them")
    saved_login.delete(data_dir)
    console.print("logged out", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("logout")(logout)
