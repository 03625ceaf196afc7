"""``fedlake iam user|group|request|audit``: users (suspension, token revocation), groups
and roles with their members and managers, registration requests, and the audit log.

Each command is one call of the ``/iam`` API (docs/identity.md) on the lake given by
``FEDLAKE_URL``; tables for people, ``--json`` for scripts.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from fedlake.cli.output import console, emit, table

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
user_app = typer.Typer(
    help="users: list, show, suspend, reinstate, revoke tokens", no_args_is_help=True
)
group_app = typer.Typer(help="groups and roles, their members and managers", no_args_is_help=True)
request_app = typer.Typer(
    help="registration requests: ask to join a group, decide", no_args_is_help=True
)


def _iam() -> Any:
    from fedlake.client import Client
    from fedlake.client.iam import IamClient

    return IamClient(Client())


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def _table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    """Ids and dates stay whole (people copy them)."""
    table(rows, columns, title=title, whole=("id", "at"))


def _done(as_json: bool, value: Any, text: str) -> None:
    if as_json:
        print(json.dumps(value, default=str))
    else:
        _say(text)


# --- users -------------------------------------------------------------------------------


@user_app.command("list")
def user_list(
    status: Annotated[str | None, typer.Option(help="ACTIVE or SUSPENDED")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Users (accounts of type USER) with their status and groups (admins)."""
    rows = _iam().list_users(status)
    for r in rows:
        r["groups"] = ", ".join(r["groups"]) if not as_json else r["groups"]
    emit(rows, ["account", "status", "email", "groups"], as_json=as_json, title="users")


