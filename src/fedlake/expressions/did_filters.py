"""DID metadata filters: Rucio's text syntax and the client's list-of-dicts form.

Text syntax: ``,`` separates AND-ed conditions, ``;`` separates OR-ed groups; operators
``= == != < <= > >=``; compound ``10<length<100``; ``type=dataset``; ``*`` wildcards in
names and string values. Example: ``datatype=raw,run_number>=100;name=calib*``.

The Rucio client sends ``[{'name': '*', 'length.gt': '0'}]``: a list (OR) of dicts
(AND) whose keys may carry ``.gt .gte .lt .lte .ne`` suffixes.

Keys may mix DID columns (name, bytes, length, created_at ...) and free metadata in one
query (Rucio refuses that; we don't).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fedlake.domain.errors import InvalidFilter
from fedlake.domain.timefmt import parse_datetime

__all__ = ["Cond", "Filter", "coerce_value", "from_dicts", "from_text", "parse_query"]

OPS = ("==", "!=", "<=", ">=", "<", ">", "=")
_SUFFIX = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "ne": "!="}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
TYPES = ("all", "collection", "dataset", "container", "file")
# plain ASCII decimals only: int()/float() would also take "1_000", "nan", "inf", "١٢"
_NUMBER = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")


@dataclass(frozen=True, slots=True)
class Cond:
    key: str
    op: str  # one of = != < <= > >=
    value: Any  # str | int | float | bool | datetime


@dataclass(frozen=True, slots=True)
class Filter:
    """OR of AND-groups. ``types[i]`` overrides the DID type for group i (or None)."""

    groups: tuple[tuple[Cond, ...], ...]
    types: tuple[str | None, ...]


def coerce_value(text: Any) -> Any:
    """Turn a filter value (usually text) into bool, int, float, datetime or str."""
    if not isinstance(text, str):
        if isinstance(text, bool | int | float | datetime):
            return text
        raise InvalidFilter(f"filter value {text!r} must be a string or number")
    t = text.strip().strip("'\"")
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if _NUMBER.match(t):
        try:
            return int(t)
        except ValueError:
            return float(t)
    if _ISO_DATE.match(t) or t.endswith((" UTC", " GMT")):
        try:
            return parse_datetime(t)
        except ValueError:
            pass
    return t


def _check_key(key: str, where: str) -> str:
    key = key.strip()
    if key in ("created_after", "created_before", "updated_after", "updated_before"):
        return key
    if not _KEY.match(key):
        raise InvalidFilter(f"invalid filter key {key!r} in {where!r}")
    return key


def _norm(key: str, op: str, value: Any, where: str) -> Cond:
    key = _check_key(key, where)
    op = "=" if op == "==" else op
    if key in ("created_after", "updated_after"):
        key, op = key.split("_")[0] + "_at", ">="
    elif key in ("created_before", "updated_before"):
        key, op = key.split("_")[0] + "_at", "<="
    val = coerce_value(value)
    if key == "name":
        val = str(value).strip()
    return Cond(key, op, val)


def _split_type(conds: list[Cond], where: str) -> tuple[tuple[Cond, ...], str | None]:
    did_type = None
    rest = []
    for c in conds:
        if c.key in ("type", "did_type"):
            t = str(c.value).lower()
            if c.op != "=" or t not in TYPES:
                raise InvalidFilter(f"type must be one of {', '.join(TYPES)} in {where!r}")
            did_type = t
        else:
            rest.append(c)
    return tuple(rest), did_type


def from_text(text: str) -> Filter:
    """Parse the text syntax (see module docstring)."""
    groups: list[tuple[Cond, ...]] = []
    types: list[str | None] = []
    for group_text in text.split(";"):
        conds: list[Cond] = []
        for part in group_text.split(","):
            part = part.strip()
            if not part:
                continue
            conds.extend(_parse_condition(part))
        if not conds:
            raise InvalidFilter(f"empty filter group in {text!r}")
        g, t = _split_type(conds, text)
        groups.append(g)
        types.append(t)
    return Filter(tuple(groups), tuple(types))


_OP_RE = re.compile(r"(==|!=|<=|>=|=|<|>)")


def _parse_condition(part: str) -> list[Cond]:
    pieces = _OP_RE.split(part)
    if len(pieces) == 3:
        left, op, right = (p.strip() for p in pieces)
        if not left or not right:
            raise InvalidFilter(f"incomplete condition {part!r}: write key{op}value")
        if _KEY.match(left):
            return [_norm(left, op, right, part)]
        if _KEY.match(right) and op in _FLIP:  # 100<length
            return [_norm(right, _FLIP[op], left, part)]
        raise InvalidFilter(f"cannot tell the key in {part!r}")
    if len(pieces) == 5:  # 10<length<100
        low, op1, key, op2, high = (p.strip() for p in pieces)
        if op1 not in ("<", "<=") or op2 not in ("<", "<="):
            raise InvalidFilter(f"compound condition {part!r} must read low<key<high")
        return [_norm(key, _FLIP[op1], low, part), _norm(key, op2, high, part)]
    raise InvalidFilter(
        f"cannot parse filter condition {part!r}; use key=value, key>n or low<key<high"
    )


def from_dicts(items: Any) -> Filter:
    """Parse the Rucio client's ``[{'key.gt': v, ...}, ...]`` form (or a single dict)."""
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not all(isinstance(d, dict) for d in items):
        raise InvalidFilter("filters must be a list of dictionaries")
    groups: list[tuple[Cond, ...]] = []
    types: list[str | None] = []
    for d in items:
        conds = []
        for raw_key, value in d.items():
            key, op = str(raw_key), "="
            if "." in key:
                key, suffix = key.rsplit(".", 1)
                if suffix not in _SUFFIX:
                    raise InvalidFilter(
                        f"unknown operator suffix .{suffix} in filter key {raw_key!r}"
                    )
                op = _SUFFIX[suffix]
            if isinstance(value, str) and key not in ("name", "type", "did_type"):
                m = re.match(r"^\s*(==|!=|<=|>=|<|>)\s*(.*)$", value)  # rucio CLI sends '>5'
                if m and op == "=":
                    op, value = m.group(1), m.group(2)
            conds.append(_norm(key, op, value, str(raw_key)))
        g, t = _split_type(conds, str(d))
        groups.append(g)
        types.append(t)
    if not groups:
        groups, types = [()], [None]
    return Filter(tuple(groups), tuple(types))


def parse_query(filters: str | None, extra: dict[str, str] | None = None) -> Filter:
    """Parse a ``filters`` query parameter: Python literal, JSON, or the text syntax."""
    if filters is None or not filters.strip():
        return from_dicts([extra or {}])
    text = filters.strip()
    if text[0] in "[{":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            import json

            try:
                value = json.loads(text)
            except ValueError:
                raise InvalidFilter(f"cannot parse filters {text[:100]!r}") from None
        return from_dicts(value)
    return from_text(text)
