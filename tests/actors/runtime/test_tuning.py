"""``tune_malloc``: a socket read's 256 KB block comes from the heap, not its own mmap."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")

# Reads a socket as asyncio does (a 256 KB bytes object, shrunk to what came), many
# times, then prints where the last read's block was: in the heap, or mapped alone.
PROBE = """
import socket, sys
from actors.runtime.tuning import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc()
a, b = socket.socketpair()
for _ in range(50):
    a.send(b"x" * 100)
    data = b.recv(256 * 1024)
heap = [line for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]")]
start, end = (int(x, 16) for x in heap[0].split()[0].split("-"))
big = bytes(200 * 1024)  # a block of the same size class as the reads' (kept alive)
print("heap" if start <= id(big) < end else "mapped")
"""


def _where(mode: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_large_blocks_come_from_the_heap_once_tuned() -> None:
    assert _where("tuned") == "heap"


def test_without_tuning_a_fresh_process_maps_them_alone() -> None:
    """The default the tuning is for: a block this size gets an mmap of its own."""
    assert _where("plain") == "mapped"
