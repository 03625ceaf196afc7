"""Input checks shared by the services: types of JSON fields, with clear messages."""

from __future__ import annotations

from typing import Any, TypeVar

from fedlake.domain.errors import InvalidInput

__all__ = [
    "MAX_INT",
    "MAX_LIFETIME",
    "opt_bool",
    "opt_int",
    "opt_str",
    "req_dict",
    "req_int",
    "req_list",
    "req_str",
]

T = TypeVar("T")


def req_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def req_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(f"{what} must be a JSON list")
    return value


def req_str(d: dict[str, Any], key: str, what: str) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what}: '{key}' is required and must be a non-empty string")
    return value


def opt_str(d: dict[str, Any], key: str, what: str) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what}: '{key}' must be a string")
    return value


#: largest value of a 64-bit integer column
MAX_INT = 2**63 - 1
#: largest lifetime in seconds (about 300 years; beyond that dates overflow)
MAX_LIFETIME = 10**10


def req_int(
    d: dict[str, Any], key: str, what: str, minimum: int = 0, maximum: int = MAX_INT
) -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        else:
            raise InvalidInput(f"{what}: '{key}' is required and must be an integer")
    if value < minimum:
        raise InvalidInput(f"{what}: '{key}' must be at least {minimum}")
    if value > maximum:
        raise InvalidInput(f"{what}: '{key}' must be at most {maximum}")
    return value


def opt_int(
    d: dict[str, Any], key: str, what: str, minimum: int = 0, maximum: int = MAX_INT
) -> int | None:
    if d.get(key) is None:
        return None
    return req_int(d, key, what, minimum, maximum)


def opt_bool(d: dict[str, Any], key: str, what: str, default: bool = False) -> bool:
    value = d.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidInput(f"{what}: '{key}' must be true or false")
