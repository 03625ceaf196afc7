"""Subscription filters: which new DIDs a subscription applies to (Rucio's keys).

A filter is a JSON object; a DID matches when every key does:

- ``scope``: a list of regular expressions; one must match the DID's scope.
- ``pattern``: a regular expression the DID name must match; ``excluded_pattern`` (also
  written ``exclude_pattern``): one it must not match.
- ``did_type``: FILE, DATASET and/or CONTAINER. Without it only datasets and containers
  match, as in Rucio (files are matched only when a filter asks for FILE).
- ``account``: the account(s) that created the DID.
- ``min_avg_file_size`` / ``max_avg_file_size``: bounds of bytes/length of a collection
  (ignored while the collection is still empty, as Rucio does).
- ``meta_filter``: a metadata query in the DID search syntax, with comparisons:
  ``run_number>=100,datatype=RAW;project=calib*`` (fedlake; see ``did_filters``).
- any other key: a metadata key, with one value or a list of values (one must match).
  String values are regular expressions, numbers and booleans compare as values. A DID
  without that key does not match.

Regular expressions match from the start of the text, like Python's ``re.match`` (and
Rucio): ``data18`` also matches ``data18_13TeV``; end one with ``$`` to match the whole
text. Hidden DIDs never match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fedlake.domain.errors import InvalidFilter, InvalidName
from fedlake.domain.names import validate_account, validate_meta_key
from fedlake.expressions.did_filters import Cond, Filter, coerce_value, from_text

__all__ = [
    "DEFAULT_TYPES",
    "DID_TYPES",
    "FILTER_KEYS",
    "SubscriptionFilter",
    "parse_filter",
]

DID_TYPES = ("FILE", "DATASET", "CONTAINER")
DEFAULT_TYPES = frozenset({"DATASET", "CONTAINER"})
#: the keys with a meaning of their own; every other key names metadata
FILTER_KEYS = (
    "scope",
    "pattern",
    "excluded_pattern",
    "did_type",
    "account",
    "min_avg_file_size",
    "max_avg_file_size",
    "split_rule",
    "meta_filter",
)
_ALIASES = {"exclude_pattern": "excluded_pattern"}
#: keys people write for something that has another key
_MISTAKES = {
    "name": "match names with 'pattern' (a regular expression)",
    "type": "use 'did_type' (FILE, DATASET or CONTAINER)",
    "scopes": "use 'scope' (a list of regular expressions)",
    "accounts": "use 'account'",
    "exclude": "use 'excluded_pattern' (a regular expression)",
}
_MAX_REGEX = 1000
Scalar = str | int | float | bool


def _regex(value: Any, key: str) -> re.Pattern[str]:
    if not isinstance(value, str) or not value:
        raise InvalidFilter(f"filter '{key}' must be a non-empty string (a regular expression)")
    if len(value) > _MAX_REGEX:
        raise InvalidFilter(f"filter '{key}' is longer than {_MAX_REGEX} characters")
    try:
        return re.compile(value)
    except re.error as exc:
        raise InvalidFilter(
            f"filter '{key}': {value!r} is not a valid regular expression ({exc}); "
            "escape special characters such as '.' '*' '(' with a backslash"
        ) from None


def _as_list(value: Any, key: str) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise InvalidFilter(f"filter '{key}' is an empty list: give at least one value")
    return items


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidFilter(f"filter '{key}' must be a number of bytes (0 or more)")
    return float(value)


def _meta_value(value: Any, key: str) -> Scalar | re.Pattern[str]:
    if isinstance(value, str):
        return _regex(value, key)
    if isinstance(value, bool | int | float):
        return value
    raise InvalidFilter(
        f"filter '{key}': values must be strings (regular expressions), numbers or "
        f"booleans, got {value!r}"
    )


@dataclass(frozen=True, slots=True)
class SubscriptionFilter:
    """A parsed filter (see the module docstring); ``matches`` decides for one DID."""

    did_types: frozenset[str] = DEFAULT_TYPES
    scopes: tuple[re.Pattern[str], ...] = ()
    pattern: re.Pattern[str] | None = None
    excluded: re.Pattern[str] | None = None
    accounts: frozenset[str] = frozenset()
    min_avg: float | None = None
    max_avg: float | None = None
    meta: tuple[tuple[str, tuple[Scalar | re.Pattern[str], ...]], ...] = ()
    meta_filter: Filter | None = None

    @property
    def needs_meta(self) -> bool:
        """Whether matching reads the DIDs' metadata (one more query per batch)."""
        return bool(self.meta) or self.meta_filter is not None

    def matches_did(self, did: Mapping[str, Any]) -> bool:
        """Everything but metadata: ``did`` has scope, name, did_type, account, bytes,
        length and hidden."""
        if did["did_type"] not in self.did_types or did.get("hidden"):
            return False
        if self.scopes and not any(p.match(did["scope"]) for p in self.scopes):
            return False
        if self.pattern is not None and not self.pattern.match(did["name"]):
            return False
        if self.excluded is not None and self.excluded.match(did["name"]):
            return False
        if self.accounts and did["account"] not in self.accounts:
            return False
        return self._average_ok(did.get("bytes"), did.get("length"))

    def _average_ok(self, nbytes: int | None, length: int | None) -> bool:
        if (self.min_avg is None and self.max_avg is None) or not nbytes or not length:
            return True
        average = nbytes / length
        if self.min_avg is not None and average < self.min_avg:
            return False
        return self.max_avg is None or average <= self.max_avg

    def matches(self, did: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> bool:
        """Whether the DID matches; ``meta`` is its metadata (needed if ``needs_meta``)."""
        if not self.matches_did(did):
            return False
        if not self.needs_meta:
            return True
        view = {**did, **(meta or {})}
        for key, values in self.meta:
            if key not in view or view[key] is None:
                return False
            if not any(_value_matches(v, view[key]) for v in values):
                return False
        return self.meta_filter is None or _filter_matches(self.meta_filter, view)


def _value_matches(want: Scalar | re.Pattern[str], have: Any) -> bool:
    if isinstance(want, re.Pattern):
        return want.match(str(have)) is not None
    if isinstance(have, str):
        have = coerce_value(have)
    if isinstance(want, bool) or isinstance(have, bool):
        return isinstance(have, bool) and isinstance(want, bool) and want == have
    return isinstance(have, int | float) and float(have) == float(want)


_TYPE_SETS = {
    "all": frozenset(DID_TYPES),
    "collection": DEFAULT_TYPES,
    "dataset": frozenset({"DATASET"}),
    "container": frozenset({"CONTAINER"}),
    "file": frozenset({"FILE"}),
}


def _filter_matches(flt: Filter, view: Mapping[str, Any]) -> bool:
    """OR of AND-groups, as the DID search evaluates them in SQL."""
    for group, gtype in zip(flt.groups, flt.types, strict=True):
        if gtype is not None and view["did_type"] not in _TYPE_SETS[gtype]:
            continue
        if all(_cond_matches(c, view.get(c.key)) for c in group):
            return True
    return False


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _cond_matches(cond: Cond, have: Any) -> bool:
    if have is None:
        return False
    want = cond.value
    if isinstance(want, str) and "*" in want and cond.op in ("=", "!="):
        hit = _wildcard(want).fullmatch(str(have)) is not None
        return hit if cond.op == "=" else not hit
    if isinstance(have, str) and not isinstance(want, str):
        have = coerce_value(have)
    elif isinstance(want, str):
        have = str(have)
    comparable = (
        (isinstance(want, str) and isinstance(have, str))
        or (isinstance(want, datetime) and isinstance(have, datetime))
        or (isinstance(want, int | float) and isinstance(have, int | float))
    )
    if not comparable:
        return cond.op == "!="
    try:
        return bool(_OPS[cond.op](have, want))
    except TypeError:  # naive and aware datetimes
        return False


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _did_types(value: Any) -> frozenset[str]:
    out = set()
    for item in _as_list(value, "did_type"):
        kind = item.upper() if isinstance(item, str) else None
        if kind not in DID_TYPES:
            raise InvalidFilter(f"filter 'did_type': {item!r} is not one of {', '.join(DID_TYPES)}")
        out.add(kind)
    return frozenset(out)


def parse_filter(
    value: Any, known_key: Callable[[str], bool] | None = None
) -> tuple[SubscriptionFilter, dict[str, Any]]:
    """Check a filter; return it parsed and in its stored form (aliases resolved, single
    values made lists, DID types upper-case).

    ``known_key(key)`` says whether a metadata key is worth matching (some DID has it);
    without it every well-formed key is accepted.
    """
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidFilter('the filter must be a JSON object like {"scope": ["data18"]}')
    stored: dict[str, Any] = {}
    parts: dict[str, Any] = {}
    meta: list[tuple[str, tuple[Scalar | re.Pattern[str], ...]]] = []
    for raw_key, raw in value.items():
        key = _ALIASES.get(str(raw_key), str(raw_key))
        if key in stored:
            raise InvalidFilter(f"filter key '{key}' is given twice (as {raw_key!r})")
        if key in FILTER_KEYS:
            stored[key] = _special(key, raw, parts)
            continue
        if key in _MISTAKES:
            raise InvalidFilter(f"unknown filter key {key!r}: {_MISTAKES[key]}")
        try:
            validate_meta_key(key)
        except InvalidName as exc:
            raise InvalidFilter(f"unknown filter key {key!r}: {exc}") from None
        if known_key is not None and not known_key(key):
            raise InvalidFilter(
                f"unknown filter key {key!r}: it is not one of {', '.join(FILTER_KEYS)} and no "
                "DID has metadata of that name; check the spelling, or match a key no DID "
                f'has yet with meta_filter (e.g. "{key}=value")'
            )
        values = _as_list(raw, key)
        meta.append((key, tuple(_meta_value(v, key) for v in values)))
        stored[key] = values
    flt = SubscriptionFilter(meta=tuple(meta), **parts)
    return flt, stored


def _special(key: str, raw: Any, parts: dict[str, Any]) -> Any:
    """Parse one of FILTER_KEYS into ``parts`` (the SubscriptionFilter fields); return the
    value to store."""
    if key == "scope":
        items = _as_list(raw, key)
        parts["scopes"] = tuple(_regex(v, key) for v in items)
        return items
    if key in ("pattern", "excluded_pattern"):
        parts["pattern" if key == "pattern" else "excluded"] = _regex(raw, key)
        return raw
    if key == "did_type":
        types = _did_types(raw)
        parts["did_types"] = types
        return [t for t in DID_TYPES if t in types]
    if key == "account":
        items = _as_list(raw, key)
        try:
            parts["accounts"] = frozenset(validate_account(a) for a in items)
        except InvalidName as exc:
            raise InvalidFilter(f"filter 'account': {exc}") from None
        return items
    if key in ("min_avg_file_size", "max_avg_file_size"):
        parts["min_avg" if key.startswith("min") else "max_avg"] = _number(raw, key)
        return raw
    if key == "split_rule":
        if raw not in (False, None):
            raise InvalidFilter(
                "filter 'split_rule' is not supported: a subscription's rule templates each "
                "make one rule per DID; remove split_rule or set it to false"
            )
        return False
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidFilter(
            "filter 'meta_filter' must be a non-empty query like \"run_number>=100,datatype=RAW\""
        )
    try:
        parts["meta_filter"] = from_text(raw)
    except InvalidFilter as exc:
        raise InvalidFilter(f"filter 'meta_filter': {exc}") from None
    return raw
