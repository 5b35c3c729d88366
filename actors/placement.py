"""Which shard hosts an entity: a stable hash, never Python's ``hash()``."""

from __future__ import annotations

import zlib


def shard_for(kind: str, entity: str, count: int) -> int:
    return zlib.crc32(f"{kind}-{entity}".encode()) % count
