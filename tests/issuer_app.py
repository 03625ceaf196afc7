"""A small external OIDC issuer for tests: a real HTTP server on a loopback port.

It serves ``/.well-known/openid-configuration`` and ``/jwks`` (counting the requests, so
tests can prove the lake fetches keys a bounded number of times) and mints tokens with
the RSA and EC keys it holds. ``rotate()`` replaces its keys, as a real issuer does.
``forge()`` builds tokens no honest issuer would sign (alg none, HS256 keyed with the
public key) for the security tests.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.helpers import free_port

WLCG_ANY = "https://wlcg.cern.ch/jwt/v1/any"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TestIssuer:
    """Keys, counters and the ASGI app of one issuer."""

    __test__ = False  # not a test class

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.requests: dict[str, int] = {"discovery": 0, "jwks": 0}
        self.served_issuer: str | None = None  # lie about the issuer in discovery when set
        self.rotate()
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
            ]
        )

    def rotate(self) -> None:
        """New keys; the old ones are no longer served."""
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-" + secrets.token_hex(4)})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-" + secrets.token_hex(4)})

    async def _discovery(self, request: Request) -> JSONResponse:
        self.requests["discovery"] += 1
        return JSONResponse(
            {
                "issuer": self.served_issuer or self.url,
                "jwks_uri": f"{self.url}/jwks",
                "token_endpoint": f"{self.url}/token",
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }
        )

    async def _jwks(self, request: Request) -> JSONResponse:
        self.requests["jwks"] += 1
        keys = [k.as_dict(private=False) | {"use": "sig"} for k in (self.rsa, self.ec)]
        return JSONResponse({"keys": keys})

    def claims(self, sub: str = "alice-sub", **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        out: dict[str, Any] = {
            "wlcg.ver": "1.0",
            "iss": self.url,
            "sub": sub,
            "aud": WLCG_ANY,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "jti": uuid.uuid4().hex,
            "scope": "storage.read:/",
        }
        out.update(extra)
        return {k: v for k, v in out.items() if v is not None}  # None drops a claim

    def mint(
        self, sub: str = "alice-sub", *, alg: str = "RS256", kid: str | None = None, **extra: Any
    ) -> str:
        """A genuine token signed with the issuer's current key (RSA or EC by ``alg``)."""
        key = self.rsa if alg.startswith(("RS", "PS")) else self.ec
        header = {"alg": alg, "kid": kid or key.kid, "typ": "JWT"}
        return jwt.encode(header, self.claims(sub, **extra), key, algorithms=[alg])

    def forge(self, header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
        """A token with any header: HS256-keyed with ``secret``, or unsigned when None."""
        head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        if secret is None:
            return head + "."
        return head + "." + _b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())

    def public_pem(self) -> bytes:
        """The RSA public key as PEM: what a key-confusion attacker would use as HMAC key."""
        return self.rsa.as_pem(private=False)


@contextlib.contextmanager
def run_issuer() -> Iterator[TestIssuer]:
    """Serve a TestIssuer with uvicorn on a free loopback port until the block ends."""
    issuer = TestIssuer(free_port())
    config = uvicorn.Config(
        issuer.app, host="127.0.0.1", port=issuer.port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test issuer did not start")
        time.sleep(0.02)
    try:
        yield issuer
    finally:
        server.should_exit = True
        thread.join(10)
