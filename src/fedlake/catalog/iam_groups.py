"""Identity groups, memberships and registration requests (the catalogue side).

A group is a path (``/escape``, ``/escape/cms``) whose parent must exist. An ``optional``
group is a role (``/escape/data-manager``): a token carries it in ``wlcg.groups`` only
when it is asked for. A member may be a ``manager`` of a group: managers decide the
group's registration requests and manage its members.

A registration request is an existing account asking to join a group; it stays PENDING
until a manager or an admin approves it (the membership is created in the same
transaction) or rejects it with a reason. A decided request is never decided again.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from fedlake.catalog.accounts import get_account
from fedlake.catalog.iam_models import GROUP, IamGroup, Membership, Registration
from fedlake.domain.errors import (
    Conflict,
    Duplicate,
    GroupNotFound,
    InvalidInput,
    InvalidName,
    MembershipNotFound,
    RegistrationNotFound,
)
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import AccountStatus

__all__ = [
    "PENDING",
    "add_group",
    "add_member",
    "add_registration",
    "decide_registration",
    "descendants",
    "get_group",
    "get_registration",
    "group_dict",
    "groups_by_account",
    "groups_of",
    "is_manager",
    "list_groups",
    "list_registrations",
    "managed_groups",
    "members",
    "memberships_of",
    "registration_dict",
    "remove_group",
    "remove_member",
    "set_manager",
    "token_groups",
    "validate_group",
]

PENDING, APPROVED, REJECTED = "PENDING", "APPROVED", "REJECTED"
_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")
_NOTE = 1000


# --- groups ------------------------------------------------------------------------------


def validate_group(path: Any) -> str:
    """``path`` if it is a group path: ``/`` + segments of [A-Za-z0-9_.-], no ``.`` or
    ``..`` segment, no empty segment, no trailing slash, at most 255 characters."""
    if not isinstance(path, str) or not path:
        raise InvalidName("a group is a path such as /escape or /escape/cms")
    if len(path) > GROUP:
        raise InvalidName(f"group {path[:40]!r}... is longer than {GROUP} characters")
    if not path.startswith("/"):
        raise InvalidName(f"group {path!r} must start with '/', e.g. /{path}")
    if path.endswith("/"):
        raise InvalidName(f"group {path!r} must not end with '/': write {path.rstrip('/')!r}")
    for segment in path[1:].split("/"):
        if segment in ("", ".", ".."):
            raise InvalidName(f"group {path!r} has an empty, '.' or '..' segment")
        if not _SEGMENT.fullmatch(segment):
            raise InvalidName(
                f"group {path!r}: segment {segment!r} may only hold letters, digits, '_', '.', '-'"
            )
    return path


def _parent(path: str) -> str | None:
    head = path.rpartition("/")[0]
    return head or None


def group_dict(row: IamGroup) -> dict[str, Any]:
    return {
        "name": row.name,
        "parent": row.parent,
        "optional": bool(row.optional),
        "description": row.description,
        "created_at": row.created_at,
    }


def get_group(session: Session, path: str) -> IamGroup:
    row = session.get(IamGroup, validate_group(path))
    if row is None:
        raise GroupNotFound(f"group {path} does not exist; list them with `fedlake iam group list`")
    return row


def add_group(
    session: Session, path: str, *, optional: bool = False, description: str | None = None
) -> IamGroup:
    """Create a group; its parent must exist already."""
    validate_group(path)
    if description is not None and len(description) > _NOTE:
        raise InvalidInput(f"a group description is at most {_NOTE} characters")
    if session.get(IamGroup, path) is not None:
        raise Duplicate(f"group {path} already exists")
    parent = _parent(path)
    if parent is not None and session.get(IamGroup, parent) is None:
        raise GroupNotFound(f"group {path} needs its parent {parent}: create {parent} first")
    row = IamGroup(name=path, parent=parent, optional=optional, description=description)
    session.add(row)
    session.flush()
    return row


def list_groups(session: Session, under: str | None = None) -> list[IamGroup]:
    """Every group, or ``under`` and the groups below it, sorted by path."""
    stmt = select(IamGroup).order_by(IamGroup.name)
    if under is not None:
        get_group(session, under)
        stmt = stmt.where(
            (IamGroup.name == under) | IamGroup.name.startswith(f"{under}/", autoescape=True)
        )
    return list(session.scalars(stmt))


def descendants(session: Session, path: str) -> list[str]:
    """The groups below ``path`` (all depths), sorted."""
    stmt = select(IamGroup.name).where(IamGroup.name.startswith(f"{path}/", autoescape=True))
    return sorted(session.scalars(stmt))


def remove_group(session: Session, path: str, *, recursive: bool = False) -> list[str]:
    """Delete a group with its memberships and requests; return the groups removed.

    A group with subgroups is refused unless ``recursive``: then the subgroups go too.
    """
    get_group(session, path)
    below = descendants(session, path)
    if below and not recursive:
        raise Conflict(
            f"group {path} has {len(below)} subgroup(s) ({', '.join(below[:3])}"
            f"{', ...' if len(below) > 3 else ''}): remove them first or use --recursive"
        )
    names = [path, *below]
    session.execute(delete(Membership).where(Membership.group.in_(names)))
    session.execute(delete(Registration).where(Registration.group.in_(names)))
    for name in sorted(names, key=lambda n: n.count("/"), reverse=True):  # leaves first
        session.execute(delete(IamGroup).where(IamGroup.name == name))
    session.flush()
    return sorted(names)


# --- memberships -------------------------------------------------------------------------


def _active_account(session: Session, account: str) -> None:
    row = get_account(session, account)
    if row.status != AccountStatus.ACTIVE.value:
        raise Conflict(
            f"account {account} is {row.status.lower()}: reinstate it before adding it to groups"
        )


def add_member(session: Session, path: str, account: str, *, manager: bool = False) -> None:
    """Make an active account a member (or a manager) of a group."""
    get_group(session, path)
    _active_account(session, account)
    if session.get(Membership, (account, path)) is not None:
        raise Duplicate(f"account {account} is already a member of {path}")
    session.add(Membership(account=account, group=path, manager=manager))
    session.flush()


def _membership(session: Session, path: str, account: str) -> Membership:
    get_group(session, path)
    row = session.get(Membership, (account, path))
    if row is None:
        raise MembershipNotFound(f"account {account} is not a member of {path}")
    return row


def remove_member(session: Session, path: str, account: str) -> None:
    session.delete(_membership(session, path, account))
    session.flush()


def set_manager(session: Session, path: str, account: str, manager: bool) -> bool:
    """Set the manager flag; return whether it changed."""
    row = _membership(session, path, account)
    changed = bool(row.manager) != manager
    row.manager = manager
    session.flush()
    return changed


def members(session: Session, path: str) -> list[dict[str, Any]]:
    get_group(session, path)
    rows = session.scalars(
        select(Membership).where(Membership.group == path).order_by(Membership.account)
    )
    return [{"account": r.account, "manager": bool(r.manager), "since": r.created_at} for r in rows]


def memberships_of(session: Session, account: str) -> list[dict[str, Any]]:
    """Every group of ``account`` with its manager flag and whether it is a role."""
    rows = session.execute(
        select(Membership.group, Membership.manager, IamGroup.optional)
        .join(IamGroup, IamGroup.name == Membership.group)
        .where(Membership.account == account)
        .order_by(Membership.group)
    )
    return [{"group": g, "manager": bool(m), "optional": bool(o)} for g, m, o in rows]


def groups_of(session: Session, account: str) -> list[str]:
    """Every group ``account`` is a member of (roles included), sorted."""
    stmt = select(Membership.group).where(Membership.account == account)
    return sorted(session.scalars(stmt))


def groups_by_account(session: Session, accounts: Collection[str]) -> dict[str, list[str]]:
    """``groups_of`` for many accounts in one query."""
    out: dict[str, list[str]] = {a: [] for a in accounts}
    if not out:
        return out
    rows = session.execute(
        select(Membership.account, Membership.group)
        .where(Membership.account.in_(list(out)))
        .order_by(Membership.group)
    )
    for account, group in rows:
        out[account].append(group)
    return out


def token_groups(session: Session, account: str, requested: Sequence[str] | None) -> list[str]:
    """The groups for a token's ``wlcg.groups`` claim.

    The account's non-optional groups, plus optional groups (roles) only when requested;
    requested groups come first, in the order asked (WLCG JWT profile); groups the
    account is not a member of are left out.
    """
    held = {g: bool(o) for g, o in _held(session, account)}
    out: list[str] = []
    for group in requested or ():
        if group in held and group not in out:
            out.append(group)
    out.extend(g for g in sorted(held) if not held[g] and g not in out)
    return out


def _held(session: Session, account: str) -> list[tuple[str, bool]]:
    rows = session.execute(
        select(Membership.group, IamGroup.optional)
        .join(IamGroup, IamGroup.name == Membership.group)
        .where(Membership.account == account)
    )
    return [(g, bool(o)) for g, o in rows]


def managed_groups(session: Session, account: str) -> list[str]:
    stmt = select(Membership.group).where(Membership.account == account, Membership.manager)
    return sorted(session.scalars(stmt))


def is_manager(session: Session, account: str, path: str) -> bool:
    row = session.get(Membership, (account, path))
    return row is not None and bool(row.manager)


# --- registration requests ---------------------------------------------------------------


def registration_dict(row: Registration) -> dict[str, Any]:
    return {
        "id": row.id,
        "account": row.username,
        "email": row.email,
        "group": row.group,
        "notes": row.notes,
        "state": row.state,
        "decided_by": row.decided_by,
        "decided_at": row.decided_at,
        "reason": row.reason,
        "created_at": row.created_at,
    }


def add_registration(
    session: Session, account: str, path: str, notes: str | None = None
) -> Registration:
    """An active account asks to join a group (or to hold a role)."""
    if notes is not None and len(notes) > _NOTE:
        raise InvalidInput(f"request notes are at most {_NOTE} characters")
    get_group(session, path)
    _active_account(session, account)
    if session.get(Membership, (account, path)) is not None:
        raise Duplicate(f"account {account} is already a member of {path}")
    pending = session.scalar(
        select(Registration.id).where(
            Registration.username == account,
            Registration.group == path,
            Registration.state == PENDING,
        )
    )
    if pending is not None:
        raise Duplicate(f"account {account} already asked to join {path}: request {pending}")
    row = Registration(
        id=uuid.uuid4().hex,
        username=account,
        email=get_account(session, account).email,
        group=path,
        notes=notes,
        state=PENDING,
    )
    session.add(row)
    session.flush()
    return row


def get_registration(session: Session, request_id: str) -> Registration:
    row = session.get(Registration, request_id) if isinstance(request_id, str) else None
    if row is None:
        raise RegistrationNotFound(
            f"registration request {request_id} does not exist; "
            "list them with `fedlake iam request list`"
        )
    return row


def list_registrations(
    session: Session,
    *,
    state: str | None = PENDING,
    groups: Collection[str] | None = None,
    account: str | None = None,
) -> list[Registration]:
    """Requests in ``state`` (None: any), of ``groups`` and/or by ``account``, oldest first."""
    stmt = select(Registration).order_by(Registration.created_at, Registration.id)
    if state is not None:
        if state not in (PENDING, APPROVED, REJECTED):
            raise InvalidInput(f"state {state!r}: give PENDING, APPROVED or REJECTED")
        stmt = stmt.where(Registration.state == state)
    if groups is not None:
        stmt = stmt.where(Registration.group.in_(list(groups)))
    if account is not None:
        stmt = stmt.where(Registration.username == account)
    return list(session.scalars(stmt))


def decide_registration(
    session: Session, request_id: str, by: str, *, approve: bool, reason: str | None = None
) -> Registration:
    """Approve (the membership is created) or reject a PENDING request, exactly once.

    The state changes with ``UPDATE ... WHERE state = 'PENDING'``: of two managers deciding
    at the same time, one wins and the other gets a Conflict.
    """
    if reason is not None and len(reason) > _NOTE:
        raise InvalidInput(f"a reason is at most {_NOTE} characters")
    row = get_registration(session, request_id)
    if row.state != PENDING:
        raise _decided(row)
    res = session.execute(
        update(Registration)
        .where(Registration.id == request_id, Registration.state == PENDING)
        .values(
            state=APPROVED if approve else REJECTED,
            decided_by=by,
            decided_at=utcnow(),
            reason=reason,
        )
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(row)
        raise _decided(row)
    session.refresh(row)
    if approve:  # after the state changed: a concurrent decision waits or fails above
        add_member(session, row.group, row.username)
    return row


def _decided(row: Registration) -> Conflict:
    return Conflict(
        f"registration request {row.id} was already {row.state.lower()} by {row.decided_by}; "
        "a request is decided once: submit a new one"
    )
