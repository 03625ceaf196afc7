"""HTTP client for the lake's REST API (Rucio-compatible paths)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx

from fedlake.client import saved_login
from fedlake.domain.errors import AuthenticationFailed, LakeError, error_class_for

__all__ = ["BUSY_RETRIES", "Client", "ClientConfig"]

#: times a request answered 503 (the catalogue was busy; nothing was changed) is sent again
BUSY_RETRIES = 3


@dataclass(frozen=True)
class ClientConfig:
    url: str
    account: str | None = None
    username: str | None = None
    password: str | None = None
    token: str | None = None
    #: where ``fedlake login`` saved its tokens (used when no token or password is set)
    login_dir: Path | None = None

    @classmethod
    def load(cls, env: dict[str, str] | None = None) -> ClientConfig:
        """From ``FEDLAKE_URL``/``FEDLAKE_ACCOUNT``/... else the file ``fedlake up`` wrote."""
        env = dict(os.environ) if env is None else env
        data_dir = Path(env.get("FEDLAKE_DATA_DIR") or Path.home() / ".fedlake").expanduser()
        saved: dict[str, Any] = {}
        cfg_file = data_dir / "client.json"
        if cfg_file.exists():
            saved = json.loads(cfg_file.read_text())
        url = env.get("FEDLAKE_URL") or saved.get("url")
        if not url:
            raise LakeError(
                "no lake to talk to: set FEDLAKE_URL (e.g. http://127.0.0.1:8080) "
                "or run `fedlake up`"
            )
        username = env.get("FEDLAKE_USERNAME") or saved.get("username")
        password = env.get("FEDLAKE_PASSWORD")
        if env.get("FEDLAKE_TOKEN"):
            # the token is the identity: never fall back to a password (a token refused for
            # what it may not do must not become the saved admin's login)
            username = password = None
        elif password is None and saved.get("password_file") and username == saved.get("username"):
            pw_file = Path(saved["password_file"])
            password = pw_file.read_text().strip() if pw_file.exists() else None
        # the saved account goes with the saved login only: another user's name or a token
        # acts as that identity's own account (unless FEDLAKE_ACCOUNT says otherwise)
        own_login = not env.get("FEDLAKE_TOKEN") and username == saved.get("username")
        return cls(
            url=url.rstrip("/"),
            account=env.get("FEDLAKE_ACCOUNT") or (saved.get("account") if own_login else None),
            username=username,
            password=password,
            token=env.get("FEDLAKE_TOKEN"),
            login_dir=(
                None
                if env.get("FEDLAKE_TOKEN")
                or (env.get("FEDLAKE_USERNAME") and env.get("FEDLAKE_PASSWORD"))
                else data_dir
            ),
        )


def _retry_after(r: httpx.Response, attempt: int) -> float:
    """Seconds to wait before sending a request answered 503 again: the server's
    ``Retry-After`` (at most 10), else 0.5, 1, 2 ..."""
    try:
        return min(max(float(r.headers.get("Retry-After", "")), 0.0), 10.0)
    except ValueError:
        return 0.5 * 2.0 ** (attempt - 1)


def _q(value: str) -> str:
    return quote_plus(value, safe="")


class Client:
    """A session with one lake. Methods raise fedlake's LakeError subclasses."""

    def __init__(self, config: ClientConfig | None = None, *, timeout: float = 300.0) -> None:
        self.config = config or ClientConfig.load()
        self._http = httpx.Client(
            base_url=self.config.url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self._token = self.config.token
        self._saved: saved_login.SavedLogin | None = None
        if self._token is None and self.config.login_dir is not None:
            self._saved = saved_login.load(self.config.login_dir, self.config.url)
            if self._saved is not None:
                self._token = self._saved.access_token

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- transport ---------------------------------------------------------------------

    def login(self) -> str:
        c = self.config
        if not c.username or not c.password:
            raise AuthenticationFailed(
                "no credentials: run 'fedlake login', or set FEDLAKE_TOKEN, or FEDLAKE_USERNAME "
                "and FEDLAKE_PASSWORD"
            )
        headers = {"X-Rucio-Username": c.username, "X-Rucio-Password": c.password}
        if c.account:
            headers["X-Rucio-Account"] = c.account
        r = self._http.get("/auth/userpass", headers=headers)
        self._raise(r)
        self._token = r.headers["X-Rucio-Auth-Token"]
        return self._token

    def _refresh_saved(self) -> None:
        assert self._saved is not None
        assert self.config.login_dir is not None
        self._saved = saved_login.refresh(self._http, self.config.login_dir, self._saved)
        self._token = self._saved.access_token

    def _headers(self) -> dict[str, str]:
        if self._saved is not None and self._saved.near_expiry():
            self._refresh_saved()
        if self._token is None:
            self.login()
        assert self._token is not None
        return {"X-Rucio-Auth-Token": self._token}

    @staticmethod
    def _raise(r: httpx.Response) -> None:
        if r.status_code < 400:
            return
        cls_name = r.headers.get("ExceptionClass", "")
        message = r.headers.get("ExceptionMessage", "")
        own = None
        try:
            body = json.loads(r.content)
            cls_name = body.get("ExceptionClass", cls_name)
            message = body.get("ExceptionMessage", message)
            own = body.get("FedlakeClass")
        except (ValueError, AttributeError):
            message = message or r.text[:500]
        error = error_class_for(cls_name, r.status_code, own if isinstance(own, str) else None)
        raise error(message or f"HTTP {r.status_code}")

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        content = None if body is None else json.dumps(body)
        relogged, busy = False, 0
        while True:
            h = self._headers() | (headers or {})
            r = self._http.request(method, path, content=content, params=params, headers=h)
            # a token refused as expired or invalid (CannotAuthenticate; not AccessDenied,
            # which is about what the identity may do): refresh the saved login, or log in
            # with the password again, once
            expired = (
                not relogged
                and r.status_code == 401
                and r.headers.get("ExceptionClass") == "CannotAuthenticate"
            )
            if expired and self._saved is not None:
                self._refresh_saved()
                relogged = True
                continue
            if expired and self.config.password and self.config.token is None:
                self._token, relogged = None, True
                continue
            if r.status_code == 503 and busy < BUSY_RETRIES:
                busy += 1
                time.sleep(_retry_after(r, busy))
                continue
            self._raise(r)
            return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return json.loads(self.request(method, path, **kw).content or b"null")

    def _stream(self, method: str, path: str, **kw: Any) -> Iterator[Any]:
        h = self._headers()
        content = None if kw.get("body") is None else json.dumps(kw["body"])
        with self._http.stream(
            method, path, content=content, params=kw.get("params"), headers=h
        ) as r:
            if r.status_code >= 400:
                r.read()
                self._raise(r)
            for line in r.iter_lines():
                if line.strip():
                    yield json.loads(line)

    # --- API -------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        r = self._http.get("/ping")
        self._raise(r)
        return dict(r.json())

    def whoami(self) -> dict[str, Any]:
        return dict(self._json("GET", "/accounts/whoami"))

    def list_accounts(self) -> list[dict[str, Any]]:
        return list(self._stream("GET", "/accounts/"))

    def add_account(
        self, account: str, account_type: str = "USER", email: str | None = None
    ) -> None:
        self.request("POST", f"/accounts/{account}", body={"type": account_type, "email": email})

    def add_identity(
        self,
        account: str,
        identity: str,
        password: str | None,
        authtype: str = "USERPASS",
        default: bool = True,
    ) -> None:
        self.request(
            "POST",
            f"/accounts/{account}/identities",
            body={
                "identity": identity,
                "authtype": authtype,
                "password": password,
                "default": default,
            },
        )

    def list_scopes(self) -> list[dict[str, str]]:
        return list(self._json("GET", "/scopes/owner"))

    def add_scope(self, account: str, scope: str) -> None:
        self.request("POST", f"/accounts/{account}/scopes/{scope}")

    def set_limit(self, account: str, locality: str, target: str, nbytes: int) -> None:
        """A byte limit of ``account`` on an RSE (``local``) or an RSE expression
        (``global``); -1: unlimited."""
        path = f"/accounts/{account}/limits/{locality}/{quote_plus(target)}"
        self.request("POST", path, body={"bytes": nbytes})

    def delete_limit(self, account: str, locality: str, target: str) -> None:
        self.request("DELETE", f"/accounts/{account}/limits/{locality}/{quote_plus(target)}")

    def usage(self, account: str, locality: str) -> list[dict[str, Any]]:
        """Bytes and files of the account's locks with its limits, per RSE (``local``) or
        per expression that has a limit (``global``)."""
        return list(self._stream("GET", f"/accounts/{account}/usage/{locality}"))

    def list_rses(self, expression: str | None = None) -> list[dict[str, Any]]:
        params = {"expression": expression} if expression else None
        return list(self._stream("GET", "/rses/", params=params))

    def get_rse(self, rse: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/rses/{rse}"))

    def add_rse(self, rse: str, **settings: Any) -> None:
        self.request("POST", f"/rses/{rse}", body=settings)

    def update_rse(self, rse: str, **settings: Any) -> None:
        self.request("PUT", f"/rses/{rse}", body=settings)

    def set_rse_attribute(self, rse: str, key: str, value: Any) -> None:
        self.request("POST", f"/rses/{rse}/attr/{key}", body={"value": value})

    def add_protocol(self, rse: str, spec: dict[str, Any]) -> None:
        self.request("POST", f"/rses/{rse}/protocols/{spec['scheme']}", body=spec)

    def get_did(self, scope: str, name: str) -> dict[str, Any]:
        return dict(
            self._json("GET", f"/dids/{_q(scope)}/{_q(name)}", params={"dynamic_depth": "FILE"})
        )

    def add_did(
        self,
        scope: str,
        name: str,
        did_type: str = "DATASET",
        *,
        lifetime: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        body: dict[str, Any] = {"type": did_type.upper()}
        if lifetime:
            body["lifetime"] = lifetime
        if meta:
            body["meta"] = meta
        self.request("POST", f"/dids/{_q(scope)}/{_q(name)}", body=body)

    def add_dids(self, dids: list[dict[str, Any]]) -> None:
        self.request("POST", "/dids", body=dids)

    def search(
        self, scope: str, filters: str | None = None, did_type: str = "all", long: bool = True
    ) -> Iterator[Any]:
        params = {"type": did_type, "long": str(long)}
        if filters:
            params["filters"] = filters
        return self._stream("GET", f"/dids/{_q(scope)}/dids/search", params=params)

    def list_content(self, scope: str, name: str) -> Iterator[dict[str, Any]]:
        return self._stream("GET", f"/dids/{_q(scope)}/{_q(name)}/dids")

    def list_files(self, scope: str, name: str) -> Iterator[dict[str, Any]]:
        return self._stream("GET", f"/dids/{_q(scope)}/{_q(name)}/files")

    def attach(self, scope: str, name: str, dids: list[tuple[str, str]]) -> None:
        for i in range(0, len(dids), 5000):
            chunk = [{"scope": s, "name": n} for s, n in dids[i : i + 5000]]
            self.request("POST", f"/dids/{_q(scope)}/{_q(name)}/dids", body={"dids": chunk})

    def detach(self, scope: str, name: str, dids: list[tuple[str, str]]) -> None:
        self.request(
            "DELETE",
            f"/dids/{_q(scope)}/{_q(name)}/dids",
            body={"dids": [{"scope": s, "name": n} for s, n in dids]},
        )

    def set_status(self, scope: str, name: str, open_: bool) -> None:
        self.request("PUT", f"/dids/{_q(scope)}/{_q(name)}/status", body={"open": open_})

    def get_meta(self, scope: str, name: str, plugin: str = "ALL") -> dict[str, Any]:
        return dict(
            self._json("GET", f"/dids/{_q(scope)}/{_q(name)}/meta", params={"plugin": plugin})
        )

    def set_meta(self, scope: str, name: str, meta: dict[str, Any]) -> None:
        self.request("POST", f"/dids/{_q(scope)}/{_q(name)}/meta", body={"meta": meta})

    def delete_meta(self, scope: str, name: str, key: str) -> None:
        self.request("DELETE", f"/dids/{_q(scope)}/{_q(name)}/meta", params={"key": key})

    def add_replicas(self, rse: str, files: list[dict[str, Any]]) -> None:
        self.request("POST", "/replicas", body={"rse": rse, "files": files})

    def update_replicas(self, rse: str, files: list[dict[str, Any]]) -> None:
        self.request("PUT", "/replicas", body={"rse": rse, "files": files})

    def list_replicas(
        self,
        dids: list[tuple[str, str]],
        *,
        schemes: list[str] | None = None,
        all_states: bool = False,
        rse_expression: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        body: dict[str, Any] = {
            "dids": [{"scope": s, "name": n} for s, n in dids],
            "all_states": all_states,
            "resolve_parents": True,
        }
        if schemes:
            body["schemes"] = schemes
        if rse_expression:
            body["rse_expression"] = rse_expression
        return self._stream("POST", "/replicas/list", body=body)

    def add_rule(
        self, dids: list[tuple[str, str]], copies: int, rse_expression: str, **options: Any
    ) -> list[str]:
        body = {
            "dids": [{"scope": s, "name": n} for s, n in dids],
            "copies": copies,
            "rse_expression": rse_expression,
        } | options
        return list(self._json("POST", "/rules/", body=body))

    def get_rule(self, rule_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/rules/{_q(rule_id)}"))

    def list_rules(self, **filters: Any) -> list[dict[str, Any]]:
        """Rules whose columns equal the filters (account="alice", state="STUCK",
        scope=..., name=...); None values are left out."""
        params = {k: str(v) for k, v in filters.items() if v is not None}
        return list(self._stream("GET", "/rules/", params=params))

    def list_did_rules(self, scope: str, name: str) -> list[dict[str, Any]]:
        return list(self._stream("GET", f"/dids/{_q(scope)}/{_q(name)}/rules"))

    def update_rule(self, rule_id: str, options: dict[str, Any]) -> None:
        """Change a rule (lifetime, locked, comment, activity, priority, account, state,
        copies, rse_expression, approve); see docs/rules.md."""
        self.request("PUT", f"/rules/{_q(rule_id)}", body={"options": options})

    def approve_rule(self, rule_id: str) -> None:
        self.update_rule(rule_id, {"approve": True})

    def deny_rule(self, rule_id: str, reason: str | None = None) -> None:
        """Refuse a rule waiting for approval: it is removed."""
        options: dict[str, Any] = {"approve": False}
        if reason is not None:
            options["comment"] = reason
        self.update_rule(rule_id, options)

    def reduce_rule(
        self, rule_id: str, copies: int, exclude_expression: str | None = None
    ) -> list[str]:
        body: dict[str, Any] = {"copies": copies}
        if exclude_expression is not None:
            body["exclude_expression"] = exclude_expression
        return list(self._json("POST", f"/rules/{_q(rule_id)}/reduce", body=body))

    def move_rule(
        self, rule_id: str, rse_expression: str, override: dict[str, Any] | None = None
    ) -> str:
        """Move a rule's data: returns the child rule's id (the rule goes once it is OK)."""
        body: dict[str, Any] = {"rse_expression": rse_expression}
        if override:
            body["override"] = override
        return str(self._json("POST", f"/rules/{_q(rule_id)}/move", body=body))

    def delete_rule(self, rule_id: str, purge_replicas: bool | None = None) -> None:
        """Remove a rule; ``purge_replicas`` None keeps the rule's own setting."""
        self.request("DELETE", f"/rules/{_q(rule_id)}", body={"purge_replicas": purge_replicas})

    def rule_history(self, scope: str, name: str) -> list[dict[str, Any]]:
        return list(self._stream("GET", f"/rules/{_q(scope)}/{_q(name)}/history"))

    def rule_locks(self, rule_id: str) -> list[dict[str, Any]]:
        return list(self._stream("GET", f"/rules/{_q(rule_id)}/locks"))

    # --- transfers (fedlake) -------------------------------------------------------------

    def submit_transfers(self, dids: list[tuple[str, str]], rse: str, **options: Any) -> list[int]:
        """Copy files (or every file of collections) to an RSE; one request id per file."""
        body = {"dids": [{"scope": s, "name": n} for s, n in dids], "rse": rse} | options
        return list(self._json("POST", "/transfers/", body=body)["request_ids"])

    def list_transfers(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Requests, newest first; filters: state ("QUEUED,FAILED"), scope, name, rse,
        rule_id, limit."""
        params = {k: str(v) for k, v in filters.items() if v is not None}
        return self._stream("GET", "/transfers/", params=params)

    def get_transfer(self, request_id: int) -> dict[str, Any]:
        return dict(self._json("GET", f"/transfers/{int(request_id)}"))

    def cancel_transfer(self, request_id: int) -> None:
        self.request("DELETE", f"/transfers/{int(request_id)}")

    def retry_transfer(self, request_id: int) -> int:
        return int(self._json("POST", f"/transfers/{int(request_id)}/retry")["request_id"])

    def transfer_summary(self) -> dict[str, Any]:
        return dict(self._json("GET", "/transfers/summary"))

    def transfer_links(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/transfers/links"))

    def set_transfer_link(
        self,
        source: str,
        dest: str,
        *,
        max_active: int | None,
        optimizer: bool = True,
        initial: int | None = None,
    ) -> None:
        body: dict[str, Any] = {"max_active": max_active, "optimizer": optimizer}
        if initial is not None:
            body["initial"] = initial
        self.request("PUT", f"/transfers/links/{_q(source)}/{_q(dest)}", body=body)

    def upload_bytes(
        self,
        scope: str,
        name: str,
        rse: str,
        data: Any,
        *,
        size: int,
        adler32: str,
        md5: str | None = None,
    ) -> None:
        """Send a file's bytes through the server (for RSEs the client cannot reach)."""
        headers = self._headers() | {"Content-Length": str(size), "X-Fedlake-Adler32": adler32}
        if md5:
            headers["X-Fedlake-Md5"] = md5
        r = self._http.put(
            f"/files/{_q(scope)}/{_q(name)}", params={"rse": rse}, content=data, headers=headers
        )
        self._raise(r)

    def open_bytes(self, scope: str, name: str) -> httpx.Response:
        """Stream a file's bytes through the server; close the response when done."""
        req = self._http.build_request(
            "GET", f"/files/{_q(scope)}/{_q(name)}", headers=self._headers()
        )
        r = self._http.send(req, stream=True)
        if r.status_code >= 400:
            r.read()
            self._raise(r)
        return r