@user_app.command("show")
def user_show(
    account: Annotated[str | None, typer.Argument(help="account (default: you)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """An account's status, identities, groups (manager or not) and requests."""
    iam = _iam()
    info = iam.me() if account is None else iam.get_user(account)
    if as_json:
        emit(info, as_json=True)
        return
    brief = {k: info[k] for k in ("account", "account_type", "status", "email", "suspended_at")}
    brief["identities"] = ", ".join(f"{i['type']}:{i['identity']}" for i in info["identities"])
    emit(brief, as_json=False, title=info["account"])
    emit(info["memberships"], ["group", "manager", "optional"], as_json=False, title="groups")
    if info["requests"]:
        emit(info["requests"], ["id", "group", "state", "reason"], as_json=False, title="requests")


@user_app.command("suspend")
def user_suspend(
    account: str,
    reason: Annotated[str | None, typer.Option(help="why (kept in the audit log)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Suspend an account: its tokens stop working and are revoked (admins)."""
    _iam().suspend(account, reason)
    _done(as_json, {"account": account, "status": "SUSPENDED"}, f"suspended {account}")


@user_app.command("reinstate")
def user_reinstate(account: str, as_json: JsonOpt = False) -> None:
    """Make a suspended account active again; it logs in anew (admins)."""
    _iam().reinstate(account)
    _done(as_json, {"account": account, "status": "ACTIVE"}, f"reinstated {account}")


@user_app.command("revoke-tokens")
def user_revoke_tokens(
    account: Annotated[
        str | None, typer.Argument(help="revoke every token of this account")
    ] = None,
    jti: Annotated[
        str | None, typer.Option(help="revoke only the token with this jti (admins)")
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="with --jti: the token's exp (epoch or date), if known")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke every token of ACCOUNT (admins, or the account itself), or one by --jti."""
    if (account is None) == (jti is None):
        raise typer.BadParameter("give an ACCOUNT or --jti, not both")
    iam = _iam()
    if jti is not None:
        until: int | str | None = int(expires) if expires and expires.isdigit() else expires
        iam.revoke_token(jti, until)
        _done(as_json, {"jti": jti, "revoked": True}, f"revoked token {jti}")
    else:
        assert account is not None
        iam.revoke_tokens(account)
        _done(as_json, {"account": account, "revoked": True}, f"revoked every token of {account}")


# --- groups ------------------------------------------------------------------------------


@group_app.command("add")
def group_add(
    name: Annotated[str, typer.Argument(help="group path, e.g. /escape/cms (parent first)")],
    optional: Annotated[
        bool, typer.Option("--optional", help="a role: in tokens only when asked for")
    ] = False,
    description: Annotated[str | None, typer.Option(help="free text")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a group or a role (admins)."""
    row = _iam().add_group(name, optional=optional, description=description)
    _done(as_json, row, f"added {'role' if optional else 'group'} {name}")


@group_app.command("list")
def group_list(
    under: Annotated[str | None, typer.Option(help="only this group and those below it")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every group (roles are optional=True)."""
    rows = _iam().list_groups(under)
    emit(rows, ["name", "optional", "description"], as_json=as_json, title="groups")


@group_app.command("show")
def group_show(name: str, as_json: JsonOpt = False) -> None:
    """A group, its subgroups and (for its managers and admins) its members."""
    info = _iam().get_group(name)
    if as_json:
        emit(info, as_json=True)
        return
    members = info.pop("members", None)
    info["subgroups"] = ", ".join(info["subgroups"])
    emit(info, as_json=False, title=name)
    if members is not None:
        emit(members, ["account", "manager", "since"], as_json=False, title="members")


@group_app.command("remove")
def group_remove(
    name: str,
    recursive: Annotated[
        bool, typer.Option("--recursive", help="also remove its subgroups")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove a group with its memberships and requests (admins)."""
    removed = _iam().remove_group(name, recursive=recursive)
    _done(as_json, removed, "removed " + ", ".join(removed))


@group_app.command("add-member")
def group_add_member(
    name: str,
    account: str,
    manager: Annotated[
        bool, typer.Option("--manager", help="may manage members and requests (admins)")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add an account to a group (admins, or the group's managers)."""
    _iam().add_member(name, account, manager=manager)
    value = {"group": name, "account": account, "manager": manager}
    _done(as_json, value, f"added {account} to {name}{' as manager' if manager else ''}")


@group_app.command("remove-member")
def group_remove_member(name: str, account: str, as_json: JsonOpt = False) -> None:
    """Remove an account from a group (admins, the group's managers, or the account)."""
    _iam().remove_member(name, account)
    _done(as_json, {"group": name, "account": account}, f"removed {account} from {name}")


@group_app.command("set-manager")
def group_set_manager(
    name: str,
    account: str,
    off: Annotated[bool, typer.Option("--off", help="take the manager flag away")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make a member a manager of the group, or no longer (--off) (admins)."""
    _iam().set_manager(name, account, not off)
    what = "no longer manages" if off else "manages"
    _done(
        as_json, {"group": name, "account": account, "manager": not off}, f"{account} {what} {name}"
    )


# --- registration requests ---------------------------------------------------------------

REQUEST_COLUMNS = ["id", "account", "group", "state", "notes", "decided_by", "reason"]


@request_app.command("submit")
def request_submit(
    group: Annotated[str, typer.Argument(help="the group or role to join")],
    notes: Annotated[str | None, typer.Option(help="why, for the managers")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask to join a group; its managers decide. Prints the request id."""
    row = _iam().submit_request(group, notes)
    _done(as_json, row, row["id"])


@request_app.command("list")
def request_list(
    state: Annotated[str, typer.Option(help="PENDING, APPROVED, REJECTED or ALL")] = "PENDING",
    group: Annotated[str | None, typer.Option(help="only this group")] = None,
    mine: Annotated[bool, typer.Option("--mine", help="only my own requests")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Requests of the groups you manage and your own (admins: all)."""
    rows = _iam().list_requests(state=state, group=group, mine=mine)
    if as_json:
        emit(rows, as_json=True)
    else:
        _table(rows, REQUEST_COLUMNS, "registration requests")


@request_app.command("approve")
def request_approve(request_id: str, as_json: JsonOpt = False) -> None:
    """Approve a pending request: the account joins the group."""
    row = _iam().approve_request(request_id)
    _done(as_json, row, f"approved: {row['account']} joined {row['group']}")


@request_app.command("reject")
def request_reject(
    request_id: str,
    reason: Annotated[str | None, typer.Option(help="told to the requester")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject a pending request."""
    row = _iam().reject_request(request_id, reason)
    _done(as_json, row, f"rejected the request of {row['account']} for {row['group']}")


# --- audit -------------------------------------------------------------------------------


def audit(
    target: Annotated[
        str | None, typer.Option(help="a group, account or jti; /escape* for a prefix")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="who did it")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. account.suspend, member.add")] = None,
    since: Annotated[str | None, typer.Option(help="ISO date/time (UTC)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="newest first, at most")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The identity audit log, newest first (admins)."""
    rows = _iam().audit(target=target, actor=actor, action=action, since=since, limit=limit)
    if as_json:
        emit(rows, as_json=True)
        return
    for r in rows:
        details = r["details"] or {}
        r["details"] = " ".join(f"{k}={v}" for k, v in details.items() if v is not None)
        r["at"] = _when(r["at"])
    _table(rows, ["at", "actor", "action", "target", "details"], "audit (UTC)")


def _when(value: Any) -> str:
    """An API date (RFC 1123, UTC) as ``2026-11-29 02:07:14``."""
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(str(value)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return str(value)


def register(iam_app: typer.Typer) -> None:
    iam_app.add_typer(user_app, name="user")
    iam_app.add_typer(group_app, name="group")
    iam_app.add_typer(request_app, name="request")
    iam_app.command("audit")(audit)
