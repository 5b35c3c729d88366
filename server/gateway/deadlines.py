"""Keys that expire, oldest first, with one timer on the loop for the oldest.

Every key gets the same delay from the moment it is added, so the insertion order is
the order of the deadlines: expiring is popping from the front, and no key costs a
timer of its own (the bridge's requests and the hub's lingering hunts use it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    def __init__(self, delay_s: float, on_expired: Callable[[K], None]) -> None:
        self.delay_s = delay_s
        self._on_expired = on_expired
        self._until: dict[K, float] = {}  # oldest first
        self._timer: asyncio.TimerHandle | None = None
        # asyncio.get_running_loop() makes a getpid() system call (Python 3.11), too
        # dear once per command: the loop is looked up once
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, key: K) -> None:
        """``key`` expires ``delay_s`` from now (added again: from now, behind the others)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._until.pop(key, None)
        self._until[key] = until = loop.time() + self.delay_s
        if self._timer is None:
            self._timer = loop.call_at(until, self._expire)

    def discard(self, key: K) -> bool:
        """Forgets ``key``; whether it was there."""
        return self._until.pop(key, None) is not None

    def __iter__(self) -> Iterator[K]:
        return iter(self._until)

    def _expire(self) -> None:
        """``on_expired`` for every key past its deadline, oldest first; waits for the next."""
        self._timer = None
        loop = asyncio.get_running_loop()
        self._loop = loop
        now = loop.time()
        while self._until:
            key, until = next(iter(self._until.items()))
            if until > now:
                self._timer = loop.call_at(until, self._expire)
                return
            del self._until[key]
            self._on_expired(key)
