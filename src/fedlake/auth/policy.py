"""Authorization policy, version 2: who may do what (docs/policy.md describes it for people).

Identity (who the account is):

- ``root`` and accounts with attribute ``admin=true`` may do everything (their tokens'
  capability scopes still limit them, below).
- Reading catalogue content: with ``FEDLAKE_POLICY_READ=open`` (the default) every
  authenticated account reads everything; with ``rules`` an account reads the scopes it
  owns and what a namespace rule with action ``read`` or ``all`` grants one of its groups.
- Writing in a scope (add DIDs, attach, open/close, set metadata, register or upload
  replicas, change replica states): the scope's owner, or a namespace rule with action
  ``write`` or ``all``. Removing (detach, delete metadata, tombstone replicas): the owner,
  or a rule with action ``delete`` or ``all``. Deleting replicas outright stays admin
  business.
- A namespace rule (``fedlake.catalog.namespace_rules``) names a group, an action
  (``read``, ``write``, ``delete``, ``all``), a scope pattern (fnmatch: ``cms_*``, ``*``)
  and optionally a DID-name prefix (a plain string prefix). It applies to the members of
  the group **and of every group below it** (a rule for ``/escape`` covers members of
  ``/escape/cms``; WLCG group paths are hierarchical). Each action grants itself only;
  ``all`` grants every action, and also changing other accounts' replication rules on
  DIDs it covers. Rules are read from the catalogue on each decision (no cache).
- Accounts may add scopes named ``user.<account>`` for themselves; other scopes need admin.
- Replication rules: anyone may add rules for their own account; only the owner, an admin
  or a namespace rule ``all`` covering the rule's DID changes or removes them.
- Accounts, identities, RSEs (settings, attributes, protocols, limits) and namespace rules
  are admin business.
- Identity (``/iam``): admins may do everything. A manager of a group adds and removes its
  members and decides its registration requests; only admins create or remove groups,
  set the manager flag, suspend or reinstate accounts and revoke other accounts' tokens.
  Everybody may list groups, see their own groups and requests, submit requests, leave a
  group and revoke their own tokens.

Capabilities (what the token may do): when a token carries WLCG ``storage.*`` scopes
(``Caller.capabilities`` is not None), DID and replica operations also need the matching
capability on the DID's path ``/<scope>/<name>`` (``fedlake.auth.capabilities``: a scope
covers its path and everything below it): read and list need ``storage.read``; adding
DIDs, attaching, registering and uploading replicas need ``storage.create``; metadata,
open/close, detach and replica state changes or removal need ``storage.modify``. Both the
identity policy and the capabilities must allow an operation: a capability narrows what
an account may do, it never widens it (the lake's own CLI client may ask for any storage
scope, so a capability alone cannot be a grant).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TypeVar

from sqlalchemy.orm import Session

from fedlake.auth.capabilities import Capability, allows, parse_scopes
from fedlake.catalog import accounts, iam_groups
from fedlake.catalog import namespace_rules as ns
from fedlake.catalog.iam_models import NamespaceRule
from fedlake.domain.errors import AccessDenied

__all__ = [
    "ACTIONS",
    "ALL",
    "DELETE",
    "POLICY_VERSION",
    "READ",
    "READ_MODES",
    "WRITE",
    "Caller",
    "Reader",
    "capabilities_of",
    "did_path",
    "granted",
    "keep_readable",
    "reader",
    "require_admin",
    "require_capability",
    "require_group_manager",
    "require_read",
    "require_rule_owner",
    "require_scope_write",
    "require_self_or_admin",
    "rule_groups",
]

POLICY_VERSION = 2

READ, WRITE, DELETE, ALL = "read", "write", "delete", "all"
ACTIONS = ns.ACTIONS
#: FEDLAKE_POLICY_READ: ``open`` (everybody authenticated reads) or ``rules``
READ_MODES = ("open", "rules")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a request: the account, whether it is an admin, its groups (namespace
    rules, embargoes) and its token's capabilities (None: the token carried no
    ``storage.*`` scope, or it was a username/password login)."""

    account: str
    admin: bool = False
    groups: frozenset[str] = frozenset()
    capabilities: tuple[Capability, ...] | None = None


def capabilities_of(scope_claim: str) -> tuple[Capability, ...] | None:
    """The capabilities of a token's ``scope`` claim; None when it has none (raises
    AuthenticationFailed for a malformed storage scope, see ``parse_scopes``)."""
    return parse_scopes(scope_claim) or None


