"""Goal: the embedded issuer gives >= 500 client-credentials tokens per second.

Set-up (not timed): a service account and a confidential OAuth client through the admin
API. Timed: ``--tokens`` POST /oidc/token (grant_type=client_credentials, HTTP Basic) from
``--threads`` threads over keep-alive connections; every answer must be 200 with a token.
Afterwards a sample of the tokens is used against GET /accounts/whoami (must act as the
service account).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from _lake import parse_args, report, running_lake

GOAL = 500.0


def main() -> int:
    args = parse_args(
        __doc__ or "",
        tokens=(int, 1000, "tokens to issue"),
        threads=(int, 8, "client threads"),
    )
    with running_lake(args) as lake:
        with lake.http() as h:
            h.post("/accounts/robot", json={"type": "SERVICE", "email": None}).raise_for_status()
            r = h.post(
                "/iam/clients",
                json={
                    "client_id": "bench-robot",
                    "grant_types": ["client_credentials"],
                    "scope": ["openid", "storage.read:/"],
                    "account": "robot",
                },
            )
            r.raise_for_status()
            secret = r.json()["client_secret"]
        auth = ("bench-robot", secret)
        form = {"grant_type": "client_credentials", "scope": "openid storage.read:/data"}
        per = args.tokens // args.threads
        clients = [httpx.Client(base_url=lake.url, timeout=60) for _ in range(args.threads)]
        # warm up: the first call verifies the secret (scrypt) and loads the signing key
        clients[0].post("/oidc/token", data=form, auth=auth).raise_for_status()

        def run(c: httpx.Client) -> list[str]:
            out = []
            for _ in range(per):
                resp = c.post("/oidc/token", data=form, auth=auth)
                if resp.status_code != 200:
                    raise SystemExit(f"token request failed: {resp.status_code} {resp.text}")
                out.append(resp.json()["access_token"])
            return out

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            tokens = [t for batch in pool.map(run, clients) for t in batch]
        elapsed = time.perf_counter() - t0
        for c in clients:
            c.close()
        if len(set(tokens)) != per * args.threads:
            raise SystemExit("tokens are missing or repeated")
        with httpx.Client(base_url=lake.url, timeout=60) as c:
            for token in tokens[:: max(1, len(tokens) // 20)]:
                who = c.get("/accounts/whoami", headers={"X-Rucio-Auth-Token": token})
                if who.status_code != 200 or who.json()["account"] != "robot":
                    raise SystemExit(f"an issued token does not work: {who.text}")
        ok = report(
            f"client_credentials tokens ({len(tokens)}, {args.threads} threads)",
            len(tokens) / elapsed,
            "tokens/s",
            GOAL,
            lake.db,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
