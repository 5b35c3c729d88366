"""Field readers for decoded msgpack maps: each returns a typed value or raises
``ProtocolError(bad_request)`` with a message that names the field."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from protocol.errors import ErrorCode, ProtocolError

Map = Mapping[str, Any]
_MISSING = object()


def bad(field: str, problem: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, f"{field}: {problem}")


def _get(m: Map, key: str, path: str) -> Any:
    value = m.get(key, _MISSING)
    if value is _MISSING or value is None:
        raise bad(path + key, "is required")
    return value


def string(m: Map, key: str, lo: int, hi: int, path: str = "") -> str:
    value = _get(m, key, path)
    if not isinstance(value, str):
        raise bad(path + key, "must be a string")
    if not lo <= len(value) <= hi:
        raise bad(path + key, f"must be {lo} to {hi} characters long")
    return value


def opt_string(m: Map, key: str, lo: int, hi: int, path: str = "") -> str | None:
    return None if m.get(key) is None else string(m, key, lo, hi, path)


def integer(m: Map, key: str, lo: int, hi: int, path: str = "") -> int:
    value = _get(m, key, path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(path + key, "must be an integer")
    if not lo <= value <= hi:
        raise bad(path + key, f"must be from {lo} to {hi}")
    return value


def opt_integer(m: Map, key: str, lo: int, hi: int, path: str = "") -> int | None:
    return None if m.get(key) is None else integer(m, key, lo, hi, path)


def number(m: Map, key: str, lo: float, hi: float, path: str = "") -> float:
    value = _get(m, key, path)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(path + key, "must be a number")
    if not math.isfinite(value):
        raise bad(path + key, "must be a finite number")
    if not lo <= value <= hi:
        raise bad(path + key, f"must be from {lo:g} to {hi:g}")
    return float(value)


def opt_number(m: Map, key: str, lo: float, hi: float, default: float, path: str = "") -> float:
    return default if m.get(key) is None else number(m, key, lo, hi, path)


def array(m: Map, key: str, lo: int, hi: int, path: str = "") -> list[Any]:
    value = _get(m, key, path)
    if not isinstance(value, list | tuple):
        raise bad(path + key, "must be an array")
    if not lo <= len(value) <= hi:
        raise bad(path + key, f"must have {lo} to {hi} items")
    return list(value)


def mapping(value: Any, path: str) -> Map:
    if not isinstance(value, dict):
        raise bad(path, "must be a map")
    return value