def did_path(scope: str, name: str) -> str:
    """The namespace path of a DID for capability scopes: ``/<scope>/<name>`` (a name may
    hold ``/``: ``cms:run1/f.root`` is ``/cms/run1/f.root``)."""
    return f"/{scope}/{name}"


def _what_needed(operation: str, path: str) -> str:
    return f"storage.{operation}:{path}"


def require_capability(caller: Caller, operation: str, scope: str, name: str, what: str) -> None:
    """Refuse when the caller's token has capabilities and none grants ``operation`` on
    the DID's path."""
    if caller.capabilities is None:
        return
    path = did_path(scope, name)
    if not allows(caller.capabilities, operation, path):
        raise AccessDenied(
            f"the token of account {caller.account} may not {what} {scope}:{name}: it needs "
            f"the capability {_what_needed(operation, path)} (or one for a path above it); "
            "get a token with that scope"
        )


def require_whole_namespace(caller: Caller, operation: str, what: str) -> None:
    """Refuse a token with capabilities unless they grant ``operation`` on ``/``: for
    what acts on DIDs not known yet (a subscription's rules follow every new match)."""
    if caller.capabilities is None or allows(caller.capabilities, operation, "/"):
        return
    raise AccessDenied(
        f"the token of account {caller.account} may not {what}: it acts on every DID that "
        f"will match, so it needs the capability {_what_needed(operation, '/')}; get a token "
        "with that scope (or one without storage scopes)"
    )


