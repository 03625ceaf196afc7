"""Goal: token validation adds < 0.2 ms per request once the issuer's key is cached.

Set-up (not timed): a real lake (``fedlake up``), a second issuer served by uvicorn on a
loopback port (RSA and EC keys, discovery + JWKS), trusted through ``POST /iam/issuers``,
and account ``alice`` with the OIDC identity of the external subject.

Timed, in this process, on the lake's catalogue: ``caller_from_token`` (what the server
runs for every request: validate the token, read the account's state) called ``--calls``
times with the same token, after one warm-up call that fetched the keys:

- the lake's own token and external RS256 / ES256 tokens;
- with the CallerCache off (``FEDLAKE_AUTH_CACHE_SECONDS=0``: signature, claims and the
  catalogue reads on every request) and on (the default, 5 s);
- and the signature + claims check alone (no catalogue read), for reference.

Every line is printed next to the goal; the exit status is 0 when the default
configuration (cache on) meets it for every issuer.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import uvicorn
from _lake import free_port, parse_args, report, running_lake
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fedlake.auth.trust import validate_token
from fedlake.bootstrap import build_lake
from fedlake.services.accounts import caller_from_token
from fedlake.settings import Settings

GOAL_US = 200.0  # 0.2 ms
AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"


class Issuer:
    """A minimal external issuer (copied in spirit from tests/issuer_app.py)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-" + secrets.token_hex(4)})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-" + secrets.token_hex(4)})

        async def discovery(_: Request) -> JSONResponse:
            return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

        async def jwks(_: Request) -> JSONResponse:
            return JSONResponse({"keys": [k.as_dict(private=False) for k in (self.rsa, self.ec)]})

        app = Starlette(
            routes=[Route("/.well-known/openid-configuration", discovery), Route("/jwks", jwks)]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        threading.Thread(target=self.server.run, daemon=True).start()
        while not self.server.started:
            time.sleep(0.02)

    def mint(self, alg: str) -> str:
        key = self.rsa if alg == "RS256" else self.ec
        now = int(time.time())
        claims = {
            "wlcg.ver": "1.0",
            "iss": self.url,
            "sub": "alice-sub",
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "jti": uuid.uuid4().hex,
            "scope": "storage.read:/",
        }
        return jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])


def per_call_us(fn: Callable[[], Any], calls: int) -> float:
    fn()  # warm-up: keys fetched, caches filled
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> int:
    args = parse_args(__doc__ or "", calls=(int, 2000, "validations per measurement"))
    issuer = Issuer()
    ok = True
    try:
        with running_lake(args) as lake:
            with lake.http() as h:
                r = h.post("/iam/issuers", json={"issuer": issuer.url, "audiences": [AUDIENCE]})
                r.raise_for_status()
                h.post("/accounts/alice", json={"type": "USER"}).raise_for_status()
                ident = {"identity": f"SUB=alice-sub, ISS={issuer.url}", "authtype": "OIDC"}
                h.post("/accounts/alice/identities", json=ident).raise_for_status()
            port = int(lake.url.rsplit(":", 1)[1])
            db_url = lake.database_url or f"sqlite:///{(lake.data_dir / 'catalog.db').resolve()}"
            lakes = {
                ttl: build_lake(
                    Settings(
                        data_dir=lake.data_dir,
                        database_url=db_url,
                        port=port,
                        auth_cache_seconds=ttl,
                    ),
                    migrate=False,
                )
                for ttl in (0, 5)
            }
            own_token, _ = lakes[0].tokens.issue("root", "root")
            tokens = {
                "own ES256": own_token,
                "external RS256": issuer.mint("RS256"),
                "external ES256": issuer.mint("ES256"),
            }
            for name, token in tokens.items():
                for ttl, label in ((0, "cache off"), (5, "cache on")):
                    lk = lakes[ttl]
                    us = per_call_us(partial(caller_from_token, lk, token), args.calls)
                    met = report(
                        f"validate {name} token, {label}",
                        us,
                        "µs/request",
                        GOAL_US,
                        lake.db,
                        higher_is_better=False,
                    )
                    if ttl:
                        ok = ok and met
            lk = lakes[0]
            config = lk.trust.config(issuer.url)
            for name, token in tokens.items():
                if name.startswith("own"):
                    us = per_call_us(
                        partial(lk.tokens.validate, token, check_revoked=False), args.calls
                    )
                else:
                    us = per_call_us(
                        partial(validate_token, token, config, lk.trust.keys), args.calls
                    )
                report(
                    f"signature + claims only, {name} (reference)",
                    us,
                    "µs/request",
                    GOAL_US,
                    lake.db,
                    higher_is_better=False,
                )
            for lk in lakes.values():
                lk.close()
    finally:
        issuer.server.should_exit = True
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
