"""The collector's and the allocator's settings for a process's steady state.

Each process calls ``tune_gc`` once it has made its long-lived objects: the shards once
their store and entities are up, the gateway once it listens, the bots after their
ramp-up. The server calls ``tune_malloc`` first thing, before it forks its actors.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import platform

log = logging.getLogger("treasure.memory")

# Throughput: few collections (the shards; the bots, whose own pauses would count as
# latency).
GC_BULK = (50_000, 20, 20)
# Latency: a flood's thousands of new connections all survive their young collections,
# which then walk every one of them; small young generations keep each pause short
# (gen-1 then runs every 2nd young pass, over fewer objects). The thresholds compared:
# docs/performance.md.
GC_LATENCY = (2_500, 1, 2_000)


def tune_gc(thresholds: tuple[int, int, int] = GC_BULK) -> None:
    """Once a process has made its long-lived objects: they are frozen out of every
    collection, and the collector gets ``thresholds``."""
    gc.freeze()  # what was made so far lives for the whole run
    gc.set_threshold(*thresholds)


# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


def tune_malloc() -> bool:
    """Blocks under 1 MB come from the heap, and freeing them keeps the heap's top.

    asyncio reads a socket into a new 256 KB bytes object, shrunk to what came, and
    the data channels read 256 KB at a time. glibc serves a block that large with its
    own ``mmap`` (and frees it with ``munmap``) until a freed one raises its dynamic
    threshold, which only happens if the process happens to free such a block: the
    gateway did so while ``msgpack.packb`` made a 256 KB Packer per call, and once it
    reused one Packer, its every read was an mmap/munmap pair, which cost it CPU per
    reply (docs/performance.md). Fixed thresholds do not depend on such an accident.
    False where this is not glibc (nothing changed).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        done = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        return bool(done and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    except (OSError, AttributeError) as exc:  # pragma: no cover - an unusual libc
        log.warning("cannot tune malloc: %s", exc)
        return False
