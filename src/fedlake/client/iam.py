"""Client calls of the identity administration API (``/iam``: groups, members, users,
registration requests, token revocation, audit), on top of :class:`Client`."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fedlake.client.http import Client

__all__ = ["IamClient"]


def _g(group: str) -> str:
    """A group path as the one percent-encoded URL segment the API expects."""
    return quote(group, safe="")


class IamClient:
    """``IamClient(Client())``: every method raises fedlake's LakeError subclasses."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return json.loads(self.client.request(method, path, **kw).content or b"null")

    # --- groups and members ----------------------------------------------------------

    def add_group(
        self, name: str, *, optional: bool = False, description: str | None = None
    ) -> dict[str, Any]:
        body = {"name": name, "optional": optional, "description": description}
        return dict(self._json("POST", "/iam/groups", body=body))

    def list_groups(self, under: str | None = None) -> list[dict[str, Any]]:
        params = {"under": under} if under else None
        return list(self._json("GET", "/iam/groups", params=params))

    def get_group(self, name: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/iam/groups/{_g(name)}"))

    def remove_group(self, name: str, *, recursive: bool = False) -> list[str]:
        params = {"recursive": "true"} if recursive else None
        return list(self._json("DELETE", f"/iam/groups/{_g(name)}", params=params)["removed"])

    def list_members(self, group: str) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/iam/groups/{_g(group)}/members"))

    def add_member(self, group: str, account: str, *, manager: bool = False) -> None:
        body = {"account": account, "manager": manager}
        self.client.request("POST", f"/iam/groups/{_g(group)}/members", body=body)

    def remove_member(self, group: str, account: str) -> None:
        self.client.request("DELETE", f"/iam/groups/{_g(group)}/members/{_g(account)}")

    def set_manager(self, group: str, account: str, manager: bool) -> None:
        path = f"/iam/groups/{_g(group)}/members/{_g(account)}"
        self.client.request("PATCH", path, body={"manager": manager})

    # --- users and tokens ------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        return dict(self._json("GET", "/iam/me"))

    def list_users(self, status: str | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else None
        return list(self._json("GET", "/iam/users", params=params))

    def get_user(self, account: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/iam/users/{_g(account)}"))

    def suspend(self, account: str, reason: str | None = None) -> None:
        self.client.request("POST", f"/iam/users/{_g(account)}/suspend", body={"reason": reason})

    def reinstate(self, account: str) -> None:
        self.client.request("POST", f"/iam/users/{_g(account)}/reinstate")

    def revoke_tokens(self, account: str) -> None:
        self.client.request("POST", f"/iam/users/{_g(account)}/revoke-tokens")

    def revoke_token(self, jti: str, expires_at: int | str | None = None) -> None:
        self.client.request(
            "POST", "/iam/revoked-tokens", body={"jti": jti, "expires_at": expires_at}
        )

    # --- registration requests -------------------------------------------------------

    def submit_request(self, group: str, notes: str | None = None) -> dict[str, Any]:
        return dict(self._json("POST", "/iam/requests", body={"group": group, "notes": notes}))

    def list_requests(
        self, *, state: str | None = None, group: str | None = None, mine: bool = False
    ) -> list[dict[str, Any]]:
        params = {"state": state, "group": group, "mine": "true" if mine else None}
        return list(
            self._json(
                "GET", "/iam/requests", params={k: v for k, v in params.items() if v is not None}
            )
        )

    def approve_request(self, request_id: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/iam/requests/{_g(request_id)}/approve"))

    def reject_request(self, request_id: str, reason: str | None = None) -> dict[str, Any]:
        path = f"/iam/requests/{_g(request_id)}/reject"
        return dict(self._json("POST", path, body={"reason": reason}))

    # --- audit -----------------------------------------------------------------------

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        return list(self._json("GET", "/iam/audit", params=params))

    # --- namespace rules (policy v2, docs/policy.md) ----------------------------------

    def add_policy(
        self, group: str, action: str, scope: str, *, name_prefix: str | None = None
    ) -> dict[str, Any]:
        body = {"group": group, "action": action, "scope": scope, "name_prefix": name_prefix}
        return dict(self._json("POST", "/iam/policies", body=body))

    def list_policies(self, group: str | None = None) -> list[dict[str, Any]]:
        return list(self._json("GET", "/iam/policies", params={"group": group} if group else {}))

    def remove_policy(self, rule_id: int) -> None:
        self._json("DELETE", f"/iam/policies/{rule_id}")
