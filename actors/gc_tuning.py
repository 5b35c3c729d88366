"""The collector's settings for a process's steady state, shared by every layer.

Each process calls ``tune_gc`` once it has made its long-lived objects: the shards once
their store and entities are up, the gateway once it listens, the bots after their
ramp-up.
"""

from __future__ import annotations

import gc

# Throughput: few collections (the shards; the bots, whose own pauses would count as
# latency).
GC_BULK = (50_000, 20, 20)
# Latency: a flood's thousands of new connections all survive their young collections,
# which then walk every one of them. At 50,000 a gen-0 pass took 5-38 ms while 5,000
# clients connected. A bystander's p99 during 5,000 connects (benchmarks/abuse_bench.py,
# lean client / websockets client): (50000, 20, 20) 12-13 / 13-15 ms in 2 runs;
# (5000, 2, 1000) 5-8 / 7.5-9.3 ms and (2500, 1, 2000) 4.2-5.5 / 7.6-8.8 ms in 3 runs
# each (gen-1 then runs every 2nd young pass, over fewer objects).
GC_LATENCY = (2_500, 1, 2_000)


def tune_gc(thresholds: tuple[int, int, int] = GC_BULK) -> None:
    """Once a process has made its long-lived objects: they are frozen out of every
    collection, and the collector gets ``thresholds``."""
    gc.freeze()  # what was made so far lives for the whole run
    gc.set_threshold(*thresholds)
