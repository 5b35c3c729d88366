"""Process facts from /proc: who listens on a port, a process's memory; GC tuning."""

from __future__ import annotations

import gc
import os
from pathlib import Path

_LISTEN = "0A"
# Throughput: few collections (the bots, whose own pauses would count as latency).
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


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def pids_listening_on(port: int) -> list[int]:
    inodes = _listening_inodes(port)
    if not inodes:
        return []
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            found.append(int(entry.name))
    return found


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
