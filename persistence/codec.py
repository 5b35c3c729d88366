"""How event payloads become bytes in every backend (msgpack, binary-safe)."""

from __future__ import annotations

from typing import Any, cast

import msgpack

from persistence.base import Json


def pack(value: Json) -> bytes:
    return cast(bytes, msgpack.packb(value, use_bin_type=True))


def unpack(raw: bytes) -> Json:
    return cast(dict[str, Any], msgpack.unpackb(raw, raw=False, strict_map_key=False))