def rule_groups(groups: Collection[str]) -> set[str]:
    """The groups whose namespace rules apply to a member of ``groups``: each group and
    every group above it (``/escape/cms`` → ``/escape/cms``, ``/escape``)."""
    out: set[str] = set()
    for group in groups:
        parts = group.strip("/").split("/")
        out.update("/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


def _matches(rule: NamespaceRule, scope: str, name: str | None) -> bool:
    if not fnmatchcase(scope, rule.scope):
        return False
    return rule.name_prefix is None or (name is not None and name.startswith(rule.name_prefix))


def _rules(session: Session, caller: Caller, action: str) -> list[NamespaceRule]:
    return ns.rules_of_groups(session, rule_groups(caller.groups), {action, ALL})


def granted(session: Session, caller: Caller, action: str, scope: str, name: str | None) -> bool:
    """Whether a namespace rule grants ``action`` on ``scope:name`` to the caller's groups
    (``name`` None: a rule with a name prefix does not match)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    return any(_matches(r, scope, name) for r in _rules(session, caller, action))


def require_admin(caller: Caller, what: str) -> None:
    if not caller.admin:
        raise AccessDenied(f"account {caller.account} may not {what}: an admin account is needed")


def require_scope_write(
    session: Session,
    caller: Caller,
    scope: str,
    what: str,
    *,
    name: str | None = None,
    action: str = WRITE,
) -> None:
    """Identity part of a write (``action`` write or delete) in ``scope`` (on ``name``):
    admins, the scope's owner, or a namespace rule. ScopeNotFound for a missing scope."""
    if caller.admin:
        return
    row = accounts.get_scope(session, scope)
    if row.account == caller.account or granted(session, caller, action, scope, name):
        return
    raise AccessDenied(
        f"account {caller.account} may not {what} in scope {scope} (owned by {row.account}): "
        f"the owner, an admin, or a namespace rule granting {action} to one of the "
        "account's groups is needed (`fedlake iam policy list`)"
    )


def require_rule_owner(
    session: Session, caller: Caller, owner: str, scope: str, name: str, what: str
) -> None:
    """Changing a replication rule: its owner, an admin, or a namespace rule ``all``
    covering the rule's DID ``scope:name``."""
    if caller.admin or owner == caller.account:
        return
    if granted(session, caller, ALL, scope, name):
        return
    raise AccessDenied(f"account {caller.account} may not {what} a rule of account {owner}")


def may_add_scope(caller: Caller, scope: str, account: str) -> bool:
    return caller.admin or (account == caller.account and scope == f"user.{caller.account}")


def require_self_or_admin(caller: Caller, account: str, what: str) -> None:
    if not caller.admin and caller.account != account:
        raise AccessDenied(
            f"account {caller.account} may not {what} of account {account}: "
            "only that account or an admin may"
        )


def require_group_manager(session: Session, caller: Caller, group: str, what: str) -> None:
    """Admins, and managers of ``group`` (not of its parent: each group has its own)."""
    if caller.admin or iam_groups.is_manager(session, caller.account, group):
        return
    raise AccessDenied(
        f"account {caller.account} may not {what} of group {group}: "
        "a manager of the group or an admin is needed"
    )


# --- reading ------------------------------------------------------------------------------


def _related(cap_path: str, prefix: str) -> bool:
    """Whether a capability on ``cap_path`` covers ``prefix`` or something below it."""
    return (
        cap_path in ("/", prefix)
        or cap_path.startswith(prefix + "/")
        or prefix.startswith(cap_path + "/")
    )


class Reader:
    """What one caller may read, when something limits it: its token's capabilities,
    and/or (``FEDLAKE_POLICY_READ=rules``) the scopes it owns and its read rules.
    ``reader`` answers None when nothing limits the caller (the common, cheap case)."""

    __slots__ = ("_caps", "_owned", "_rules", "account")

    def __init__(
        self,
        account: str,
        caps: tuple[Capability, ...] | None,
        rules: list[NamespaceRule] | None,
        owned: frozenset[str],
    ) -> None:
        self.account = account
        self._caps = caps
        self._rules = rules
        self._owned = owned

    def _by_rules(self, scope: str, name: str | None) -> bool:
        if self._rules is None or scope in self._owned:
            return True
        return any(_matches(r, scope, name) for r in self._rules)

    def allows(self, scope: str, name: str) -> bool:
        if self._caps is not None and not allows(self._caps, "read", did_path(scope, name)):
            return False
        return self._by_rules(scope, name)

    def require(self, scope: str, name: str) -> None:
        if self._caps is not None and not allows(self._caps, "read", did_path(scope, name)):
            raise AccessDenied(
                f"the token of account {self.account} may not read {scope}:{name}: it needs "
                f"the capability {_what_needed('read', did_path(scope, name))} (or one for a "
                "path above it); get a token with that scope"
            )
        if not self._by_rules(scope, name):
            raise AccessDenied(
                f"account {self.account} may not read {scope}:{name}: reading needs "
                "ownership of the scope or a namespace rule granting read to one of the "
                "account's groups (FEDLAKE_POLICY_READ=rules)"
            )

    def require_scope(self, scope: str) -> None:
        """Listing a scope: refused when nothing in it could be read (else the listing is
        filtered with ``keep``)."""
        prefix = f"/{scope}"
        if self._caps is not None and not any(
            c.operation in ("read", "stage") and _related(c.path, prefix) for c in self._caps
        ):
            raise AccessDenied(
                f"the token of account {self.account} may not list scope {scope}: it needs "
                f"the capability {_what_needed('read', prefix)} or one below it"
            )
        if self._rules is not None and not (
            scope in self._owned or any(fnmatchcase(scope, r.scope) for r in self._rules)
        ):
            raise AccessDenied(
                f"account {self.account} may not list scope {scope}: it needs ownership of "
                "the scope or a namespace rule granting read (FEDLAKE_POLICY_READ=rules)"
            )

    def keep(self, items: Iterable[T], key: Callable[[T], tuple[str, str]]) -> Iterator[T]:
        """``items`` without those the caller may not read."""
        for item in items:
            if self.allows(*key(item)):
                yield item


def reader(session: Session, caller: Caller, read_mode: str = "open") -> Reader | None:
    """What limits ``caller``'s reads, or None when nothing does."""
    by_rules = read_mode == "rules" and not caller.admin
    if caller.capabilities is None and not by_rules:
        return None
    rules = _rules(session, caller, READ) if by_rules else None
    owned = (
        frozenset(r.scope for r in accounts.list_scopes(session, caller.account))
        if by_rules
        else frozenset()
    )
    return Reader(caller.account, caller.capabilities, rules, owned)


def require_read(r: Reader | None, scope: str, name: str) -> None:
    if r is not None:
        r.require(scope, name)


def keep_readable(
    r: Reader | None, items: Iterable[T], key: Callable[[T], tuple[str, str]]
) -> Iterator[T]:
    """``items`` without those ``r`` does not allow (all of them when ``r`` is None)."""
    return iter(items) if r is None else r.keep(items, key)
