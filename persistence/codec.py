"""How event payloads become bytes in every backend (msgpack, binary-safe)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import msgpack

from persistence.base import Json

# One Packer for what is stored, payloads and the remembered replies in snapshots,
# as ``protocol.codec.pack`` keeps one (why it is safe to share: there).
pack_any: Callable[[object], bytes] = msgpack.Packer(use_bin_type=True).pack


def pack(value: Json) -> bytes:
    return pack_any(value)


def unpack(raw: bytes) -> Json:
    return cast(dict[str, Any], msgpack.unpackb(raw, raw=False, strict_map_key=False))
